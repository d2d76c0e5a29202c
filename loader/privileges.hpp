#pragma once
// pinfold's own capabilities: needed to load and attach the programs and
// to create the sandbox (id maps, cgroups), never afterwards.

#include "pinfold/error.hpp"

namespace pinfold::loader {

// Clears every capability of this process: effective, permitted,
// inheritable, ambient and (when it may) the bounding set. What pinfold
// still does afterwards - map updates through fds it holds, unpinning and
// rmdir in directories it owns, cgroup.kill, signals to the sandbox whose
// user namespace it owns - needs none.
[[nodiscard]] Result<void> drop_own_capabilities();

} // namespace pinfold::loader
