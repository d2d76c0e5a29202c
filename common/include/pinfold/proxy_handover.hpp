#pragma once
// The loader starts the proxy before it loads the BPF programs, so that the
// proxy's own start (exec, policy, CA key) overlaps the load; the map fds the
// proxy needs exist only after it. They come in one message over a
// SOCK_SEQPACKET pair: one flags byte and SCM_RIGHTS with the origin map and,
// for degraded identity, the executable lookup socket.
//
// Fail closed: the proxy creates no socket and reports no readiness before the
// message arrived; the loader starts no command before that readiness, so the
// order "programs attached, proxy ready, command started" is unchanged.

#include "pinfold/error.hpp"

namespace pinfold {

struct ProxyHandover {
    int origin_map_fd = -1;
    int exe_lookup_fd = -1;          // -1 unless degraded identity with pinfold's lookup
    bool degraded_identity = false;  // no kernel executable identity
};

// Sends the handover (the fds are duplicated by the kernel; the caller keeps
// its own).
[[nodiscard]] Result<void> send_proxy_handover(int sock, const ProxyHandover& handover);

// Waits for the handover, at most `timeout_ms`; a closed socket or a readable
// (EOF) `stop_fd` means the loader gave up: an error, the proxy exits. The
// received fds are close-on-exec.
[[nodiscard]] Result<ProxyHandover> receive_proxy_handover(int sock, int stop_fd, int timeout_ms);

} // namespace pinfold
