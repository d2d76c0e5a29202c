#pragma once
// The sandbox's first process: born by clone3 into new user, mount, PID,
// IPC and UTS namespaces (and the sandbox cgroup), it unshares a cgroup
// namespace, builds the filesystem view, becomes the unprivileged inner
// uid, drops every capability, sets no_new_privs, loads the seccomp
// program, and then stays as the PID namespace's init: it starts the
// command, forwards signals to it, reaps orphans, and exits with the
// command's status, which makes the kernel kill whatever is left.

#include <linux/sched.h>
#include <sys/types.h>

#include "pinfold/error.hpp"
#include "sandbox_spec.hpp"

namespace pinfold::loader {

// CLONE_NEWCGROUP is not among them: with CLONE_INTO_CGROUP the namespace
// would be rooted at pinfold's cgroup, so the child unshares it once it is
// in the sandbox cgroup.
constexpr std::uint64_t sandbox_clone_flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;

// Why the child failed, written to the report pipe.
struct ChildFailure {
    int error = 0;      // errno
    int stage = 0;      // SetupStage
    int step = -1;      // mount step, for stage_mounts
};

enum SetupStage : int {
    stage_exec = 0,
    stage_sync,
    stage_id_maps,
    stage_cgroupns,
    stage_ids,
    stage_mounts,
    stage_hostname,
    stage_capabilities,
    stage_no_new_privs,
    stage_seccomp,
    stage_fork,
};

// Says what failed, for the parent's error message.
[[nodiscard]] std::string describe_failure(const ChildFailure& failure, const SandboxPlan& plan);

// Everything the child needs, prepared by the parent (the child must not
// allocate).
struct SandboxChildArgs {
    const SandboxPlan* plan = nullptr;
    char* const* argv = nullptr;
    char* const* envp = nullptr;
    int* scratch_fds = nullptr;   // plan->mounts.size() slots
    int lifeline_fd = -1;         // read end: one byte = go; EOF = pinfold is gone
    int report_fd = -1;           // write end of the ChildFailure pipe (O_CLOEXEC)
    int listener_sock = -1;       // unix socket: the seccomp listener goes to pinfold here
    bool held = false;            // a second byte on the lifeline lets the command start
};

[[noreturn]] void run_sandbox_init(const SandboxChildArgs& args) noexcept;

// Parent side, before the go byte: the id maps of a privileged pinfold.
[[nodiscard]] Result<void> write_id_maps(pid_t child, const SandboxPlan& plan);

} // namespace pinfold::loader
