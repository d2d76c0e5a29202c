#pragma once
// Bounds of the proxy's busy-polling window, shared by `pinfold run
// --busy-poll-us` and pinfold-proxy so that a bad value is refused while
// the command line is parsed, before any sandbox exists.

namespace pinfold {

// Beyond a millisecond polling stops paying for itself: a wake-up it saves
// costs tens of microseconds, and every microsecond polled is CPU burned.
inline constexpr int max_busy_poll_us = 1000;

} // namespace pinfold
