#pragma once
// The seccomp program of the sandbox: refuses what the cgroup hooks cannot
// see (packet, netlink other than routing, vsock, AF_ALG, Bluetooth, ...
// sockets) and the calls a sandboxed agent never needs and a kernel
// exploit often does (mount, bpf, ptrace, keyctl, perf_event_open, ...).

#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pinfold/error.hpp"

namespace pinfold::loader {

// Built with libseccomp in the parent; the child only loads it. Refused
// calls are not failed by the filter itself: they are handed to pinfold
// (SECCOMP_RET_USER_NOTIF), which answers EPERM and audits them. Should
// pinfold be gone, the kernel fails them with ENOSYS: refused either way.
[[nodiscard]] Result<std::vector<sock_filter>> build_seccomp_program();

// A call the filter refused, as pinfold answered it.
struct RefusedCall {
    std::uint32_t pid = 0;     // in pinfold's PID namespace
    int nr = -1;
    std::uint64_t args[6] = {};
};

// Reads one notification from the filter's listener and answers EPERM.
[[nodiscard]] Result<RefusedCall> refuse_notified_call(int listener_fd);

// "socket(AF_PACKET, ...)", "mount", "ptrace", "ioctl(TIOCSTI)".
[[nodiscard]] std::string describe_refused_call(const RefusedCall& call);

} // namespace pinfold::loader
