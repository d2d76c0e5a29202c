#pragma once
// Starting the proxy and the sandboxed command: born inside their cgroup
// (clone3 CLONE_INTO_CGROUP), so there is no moment in which they run
// outside it, and owned by a pidfd.

#include <functional>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "pinfold/error.hpp"
#include "sandbox_spec.hpp"

namespace pinfold::loader {

struct SpawnSpec {
    std::vector<std::string> argv;      // argv[0] is looked up in PATH if it has no '/'
    int cgroup_fd = -1;                 // the child starts in this cgroup
    std::vector<int> inherit_fds;       // kept open across exec; all else is closed
    bool drop_privileges = false;       // proxy: no capabilities, nobody when root
    // Container mode (no CAP_SETUID to become nobody): the same uid, but no
    // capabilities and no_new_privs, so no setuid binary or root exec
    // brings CAP_BPF back.
    bool strip_capabilities = false;
    // --sandbox off with --allow-private-netns (private_netns.hpp): a
    // Landlock domain of its own (and no_new_privs), so that it cannot open
    // the namespaces of any process outside the run.
    bool ptrace_confined = false;
    bool stdin_null = false;
    // Set: the child gets the namespace sandbox of this plan (see
    // namespaces.hpp) and does not start before `before_start` (given its
    // pid, e.g. to place it in v1 cgroups) has returned.
    const SandboxPlan* sandbox = nullptr;
    std::function<Result<void>(pid_t)> before_start;
    // Sandbox only: spawn() returns once the child is placed; it builds the
    // sandbox (namespaces, mounts, seccomp) meanwhile, and the command is
    // forked and executed only when release() is called. Lets the sandbox's
    // set-up overlap the BPF load; nothing of the command runs before.
    bool hold_command = false;
    // Without a sandbox: spawn() returns right after the clone; whether the
    // exec worked comes from confirm_exec() (a child whose exec failed has
    // exited with 127 by then). Lets pinfold go on while the child execs.
    bool defer_exec_check = false;
};

class ChildProcess {
public:
    // Fails if the command cannot be executed (errno of execve, e.g. ENOENT).
    // With `hold_command` that check (and any sandbox set-up failure) comes
    // with release().
    [[nodiscard]] static Result<ChildProcess> spawn(const SpawnSpec& spec);
    // For a child spawned with `hold_command`: lets the command start and
    // waits for its exec, as spawn() does otherwise. `spec` is the one it was
    // spawned with. On failure the child is reaped.
    [[nodiscard]] Result<void> release(const SpawnSpec& spec);
    // For a child spawned with `defer_exec_check`: waits for its exec (or
    // its report that the exec failed).
    [[nodiscard]] Result<void> confirm_exec(const SpawnSpec& spec) { return wait_for_exec(spec); }

    ChildProcess(ChildProcess&& other) noexcept;
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;
    ChildProcess& operator=(ChildProcess&&) = delete;
    // Kills (SIGKILL) and reaps a child that is still running.
    ~ChildProcess();

    [[nodiscard]] pid_t pid() const noexcept { return pid_; }
    [[nodiscard]] int pidfd() const noexcept { return pidfd_; }   // readable when the child exits
    // False when the signal could not be sent (EPERM once pinfold has
    // dropped its capabilities and the child runs as another uid).
    bool signal(int sig) const noexcept;
    // Reaps the child if it has exited; returns its wait status.
    [[nodiscard]] std::optional<int> try_reap() noexcept;
    // Blocks until exit; returns the wait status.
    int reap() noexcept;
    [[nodiscard]] bool exited() const noexcept { return status_.has_value(); }
    // Sandbox: the seccomp filter's listener (-1 otherwise); the caller
    // answers the refused calls it reports.
    [[nodiscard]] int seccomp_listener() const noexcept { return listener_fd_; }

private:
    ChildProcess(pid_t pid, int pidfd) noexcept : pid_(pid), pidfd_(pidfd) {}
    // Reads the exec report (EOF: exec'd) and, for a sandbox, the seccomp
    // listener; on failure the child is reaped.
    [[nodiscard]] Result<void> wait_for_exec(const SpawnSpec& spec);
    pid_t pid_ = -1;
    int pidfd_ = -1;
    int lifeline_fd_ = -1;   // sandbox: its init exits when this closes
    int listener_fd_ = -1;   // sandbox: seccomp user notifications
    int report_fd_ = -1;     // held sandbox: the ChildFailure pipe, read at release()
    std::optional<int> status_;
};

// The shell convention for a wait status: code, or 128 + signal.
[[nodiscard]] int exit_code_of(int wait_status) noexcept;

} // namespace pinfold::loader
