#include "child_process.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "namespaces.hpp"

namespace pinfold::loader {

namespace {

constexpr uid_t nobody = 65534;

pid_t clone3_into(int cgroup_fd, int* pidfd, std::uint64_t namespaces)
{
    struct clone_args args {};
    // No cgroup (container mode): the child stays in ours.
    args.flags = (cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0) | CLONE_PIDFD | namespaces;
    args.pidfd = reinterpret_cast<std::uint64_t>(pidfd);
    args.exit_signal = SIGCHLD;
    args.cgroup = cgroup_fd >= 0 ? static_cast<std::uint64_t>(cgroup_fd) : 0;
    return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
}

// In the child, before exec: only async-signal-safe calls from here on.
[[noreturn]] void child_fail(int report_fd, int err)
{
    ChildFailure failure{err, stage_exec, -1};
    (void)!::write(report_fd, &failure, sizeof failure);
    ::_exit(127);
}

// The held init may already have exited (its set-up failed and it wrote
// its report): a write to a lifeline without a reader must come back as
// EPIPE, not kill pinfold before it reports the failure and tears down.
bool send_lifeline_byte(int fd)
{
    sigset_t pipe_only, previous;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_only, &previous);
    char go = 1;
    bool sent = ::write(fd, &go, 1) == 1;
    int saved = errno;
    if (!sent && saved == EPIPE) {
        timespec none{};
        while (::sigtimedwait(&pipe_only, nullptr, &none) == SIGPIPE) {
        }
    }
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    errno = saved;
    return sent;
}

bool strip_capabilities()
{
    ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capset, &header, data) != 0)
        return false;
    return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0;
}

bool drop_all_privileges()
{
    if (::geteuid() == 0) {
        // Bounding set first: it needs CAP_SETPCAP, which setuid drops.
        for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
            ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
        if (::setgroups(0, nullptr) != 0 || ::setresgid(nobody, nobody, nobody) != 0 ||
            ::setresuid(nobody, nobody, nobody) != 0)
            return false;
    }
    ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capset, &header, data) != 0)
        return false;
    return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0;
}

// Landlock refuses every ptrace access check (opening /proc/PID/ns/*,
// setns through a pidfd) from inside a domain to a process outside it.
// The domain handles no file access (one that did would also refuse
// mount(2), which rootless Podman needs), only the signal scope: no signals
// to processes outside the run either. Returns 0 or an errno.
int enter_landlock_domain()
{
    // struct landlock_ruleset_attr of ABI 6; older headers lack `scoped`.
    struct {
        __u64 handled_access_fs;
        __u64 handled_access_net;
        __u64 scoped;
    } attr{};
    constexpr __u64 scope_signal = 1ULL << 1;   // LANDLOCK_SCOPE_SIGNAL
    attr.scoped = scope_signal;
    int fd = static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0));
    if (fd < 0)
        return errno;
    int err = ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && ::syscall(SYS_landlock_restrict_self, fd, 0) == 0
                  ? 0
                  : errno;
    ::close(fd);
    return err;
}

[[noreturn]] void run_child(const SpawnSpec& spec, char* const* argv, pid_t parent, int report_fd)
{
    // Die with pinfold: an orphaned proxy or command must not live on.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (::getppid() != parent)
        ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig)
        ::signal(sig, SIG_DFL);
    if (spec.stdin_null) {
        int null_fd = ::open("/dev/null", O_RDONLY);
        if (null_fd < 0 || ::dup2(null_fd, 0) < 0)
            child_fail(report_fd, errno);
    }
    ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    for (int fd : spec.inherit_fds) {
        if (::fcntl(fd, F_SETFD, 0) != 0)
            child_fail(report_fd, errno);
    }
    if (spec.drop_privileges) {
        if (!drop_all_privileges())
            child_fail(report_fd, errno ? errno : EPERM);
        // A change of uid clears the parent-death signal: set it again, or
        // a proxy running as nobody would outlive a killed pinfold.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (::getppid() != parent)
            ::_exit(127);
    }
    if (spec.strip_capabilities && !strip_capabilities())
        child_fail(report_fd, errno ? errno : EPERM);
    if (spec.ptrace_confined) {
        if (int err = enter_landlock_domain())
            child_fail(report_fd, err);
    }
    ::execvp(argv[0], argv);
    child_fail(report_fd, errno);
}

// Receives one descriptor sent with SCM_RIGHTS; -1 if there is none.
int receive_fd(int sock)
{
    char byte = 0;
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) != 1)
        return -1;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    if (!cmsg || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
        return -1;
    int fd = -1;
    std::memcpy(&fd, CMSG_DATA(cmsg), sizeof fd);
    return fd;
}

} // namespace

Result<ChildProcess> ChildProcess::spawn(const SpawnSpec& spec)
{
    if (spec.argv.empty())
        return fail("no command to run");
    std::vector<char*> argv;
    for (const auto& arg : spec.argv)
        argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    // Built before clone: the sandbox's child must not allocate.
    std::vector<char*> envp;
    std::vector<int> scratch_fds;
    if (spec.sandbox) {
        for (const auto& entry : spec.sandbox->env)
            envp.push_back(const_cast<char*>(entry.c_str()));
        envp.push_back(nullptr);
        scratch_fds.assign(spec.sandbox->mounts.size(), -1);
    }

    // The child reports a failure through this pipe; a successful exec
    // closes it (O_CLOEXEC) and the parent reads EOF.
    int report[2];
    if (::pipe2(report, O_CLOEXEC) != 0)
        return fail_errno("pipe");
    // Sandbox: one byte on the lifeline lets the child start; its EOF
    // (pinfold gone) ends the sandbox.
    int lifeline[2] = {-1, -1};
    int listener_pair[2] = {-1, -1};
    if (spec.sandbox && (::pipe2(lifeline, O_CLOEXEC) != 0 ||
                         ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, listener_pair) != 0)) {
        auto err = fail_errno("pipe");
        for (int fd : {report[0], report[1], lifeline[0], lifeline[1], listener_pair[0], listener_pair[1]}) {
            if (fd >= 0)
                ::close(fd);
        }
        return err;
    }
    pid_t parent = ::getpid();
    int pidfd = -1;
    pid_t pid = clone3_into(spec.cgroup_fd, &pidfd, spec.sandbox ? sandbox_clone_flags : 0);
    if (pid < 0) {
        auto err = fail_errno("clone3 into cgroup for " + spec.argv[0]);
        for (int fd : {report[0], report[1], lifeline[0], lifeline[1], listener_pair[0], listener_pair[1]}) {
            if (fd >= 0)
                ::close(fd);
        }
        return err;
    }
    if (pid == 0) {
        ::close(report[0]);
        if (spec.sandbox) {
            ::close(lifeline[1]);
            ::close(listener_pair[0]);
            SandboxChildArgs args;
            args.listener_sock = listener_pair[1];
            args.plan = spec.sandbox;
            args.argv = argv.data();
            args.envp = envp.data();
            args.scratch_fds = scratch_fds.data();
            args.lifeline_fd = lifeline[0];
            args.report_fd = report[1];
            args.held = spec.hold_command;
            run_sandbox_init(args);
        }
        run_child(spec, argv.data(), parent, report[1]);
    }
    ::close(report[1]);
    ChildProcess child(pid, pidfd);
    if (spec.sandbox) {
        ::close(lifeline[0]);
        ::close(listener_pair[1]);
        child.lifeline_fd_ = lifeline[1];
        child.listener_fd_ = listener_pair[0];   // the socket until the listener arrives
        Result<void> placed;
        if (spec.before_start)
            placed = spec.before_start(pid);
        if (placed)
            placed = write_id_maps(pid, *spec.sandbox);
        if (!placed) {
            ::close(report[0]);
            return std::unexpected(placed.error());   // the child sees EOF and exits
        }
        if (!send_lifeline_byte(child.lifeline_fd_)) {
            auto err = fail_errno("start the sandbox");
            ::close(report[0]);
            return err;
        }
        if (spec.hold_command) {
            child.report_fd_ = report[0];
            return child;
        }
    }
    child.report_fd_ = report[0];
    if (spec.defer_exec_check && !spec.sandbox)
        return child;
    if (auto r = child.wait_for_exec(spec); !r)
        return std::unexpected(r.error());
    return child;
}

Result<void> ChildProcess::release(const SpawnSpec& spec)
{
    if (report_fd_ < 0 || lifeline_fd_ < 0)
        return fail("release of a child that is not held");
    if (!send_lifeline_byte(lifeline_fd_)) {
        // An init that gave up during the load has written why: that
        // report says more than the EPIPE.
        if (errno == EPIPE)
            return wait_for_exec(spec);
        auto err = fail_errno("start the command in the sandbox");
        signal(SIGKILL);
        reap();
        return err;
    }
    return wait_for_exec(spec);
}

Result<void> ChildProcess::wait_for_exec(const SpawnSpec& spec)
{
    if (report_fd_ < 0)
        return {};   // already confirmed
    ChildProcess& child = *this;
    int report_fd = report_fd_;
    report_fd_ = -1;
    ChildFailure failure{};
    ssize_t n;
    do {
        n = ::read(report_fd, &failure, sizeof failure);
    } while (n < 0 && errno == EINTR);
    ::close(report_fd);
    if (spec.sandbox) {
        // Sent before the command was started, so it is there by now.
        int fd = receive_fd(child.listener_fd_);
        ::close(child.listener_fd_);
        child.listener_fd_ = fd;
        if (n != static_cast<ssize_t>(sizeof failure) && fd < 0) {
            child.signal(SIGKILL);
            child.reap();
            return fail("the sandbox did not hand over its seccomp listener");
        }
    }
    if (n == static_cast<ssize_t>(sizeof failure)) {
        child.reap();
        if (failure.stage == stage_exec)
            return fail("cannot execute " + spec.argv[0], failure.error);
        return fail(describe_failure(failure, *spec.sandbox));
    }
    return {};
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(other.pid_), pidfd_(other.pidfd_), lifeline_fd_(other.lifeline_fd_), listener_fd_(other.listener_fd_),
      report_fd_(other.report_fd_), status_(other.status_)
{
    other.pid_ = -1;
    other.pidfd_ = -1;
    other.lifeline_fd_ = -1;
    other.listener_fd_ = -1;
    other.report_fd_ = -1;
}

ChildProcess::~ChildProcess()
{
    if (pid_ > 0 && !status_) {
        signal(SIGKILL);
        reap();
    }
    if (pidfd_ >= 0)
        ::close(pidfd_);
    if (lifeline_fd_ >= 0)
        ::close(lifeline_fd_);
    if (listener_fd_ >= 0)
        ::close(listener_fd_);
    if (report_fd_ >= 0)
        ::close(report_fd_);
}

bool ChildProcess::signal(int sig) const noexcept
{
    if (pidfd_ < 0 || status_)
        return false;
    return ::syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0) == 0;
}

std::optional<int> ChildProcess::try_reap() noexcept
{
    if (status_ || pid_ <= 0)
        return status_;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_)
        status_ = status;
    return status_;
}

int ChildProcess::reap() noexcept
{
    while (!status_ && pid_ > 0) {
        int status = 0;
        pid_t r = ::waitpid(pid_, &status, 0);
        if (r == pid_)
            status_ = status;
        else if (r < 0 && errno != EINTR)
            status_ = 0;
    }
    return status_.value_or(0);
}

int exit_code_of(int wait_status) noexcept
{
    if (WIFEXITED(wait_status))
        return WEXITSTATUS(wait_status);
    if (WIFSIGNALED(wait_status))
        return 128 + WTERMSIG(wait_status);
    return 125;
}

} // namespace pinfold::loader
