#pragma once
// Where a run keeps its state outside the process - a lock file, a bpffs
// pin directory and a cgroup subtree - and how the next start finds and
// removes what a crashed run left behind.

#include <string>

#include "pinfold/error.hpp"

namespace pinfold::loader {

struct RunPaths {
    std::string lock_dir = "/run/pinfold";         // 0700, root's
    std::string bpffs = "/sys/fs/bpf";
    std::string pin_parent = "/sys/fs/bpf/pinfold"; // 0700: a link pin can detach its link
    std::string cgroup_parent;                      // <cgroup2 root>/pinfold
};

// Mounts bpffs at `dir` if nothing is mounted there yet.
[[nodiscard]] Result<void> ensure_bpffs(const std::string& dir);

// The state of the current run. Holding the lock marks the run alive; the
// destructor removes the pin directory and the lock file.
class RunState {
public:
    [[nodiscard]] static Result<RunState> create(const RunPaths& paths, const std::string& run_name);
    RunState(RunState&& other) noexcept;
    RunState(const RunState&) = delete;
    RunState& operator=(const RunState&) = delete;
    RunState& operator=(RunState&&) = delete;
    ~RunState();

    [[nodiscard]] const std::string& pin_dir() const noexcept { return pin_dir_; }
    [[nodiscard]] const std::string& name() const noexcept { return name_; }

private:
    RunState() = default;
    std::string name_;
    std::string lock_path_;
    std::string pin_dir_;
    int lock_fd_ = -1;
};

// Removes the cgroups, pins and locks of runs whose lock nobody holds.
// Returns how many stale runs it cleaned.
int clean_stale_runs(const RunPaths& paths);

} // namespace pinfold::loader
