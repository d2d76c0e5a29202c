#pragma once
// The level bpf_get_current_ancestor_cgroup_id() counts is the depth in the
// kernel's global cgroup2 hierarchy. Inside a cgroup namespace (a container
// with a private cgroupns) the mounted root is not the global root, so a
// depth counted from the mount point is wrong by the depth of the namespace
// root. This module measures that offset in the kernel itself.

#include <string>

#include "pinfold/error.hpp"

namespace pinfold::loader {

// Global level of the directory mounted at `cgroup2_mount` (0 on a host
// without a cgroup namespace). Needs CAP_BPF (it test-runs a syscall
// program, 5.14+); the result is cached for the process.
[[nodiscard]] Result<unsigned> cgroup_mount_level(const std::string& cgroup2_mount);

// Pure part, for tests: given the caller's ancestor ids by global level (0
// past its own level), its /proc/self/cgroup v2 path and the mount's root
// field from mountinfo, the global level of the mount point.
[[nodiscard]] Result<unsigned> mount_level_from(const unsigned long long* ancestors, std::size_t count,
                                                const std::string& own_path, const std::string& mount_root);

} // namespace pinfold::loader
