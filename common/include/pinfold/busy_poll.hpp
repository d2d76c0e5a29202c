#pragma once
// Bounds of the proxy's busy-polling window, shared by `pinfold run
// --busy-poll-us` and pinfold-proxy so that a bad value is refused while
// the command line is parsed, before any sandbox exists.

#include <string>

#include "pinfold/error.hpp"

namespace pinfold {

// Beyond a millisecond polling stops paying for itself: a wake-up it saves
// costs tens of microseconds, and every microsecond polled is CPU burned.
inline constexpr int max_busy_poll_us = 1000;

// `program` prefixes the message ("pinfold run", "pinfold-proxy").
[[nodiscard]] inline Result<void> check_busy_poll_us(int us, const std::string& program)
{
    if (us < 0 || us > max_busy_poll_us)
        return fail(program + ": --busy-poll-us " + std::to_string(us) + " is not in 0.." +
                    std::to_string(max_busy_poll_us));
    return {};
}

} // namespace pinfold
