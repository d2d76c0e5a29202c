#include "seccomp_filter.hpp"

#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <cerrno>
#include <memory>

#include <seccomp.h>

namespace pinfold::loader {

namespace {

// Families whose sockets the cgroup hooks police (inet) or that stay on
// the machine (unix). Netlink is allowed for NETLINK_ROUTE only: glibc's
// getaddrinfo(AI_ADDRCONFIG) and getifaddrs() read it, and changing routes
// needs CAP_NET_ADMIN in the host's network namespace, which nothing in the
// sandbox has.
bool allowed_family(int family)
{
    return family == AF_UNIX || family == AF_INET || family == AF_INET6 || family == AF_NETLINK;
}

// Refused outright. Most already need a capability the sandbox lacks; the
// filter keeps them refused should a kernel bug hand one out, and keeps the
// attack surface of the rest (bpf, perf, keys, userfaultfd) out of reach.
constexpr int refused_calls[] = {
    SCMP_SYS(mount), SCMP_SYS(umount2), SCMP_SYS(pivot_root), SCMP_SYS(chroot),
    SCMP_SYS(open_tree), SCMP_SYS(move_mount), SCMP_SYS(fsopen), SCMP_SYS(fsconfig),
    SCMP_SYS(fsmount), SCMP_SYS(fspick), SCMP_SYS(mount_setattr),
    SCMP_SYS(ptrace), SCMP_SYS(process_vm_readv), SCMP_SYS(process_vm_writev),
    SCMP_SYS(bpf), SCMP_SYS(perf_event_open), SCMP_SYS(userfaultfd),
    SCMP_SYS(keyctl), SCMP_SYS(add_key), SCMP_SYS(request_key),
    SCMP_SYS(kexec_load), SCMP_SYS(kexec_file_load), SCMP_SYS(init_module),
    SCMP_SYS(finit_module), SCMP_SYS(delete_module), SCMP_SYS(reboot),
    SCMP_SYS(swapon), SCMP_SYS(swapoff), SCMP_SYS(acct), SCMP_SYS(quotactl),
    SCMP_SYS(open_by_handle_at), SCMP_SYS(name_to_handle_at), SCMP_SYS(lookup_dcookie),
    SCMP_SYS(iopl), SCMP_SYS(ioperm), SCMP_SYS(settimeofday), SCMP_SYS(clock_settime),
    SCMP_SYS(clock_adjtime), SCMP_SYS(adjtimex), SCMP_SYS(syslog), SCMP_SYS(setns),
    SCMP_SYS(fanotify_init), SCMP_SYS(kcmp), SCMP_SYS(pidfd_getfd),
};

struct ContextDeleter {
    void operator()(void* ctx) const noexcept { seccomp_release(ctx); }
};

} // namespace

Result<std::vector<sock_filter>> build_seccomp_program()
{
    // 32-bit and x32 system calls would bypass every rule below: libseccomp
    // kills a process using another ABI (the default bad-arch action).
    std::unique_ptr<void, ContextDeleter> ctx(seccomp_init(SCMP_ACT_ALLOW));
    if (!ctx)
        return fail("seccomp_init failed");
    const std::uint32_t refuse = SCMP_ACT_NOTIFY;
    int rc = 0;
    for (int call : refused_calls) {
        if (call < 0)
            continue;   // not a call of this architecture
        if ((rc = seccomp_rule_add(ctx.get(), refuse, call, 0)) != 0)
            return fail("seccomp rule for call " + std::to_string(call), -rc);
    }
    // socket(2) takes int arguments: compare only the low 32 bits, else a
    // value with high bits set would miss the rule and still be truncated
    // to the refused family by the kernel. Families >= AF_MAX are refused
    // by the kernel itself (EAFNOSUPPORT).
    for (int family = 0; family < AF_MAX; ++family) {
        if (allowed_family(family))
            continue;
        rc = seccomp_rule_add(ctx.get(), refuse, SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffU, static_cast<scmp_datum_t>(family)));
        if (rc != 0)
            return fail("seccomp rule for socket family " + std::to_string(family), -rc);
        rc = seccomp_rule_add(ctx.get(), refuse, SCMP_SYS(socketpair), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffU, static_cast<scmp_datum_t>(family)));
        if (rc != 0)
            return fail("seccomp rule for socketpair family " + std::to_string(family), -rc);
    }
    // Netlink protocols other than NETLINK_ROUTE (0): sock_diag would list
    // the host's sockets, audit/uevent/xfrm are none of the sandbox's business.
    for (int protocol = 1; protocol < MAX_LINKS; ++protocol) {
        rc = seccomp_rule_add(ctx.get(), refuse, SCMP_SYS(socket), 2,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffU, static_cast<scmp_datum_t>(AF_NETLINK)),
                              SCMP_A2(SCMP_CMP_MASKED_EQ, 0xffffffffU, static_cast<scmp_datum_t>(protocol)));
        if (rc != 0)
            return fail("seccomp rule for netlink protocol " + std::to_string(protocol), -rc);
    }
    // TIOCSTI/TIOCLINUX push input into the terminal pinfold shares with the
    // shell that started it: a sandboxed command could type commands there.
    for (unsigned long request : {static_cast<unsigned long>(TIOCSTI), static_cast<unsigned long>(TIOCLINUX)}) {
        rc = seccomp_rule_add(ctx.get(), refuse, SCMP_SYS(ioctl), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffU, static_cast<scmp_datum_t>(request)));
        if (rc != 0)
            return fail("seccomp rule for ioctl", -rc);
    }

    int fd = ::memfd_create("pinfold-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return fail_errno("memfd_create");
    rc = seccomp_export_bpf(ctx.get(), fd);
    off_t size = ::lseek(fd, 0, SEEK_END);
    if (rc != 0 || size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0) {
        ::close(fd);
        return fail("seccomp_export_bpf failed", rc < 0 ? -rc : 0);
    }
    std::vector<sock_filter> program(static_cast<std::size_t>(size) / sizeof(sock_filter));
    ssize_t got = ::pread(fd, program.data(), static_cast<std::size_t>(size), 0);
    ::close(fd);
    if (got != size)
        return fail("reading the seccomp program back failed");
    return program;
}

Result<RefusedCall> refuse_notified_call(int listener_fd)
{
    seccomp_notif request;
    std::memset(&request, 0, sizeof request);   // the kernel insists
    if (::ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_RECV, &request) != 0)
        return fail_errno("read a seccomp notification");
    seccomp_notif_resp response;
    std::memset(&response, 0, sizeof response);
    response.id = request.id;
    response.error = -EPERM;
    // ENOENT: the caller died (or was interrupted) meanwhile; still audited.
    if (::ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_SEND, &response) != 0 && errno != ENOENT)
        return fail_errno("answer a seccomp notification");
    RefusedCall call;
    call.pid = request.pid;
    call.nr = request.data.nr;
    for (int i = 0; i < 6; ++i)
        call.args[i] = request.data.args[i];
    return call;
}

std::string describe_refused_call(const RefusedCall& call)
{
    std::string name = "syscall " + std::to_string(call.nr);
    if (char* resolved = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, call.nr)) {
        name = resolved;
        std::free(resolved);
    }
    auto low = [&](int i) { return static_cast<std::uint32_t>(call.args[i]); };
    if (call.nr == SCMP_SYS(socket) || call.nr == SCMP_SYS(socketpair))
        return name + "(family " + std::to_string(low(0)) + ", type " + std::to_string(low(1) & 0xff) +
               ", protocol " + std::to_string(low(2)) + ")";
    if (call.nr == SCMP_SYS(ioctl))
        return name + "(request 0x" + [&] {
            char hex[16];
            std::snprintf(hex, sizeof hex, "%x", low(1));
            return std::string(hex);
        }() + ")";
    return name;
}

} // namespace pinfold::loader
