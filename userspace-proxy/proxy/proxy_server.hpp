#pragma once
// The proxy's event loop: one thread, epoll, no thread per connection. It
// only moves bytes between sockets; parsing is http/, decisions are
// request_gate, identity comes from an OriginSource.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "connection_origin.hpp"
#include "pinfold/audit_log.hpp"
#include "policy/credentials.hpp"
#include "policy/policy.hpp"
#include "resolver.hpp"
#include "tls/certificate_authority.hpp"
#include "upstream_pool.hpp"

namespace pinfold::proxy {

struct ProxyLimits {
    std::size_t max_buffer = 1 << 20;      // per direction, before reading pauses
    int idle_timeout_seconds = 120;
    int connect_timeout_seconds = 10;
    UpstreamPoolLimits pool{};             // idle plain-HTTP upstream connections
    // After a wake-up with events the loop polls epoll without sleeping for
    // this long before it blocks again: the next request of a burst then
    // finds the proxy on-CPU instead of paying an idle CPU's wake-up (most
    // of a new connection's added latency, docs/benchmarks.md). It costs
    // CPU while traffic flows, so it is off unless asked for.
    std::chrono::microseconds busy_poll{0};
};

class ProxyServer {
public:
    ProxyServer(OriginSource& origins, Resolver& resolver, AuditLog& audit, ProxyLimits limits = {});
    ~ProxyServer();
    ProxyServer(const ProxyServer&) = delete;
    ProxyServer& operator=(const ProxyServer&) = delete;

    // Policy for connections whose origin names this sandbox. Connections
    // of a sandbox without one are denied.
    void set_policy(std::uint64_t sandbox_id, std::shared_ptr<const policy::CompiledPolicy> policy);

    // TLS on steered connections: leaves minted by `ca`, upstream sessions
    // verified with `upstream` (both borrowed, outliving run()). Without
    // this every TLS connection is denied.
    void enable_tls(const tls::CertificateAuthority& ca, SSL_CTX* upstream);

    // Credential providers (docs/credentials.md): injected on requests of
    // rules that list them; their placeholders and secrets anywhere else
    // deny the request. Without this no request is changed.
    void set_credentials(std::shared_ptr<const policy::CredentialSet> credentials);

    // Listens on 127.0.0.1 and [::1] on one port the kernel picks; returns it.
    [[nodiscard]] Result<std::uint16_t> listen_loopback();

    // Serves until `stop_fd` (a signalfd or eventfd) becomes readable, or
    // `parent_fd` (the read end of the loader's pipe) reaches EOF. Batched
    // audit records are flushed on the way out.
    [[nodiscard]] Result<void> run(int stop_fd, int parent_fd = -1);

private:
    struct State;   // connections, listeners, epoll: see proxy_server.cpp
    std::unique_ptr<State> state_;
};

} // namespace pinfold::proxy
