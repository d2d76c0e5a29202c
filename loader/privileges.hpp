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

// A non-root pinfold with --sandbox off starts CMD with its own uid in the
// host's namespaces. That uid owns the delegated cgroup subtree (it may
// write cgroup.procs anywhere in it: out of the run's cgroup) and may
// signal pinfold; the hooks bind only processes that stay. So such a run
// is refused unless the caller says CMD is trusted (`--trusted-command`).
// Root with --sandbox off keeps its capabilities (debugging); container
// mode confines the job with a read-only cgroup tree.
[[nodiscard]] Result<void> check_unconfined_command(bool sandbox_enabled, bool trusted_command, bool root,
                                                    bool container_mode);

} // namespace pinfold::loader
