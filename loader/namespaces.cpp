#include "namespaces.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "mounts.hpp"

extern char** environ;

namespace pinfold::loader {

namespace {

[[noreturn]] void fail_setup(const SandboxChildArgs& args, int stage, int err, int step = -1)
{
    ChildFailure failure{err ? err : EPERM, stage, step};
    (void)!::write(args.report_fd, &failure, sizeof failure);
    ::_exit(125);
}

// write(2) of a short text to a /proc file, without stdio.
int write_text(const char* path, const char* text)
{
    int fd = ::open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    ssize_t len = static_cast<ssize_t>(std::strlen(text));
    int err = ::write(fd, text, static_cast<std::size_t>(len)) == len ? 0 : errno;
    ::close(fd);
    return err;
}

int map_own_ids(const SandboxPlan& plan)
{
    char line[64];
    std::snprintf(line, sizeof line, "%u %u 1\n", plan.inner_uid, plan.outer_uid);
    if (int err = write_text("/proc/self/uid_map", line))
        return err;
    // An unprivileged gid_map needs setgroups denied first (else a dropped
    // supplementary group could be shed to gain access).
    if (int err = write_text("/proc/self/setgroups", "deny"))
        return err;
    std::snprintf(line, sizeof line, "%u %u 1\n", plan.inner_gid, plan.outer_gid);
    return write_text("/proc/self/gid_map", line);
}

int capset_all(bool raise)
{
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (raise) {
        if (::syscall(SYS_capget, &header, data) != 0)
            return errno;
        data[0].effective = data[0].permitted;
        data[1].effective = data[1].permitted;
    }
    return ::syscall(SYS_capset, &header, data) == 0 ? 0 : errno;
}

int become_inner_ids(const SandboxPlan& plan)
{
    // Capabilities in the new user namespace are still needed for the
    // mounts: keep them across the uid change.
    if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
        return errno;
    // Root's supplementary groups (gid 0 among them) must not follow the
    // command; a non-root pinfold had setgroups denied and keeps its own.
    if (plan.privileged && ::setgroups(0, nullptr) != 0)
        return errno;
    if (::setresgid(plan.inner_gid, plan.inner_gid, plan.inner_gid) != 0)
        return errno;
    if (::setresuid(plan.inner_uid, plan.inner_uid, plan.inner_uid) != 0)
        return errno;
    return capset_all(true);
}

int drop_capabilities()
{
    // The bounding set needs CAP_SETPCAP, so it goes first; the securebits
    // make sure no exec (of a setuid or file-capability binary, or as an
    // unmapped root) hands any back.
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
            return errno;
    }
    unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                         SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                         SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (::prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) != 0)
        return errno;
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        return errno;
    return capset_all(false);
}

// Loads the filter and hands its listener to pinfold, which answers (and
// audits) every refused call.
int load_seccomp(const SandboxPlan& plan, int listener_sock)
{
    sock_fprog prog{};
    prog.len = static_cast<unsigned short>(plan.seccomp.size());
    prog.filter = const_cast<sock_filter*>(plan.seccomp.data());
    long listener = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0)
        return errno;
    int fd = static_cast<int>(listener);
    char byte = 0;
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    int err = ::sendmsg(listener_sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : errno;
    ::close(fd);
    ::close(listener_sock);
    return err;
}

[[noreturn]] void exec_command(const SandboxChildArgs& args, const sigset_t& original_mask)
{
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    for (int sig = 1; sig < NSIG; ++sig)
        ::signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    (void)original_mask;
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::close(args.lifeline_fd);
    environ = const_cast<char**>(args.envp);
    ::execvp(args.argv[0], args.argv);
    ChildFailure failure{errno, stage_exec, -1};
    (void)!::write(args.report_fd, &failure, sizeof failure);
    ::_exit(errno == ENOENT ? 127 : 126);
}

int code_of(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 125;
}

} // namespace

std::string describe_failure(const ChildFailure& failure, const SandboxPlan& plan)
{
    std::string what;
    switch (failure.stage) {
    case stage_exec: what = "cannot execute the command"; break;
    case stage_sync: what = "pinfold went away while the sandbox was set up"; break;
    case stage_id_maps: what = "cannot map the sandbox's user and group ids"; break;
    case stage_cgroupns: what = "cannot create the sandbox's cgroup namespace"; break;
    case stage_ids: what = "cannot become uid " + std::to_string(plan.inner_uid) + " inside the sandbox"; break;
    case stage_mounts:
        if (failure.step >= 0 && static_cast<std::size_t>(failure.step) < plan.mounts.size()) {
            const auto& s = plan.mounts[static_cast<std::size_t>(failure.step)];
            what = "cannot mount " + s.target + (s.source.empty() ? "" : " (from " + s.source + ")") +
                   " in the sandbox";
        } else {
            what = "cannot build the sandbox's root filesystem";
        }
        break;
    case stage_hostname: what = "cannot set the sandbox's host name"; break;
    case stage_capabilities: what = "cannot drop capabilities"; break;
    case stage_no_new_privs: what = "cannot set no_new_privs"; break;
    case stage_seccomp: what = "cannot load the seccomp filter"; break;
    case stage_fork: what = "cannot start the command inside the sandbox"; break;
    default: what = "sandbox setup failed"; break;
    }
    return what + ": " + std::strerror(failure.error);
}

Result<void> write_id_maps(pid_t child, const SandboxPlan& plan)
{
    if (!plan.privileged)
        return {};
    std::string base = "/proc/" + std::to_string(child) + "/";
    std::string uid_line = std::to_string(plan.inner_uid) + " " + std::to_string(plan.outer_uid) + " 1\n";
    std::string gid_line = std::to_string(plan.inner_gid) + " " + std::to_string(plan.outer_gid) + " 1\n";
    if (int err = write_text((base + "uid_map").c_str(), uid_line.c_str()))
        return fail("write " + base + "uid_map", err);
    if (int err = write_text((base + "gid_map").c_str(), gid_line.c_str()))
        return fail("write " + base + "gid_map", err);
    return {};
}

void run_sandbox_init(const SandboxChildArgs& args) noexcept
{
    const SandboxPlan& plan = *args.plan;
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    // A file-capability pinfold is not dumpable, which would leave this
    // process's /proc files (uid_map among them) owned by root.
    ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    for (int sig = 1; sig < NSIG; ++sig)
        ::signal(sig, SIG_DFL);

    // Wait until the parent has placed us (limits, id maps). EOF means it
    // failed or died: nothing of the sandbox may run then.
    char go = 0;
    ssize_t got;
    do {
        got = ::read(args.lifeline_fd, &go, 1);
    } while (got < 0 && errno == EINTR);
    if (got != 1)
        fail_setup(args, stage_sync, got < 0 ? errno : EPIPE);

    if (!plan.privileged) {
        if (int err = map_own_ids(plan))
            fail_setup(args, stage_id_maps, err);
    }
    if (::unshare(CLONE_NEWCGROUP) != 0)
        fail_setup(args, stage_cgroupns, errno);
    if (int err = become_inner_ids(plan))
        fail_setup(args, stage_ids, err);
    int step = -1;
    if (int err = build_sandbox_root(plan, args.scratch_fds, &step))
        fail_setup(args, stage_mounts, err, step);
    if (::sethostname(plan.hostname.data(), plan.hostname.size()) != 0 ||
        ::setdomainname(plan.hostname.data(), plan.hostname.size()) != 0)
        fail_setup(args, stage_hostname, errno);
    if (int err = drop_capabilities())
        fail_setup(args, stage_capabilities, err);
    // The uid change cleared the parent-death signal; and the parent may
    // have died just before it was set again.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    pollfd alive{args.lifeline_fd, POLLIN, 0};
    if (::poll(&alive, 1, 0) > 0 && (alive.revents & (POLLHUP | POLLERR)))
        fail_setup(args, stage_sync, EPIPE);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail_setup(args, stage_no_new_privs, errno);
    if (int err = load_seccomp(plan, args.listener_sock))
        fail_setup(args, stage_seccomp, err);

    // As init of the PID namespace this process ignores every signal it
    // has no handler for; it takes them through a signalfd instead.
    sigset_t original;
    sigset_t taken;
    sigemptyset(&taken);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD, SIGWINCH, SIGCONT})
        sigaddset(&taken, sig);
    ::sigprocmask(SIG_BLOCK, &taken, &original);
    int sigfd = ::signalfd(-1, &taken, SFD_CLOEXEC);
    if (sigfd < 0)
        fail_setup(args, stage_fork, errno);

    if (args.held) {
        // Built, but the command waits for pinfold's second byte: sent once
        // the programs are attached and the proxy is ready. EOF: it failed.
        ssize_t again;
        do {
            again = ::read(args.lifeline_fd, &go, 1);
        } while (again < 0 && errno == EINTR);
        if (again != 1)
            fail_setup(args, stage_sync, again < 0 ? errno : EPIPE);
    }

    pid_t command = ::fork();
    if (command < 0)
        fail_setup(args, stage_fork, errno);
    if (command == 0)
        exec_command(args, original);
    ::close(args.report_fd);

    for (;;) {
        pollfd fds[2] = {{sigfd, POLLIN, 0}, {args.lifeline_fd, POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            ::_exit(125);
        }
        if (fds[1].revents & (POLLHUP | POLLERR | POLLIN)) {
            // pinfold is gone: so is the sandbox (the kernel kills every
            // process of the namespace when its init exits).
            ::_exit(125);
        }
        if (!(fds[0].revents & POLLIN))
            continue;
        signalfd_siginfo info{};
        if (::read(sigfd, &info, sizeof info) != sizeof info)
            continue;
        if (info.ssi_signo != SIGCHLD) {
            ::kill(command, static_cast<int>(info.ssi_signo));
            continue;
        }
        for (;;) {
            int status = 0;
            pid_t pid = ::waitpid(-1, &status, WNOHANG);
            if (pid <= 0)
                break;
            if (pid == command)
                ::_exit(code_of(status));
        }
    }
}

} // namespace pinfold::loader
