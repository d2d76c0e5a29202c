#pragma once
// Where a run keeps its state: the runtime directory (locks), the bpffs
// directory (link pins), the cgroup parent (the run's cgroups) and the
// directory of the run CA bundles. Root gets fixed system locations; an
// ordinary user with a file-capability pinfold gets locations derived from
// XDG_RUNTIME_DIR, its uid and the delegated cgroup it sits in (set up once
// by scripts/setup-unprivileged.sh). Flags win over PINFOLD_* variables,
// which win over the defaults. Everything is checked before the kernel is
// touched; errors name the path and the flag or variable it came from.

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "pinfold/error.hpp"
#include "run_state.hpp"

namespace pinfold::loader {

// From --runtime-dir, --bpffs-dir, --cgroup-parent ("" = variable or default).
struct RuntimePathOptions {
    std::string runtime_dir;
    std::string bpffs_dir;
    std::string cgroup_parent;
};

struct RuntimeLocations {
    RunPaths run;                       // lock_dir, bpffs, pin_parent, cgroup_parent (absolute)
    std::string cgroup2_root;           // the cgroup2 mount point
    std::string cgroup_parent_relative; // run.cgroup_parent below cgroup2_root, e.g. "pinfold"
    std::string trust_parent;           // <runtime dir>-trust: run CA bundles, readable by the sandbox
    bool privileged = false;            // root: mounts bpffs and creates system directories itself
    // Non-root: the user's XDG_RUNTIME_DIR (its sockets: session bus,
    // agents, a podman API socket) replaced in the sandbox by an empty
    // directory that shows only the run's CA bundle. "" when unset.
    std::string user_runtime_dir;
    // Never visible in the sandbox (besides always_hidden_paths()).
    std::vector<std::string> hidden;
};

// Reads the flags, the environment and /proc/self/cgroup and checks every
// location (ownership, permissions, delegation). Creates nothing.
[[nodiscard]] Result<RuntimeLocations> resolve_runtime_locations(const RuntimePathOptions& options,
                                                                 const std::string& cgroup2_root);

// Creates what may be created: the runtime and pin directories (0700), the
// cgroup parent; mounts bpffs at /sys/fs/bpf for root.
[[nodiscard]] Result<void> prepare_runtime_locations(const RuntimeLocations& locations);

// --- pure parts, for tests ---

// Owner and mode of a path, or nothing if it does not exist.
struct PathFacts {
    bool exists = false;
    bool is_dir = false;
    bool is_symlink = false;
    uid_t uid = 0;
    mode_t mode = 0;
};
using PathProbe = std::function<PathFacts(const std::string&)>;

// `path` (absolute, normalised) is a safe place for state of uid `uid`:
// it is a directory of `uid` (or missing) not writable by group or others,
// and every existing ancestor belongs to root or `uid` and is not writable
// by others unless sticky. `what` names the flag or variable in errors.
[[nodiscard]] Result<void> check_private_location(const std::string& path, uid_t uid, const std::string& what,
                                                  const PathProbe& probe);

// The delegation root of a non-root caller: the highest cgroup directory
// owned by `uid` on the path from the cgroup2 root to `own` (the caller's
// cgroup directory), so that the caller sits inside it. Error, naming
// `own`, when the caller's own cgroup is not owned by `uid`.
[[nodiscard]] Result<std::string> delegated_cgroup(const std::string& cgroup2_root, const std::string& own, uid_t uid,
                                                   const PathProbe& probe);

// The deepest cgroup that contains both `a` and `b` (directory paths).
[[nodiscard]] std::string common_cgroup(const std::string& a, const std::string& b);

// --cgroup-parent: a path below the cgroup2 mount, or a cgroup path as in
// /proc/self/cgroup (taken relative to the mount). Returns the directory.
[[nodiscard]] Result<std::string> cgroup_parent_directory(const std::string& value, const std::string& cgroup2_root);

} // namespace pinfold::loader
