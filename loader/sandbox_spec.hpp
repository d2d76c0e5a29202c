#pragma once
// The sandbox of `pinfold run`, decided in full before anything is
// touched: what the command sees of the filesystem, which ids it has,
// which environment, which limits and which seccomp program. The child
// only executes this plan (it must not allocate after clone), so every
// path is resolved and every string built here.

#include <linux/filter.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pinfold/error.hpp"

namespace pinfold::loader {

// Resource limits; unset fields mean "no limit".
struct SandboxLimits {
    std::optional<double> cpus;                 // CPU time per wall second
    std::optional<std::uint64_t> memory_bytes;  // RAM; swap is always 0
    std::optional<std::uint64_t> pids;          // tasks (threads count)
    std::optional<std::chrono::milliseconds> timeout;  // wall clock
};

// What the command line says about the sandbox.
struct SandboxOptions {
    bool enabled = true;                 // --sandbox off: hooks only (debugging, hook tests)
    std::string workspace;               // "" -> the current directory
    std::vector<std::string> ro_paths;   // --ro
    std::vector<std::string> rw_paths;   // --rw
    std::vector<std::string> hide_paths; // --hide
    std::vector<std::string> env;        // --env NAME=VALUE
    SandboxLimits limits;
    // Filled by pinfold from its runtime locations (runtime_paths.hpp):
    std::vector<std::string> state_paths; // its locks and pins: hidden like always_hidden_paths()
    // A non-root pinfold's sandbox has the user's uid, so the user's
    // sockets in XDG_RUNTIME_DIR (session bus, agents, a podman API
    // socket) would be in reach: the directory is replaced by an empty one
    // that shows only `revealed_dir` (the run's CA bundle), read-only.
    std::string user_runtime_dir;
    std::string revealed_dir;
};

enum class MountKind {
    bind_rw,     // source -> target, writable, nosuid, nodev
    bind_ro,     // source -> target, read-only
    hide_dir,    // an empty read-only tmpfs over target
    hide_file,   // an empty read-only file over target
    tmpfs,       // a private writable tmpfs (mode 1777)
    dev_node,    // a host device node bound over an empty file
    symlink,     // target -> source (a symlink in the new /dev)
    devpts,      // a private devpts instance
    proc,        // the proc of the new PID namespace
    seal_ro,     // make the mount at target read-only (after filling it)
};

struct MountStep {
    MountKind kind;
    std::string source;     // host path (binds, dev nodes) or link text
    std::string target;     // path inside the sandbox, absolute
    std::string staged;     // where target is while the root is built
};

struct SandboxPlan {
    uid_t inner_uid = 1000;    // the command's uid inside
    gid_t inner_gid = 1000;
    uid_t outer_uid = 0;       // what that uid is on the host
    gid_t outer_gid = 0;
    // A root pinfold writes the id maps and clears supplementary groups; a
    // non-root one can only map its own ids, which the child does itself.
    bool privileged = false;
    std::string workspace;     // absolute, resolved
    std::string staging;       // where the new root is assembled
    std::vector<MountStep> mounts;
    std::vector<std::string> env;      // NAME=VALUE, complete
    std::string hostname = "pinfold";
    std::vector<sock_filter> seccomp;  // the program, built by libseccomp
    SandboxLimits limits;
};

// Environment variables that pass from pinfold's environment into the
// sandbox unchanged (when set).
[[nodiscard]] const std::vector<std::string>& passed_environment();

// Paths the sandbox never sees, whatever --ro/--rw say.
[[nodiscard]] const std::vector<std::string>& always_hidden_paths();


// Builds the plan. `extra_env` comes from other parts of pinfold (proxy
// and CA variables) and wins over the passed environment; --env wins over
// both. `extra_mounts` are added after the workspace (e.g. the CA bundle).
// Errors name the flag and the path.
[[nodiscard]] Result<SandboxPlan> make_sandbox_plan(const SandboxOptions& options,
                                                    const std::vector<std::string>& extra_env,
                                                    const std::vector<MountStep>& extra_mounts);

} // namespace pinfold::loader
