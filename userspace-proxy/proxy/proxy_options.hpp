#pragma once
// Options of pinfold-proxy. It is started by the loader, which passes
// everything as inherited fds: the proxy opens no file of its own.

#include <cstdint>
#include <string>
#include <vector>

#include "pinfold/busy_poll.hpp"
#include "pinfold/error.hpp"

namespace pinfold::proxy {

struct ProxyOptions {
    int origin_map_fd = -1;      // origin_map (socket storage), read-only use
    int handover_fd = -1;        // instead of origin_map_fd: the maps come later (pinfold/proxy_handover.hpp)
    int audit_fd = -1;           // JSON lines, O_APPEND
    int policy_fd = -1;          // policy YAML (memfd)
    std::string policy_source;   // file name for error messages
    int binaries_fd = -1;        // the loader's resolution of binaries: (JSON); -1: resolve here
    bool degraded_identity = false;  // the loader could not enable identity capture
    int exe_lookup_fd = -1;      // degraded identity: SOCK_SEQPACKET to pinfold's /proc/<pid>/exe lookup
    int ready_fd = -1;           // "PORT\n" is written here once listening
    int stop_fd = -1;            // pipe from the loader: EOF means stop (flush the audit, exit)
    std::uint64_t sandbox_id = 0;
    std::vector<std::string> hosts;   // NAME=ADDR[,ADDR]
    int upstream_ca_fd = -1;     // PEM roots for upstream TLS; -1: the system store
    int credentials_fd = -1;     // providers with their secrets (memfd; never argv or environment)
    int ca_out_fd = -1;          // the run CA certificate (PEM, public) is written here
    std::string dns_upstream;         // ADDR:PORT of the resolver allowed names go to; "" -> no DNS
    std::string log_level = "info";
    int busy_poll_us = 0;        // 0: sleep in epoll_wait at once (ProxyLimits::busy_poll)
    int exempt_map_fd = -1;      // container mode: exempt_map, to mark our own sockets (socket_exemption.hpp)
};

// `args` without the program name.
[[nodiscard]] Result<ProxyOptions> parse_proxy_options(const std::vector<std::string>& args);

} // namespace pinfold::proxy
