#pragma once
// The seccomp program of the sandbox: refuses what the cgroup hooks cannot
// see (packet, netlink other than routing, vsock, AF_ALG, Bluetooth, ...
// sockets) and the calls a sandboxed agent never needs and a kernel
// exploit often does (mount, bpf, ptrace, keyctl, perf_event_open, ...).

#include <linux/filter.h>

#include <vector>

#include "pinfold/error.hpp"

namespace pinfold::loader {

// Built with libseccomp in the parent; the child only loads it.
[[nodiscard]] Result<std::vector<sock_filter>> build_seccomp_program();

} // namespace pinfold::loader
