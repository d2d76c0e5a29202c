#pragma once
// Where a run keeps its state outside the process - a lock file, a bpffs
// pin directory and a cgroup subtree - and how the next start finds and
// removes what a crashed run left behind.

#include <cstdint>
#include <string>

#include "pinfold/error.hpp"

namespace pinfold::loader {

// Where runs of one owner keep their state (runtime_paths.hpp picks them:
// root's defaults below, or a delegated user's).
struct RunPaths {
    std::string lock_dir = "/run/pinfold";         // 0700, ours: one <run>.lock per live run
    std::string bpffs = "/sys/fs/bpf";              // the bpffs mount pin_parent is on
    std::string pin_parent = "/sys/fs/bpf/pinfold"; // 0700: a link pin can detach its link
    std::string cgroup_parent;                      // <cgroup2 root>/pinfold
};

// Mounts bpffs at `dir` if nothing is mounted there yet.
[[nodiscard]] Result<void> ensure_bpffs(const std::string& dir);

// The state of the current run. Holding the lock marks the run alive; the
// lock file records the run's owner, cgroup and pin directory, so that a
// later start cleans exactly what this run made and nothing else. The
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
    // Records the id of the run's cgroup once it exists: a later cleanup
    // removes a cgroup of that name only if it is still this one (a new run
    // with the same pid, of another runtime directory, may own the name).
    [[nodiscard]] Result<void> note_cgroup(std::uint64_t cgroup_id);
    [[nodiscard]] const std::string& name() const noexcept { return name_; }

private:
    RunState() = default;
    [[nodiscard]] Result<void> write_record() const;
    std::string name_;
    std::string cgroup_;
    std::uint64_t cgroup_id_ = 0;
    std::uint64_t pins_ino_ = 0;
    std::string lock_path_;
    std::string pin_dir_;
    int lock_fd_ = -1;
};

// Removes the cgroups, pins and locks of our own dead runs: those with a
// lock file in paths.lock_dir that is owned by us and that nobody holds.
// Only what that lock records is touched, and only when it lies in our
// cgroup_parent / pin_parent and is owned by us. A run directory without a
// lock here belongs to another runtime directory or owner (or the lock was
// deleted by hand): it is left alone, however dead it looks. Returns how
// many stale runs it cleaned.
int clean_stale_runs(const RunPaths& paths);

// What a lock file says about its run ("key=value" lines).
struct RunRecord {
    long pid = -1;
    long uid = -1;
    std::string cgroup;          // the run's cgroup2 directory
    std::uint64_t cgroup_id = 0; // its id (inode), 0 if not yet known
    std::string pins;            // the run's pin directory
    std::uint64_t pins_ino = 0;  // its inode, 0 if not known
};
[[nodiscard]] std::string format_run_record(const RunRecord& record);
[[nodiscard]] RunRecord parse_run_record(const std::string& text);

} // namespace pinfold::loader
