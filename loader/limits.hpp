#pragma once
// CPU, memory and task limits of the sandbox, on whichever cgroup
// hierarchy has the controller: cgroup v2 (the sandbox cgroup itself) when
// its root offers it, else the v1 hierarchy of a hybrid host (e.g. memory,
// pids and cpu mounted under /sys/fs/cgroup/<name> while the v2 mount at
// /sys/fs/cgroup/unified has no controllers). v1 cgroups cannot be
// entered at clone time, so the sandbox's first process waits until the
// parent has placed it (place()) before anything of the sandbox runs.

#include <sys/types.h>

#include <string>
#include <vector>

#include "pinfold/error.hpp"
#include "sandbox_spec.hpp"

namespace pinfold::loader {

class ResourceLimits {
public:
    // `sandbox_v2` is the sandbox's cgroup2 directory, `cgroup2_root` the
    // hierarchy's mount point; v1 cgroups go below pinfold's own cgroup of
    // each v1 hierarchy, in pinfold/<run_name>. Removes the v1 directories
    // of runs whose lock in `lock_dir` nobody holds. Fails (nothing left
    // behind) if a requested limit has no controller on this host.
    [[nodiscard]] static Result<ResourceLimits> apply(const SandboxLimits& limits, const std::string& cgroup2_root,
                                                      const std::string& sandbox_v2, const std::string& run_name,
                                                      const std::string& lock_dir);

    ResourceLimits(ResourceLimits&& other) noexcept;
    ResourceLimits(const ResourceLimits&) = delete;
    ResourceLimits& operator=(const ResourceLimits&) = delete;
    ResourceLimits& operator=(ResourceLimits&&) = delete;
    // Removes the v1 directories (their processes must be gone).
    ~ResourceLimits();

    // Moves `pid` into the v1 cgroups (nothing to do on v2).
    [[nodiscard]] Result<void> place(pid_t pid) const;
    // "memory: cgroup v1 (/sys/fs/cgroup/memory/...), pids: cgroup v2, ..."
    [[nodiscard]] std::string describe() const;
    // What the limits stopped, in plain words (OOM kills, refused forks).
    [[nodiscard]] std::vector<std::string> violations() const;

private:
    ResourceLimits() = default;
    struct Controller {
        std::string name;      // memory, pids, cpu
        std::string dir;       // the cgroup directory its files are in
        bool v1 = false;
    };
    std::vector<Controller> controllers_;
    std::vector<std::string> v1_dirs_;   // created here, removed in the destructor
    SandboxLimits limits_;
};

} // namespace pinfold::loader
