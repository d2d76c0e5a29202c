#pragma once
// pinfold's resolver: the sandbox's DNS (UDP and TCP port 53, to any
// address) is steered here by the kernel hooks. Runs in its own thread of
// the capability-less proxy, with its own poll loop, so the HTTP event loop
// never waits on DNS.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "dns/answer_memory.hpp"
#include "dns/name_policy.hpp"
#include "pinfold/address.hpp"
#include "pinfold/audit_log.hpp"
#include "pinfold/error.hpp"
#include "proxy/connection_origin.hpp"

namespace pinfold::dns {

struct ServerConfig {
    std::uint64_t sandbox_id = 0;            // datagrams carry no origin record: they are this sandbox's
    sockaddr_storage upstream{};             // where allowed queries go
    socklen_t upstream_len = 0;
    std::map<std::string, std::vector<MappedAddress>> overrides;   // --host entries
    int upstream_timeout_ms = 3000;
    std::size_t max_pending = 256;
    std::size_t max_tcp_clients = 64;
    int tcp_idle_timeout_ms = 10000;
};

// The first `nameserver` of a resolv.conf text as "ADDR:53" / "[ADDR]:53".
[[nodiscard]] Result<std::string> first_nameserver(std::string_view resolv_conf);

// "1.2.3.4:53", "[::1]:5353" into a socket address.
[[nodiscard]] Result<std::pair<sockaddr_storage, socklen_t>> parse_upstream(std::string_view text);

class DnsServer {
public:
    // `origins` identifies TCP clients (the same socket storage as the HTTP
    // side); `audit_fd` is owned.
    DnsServer(ServerConfig config, NamePolicy names, AnswerMemory& memory, proxy::OriginSource& origins,
              int audit_fd);
    ~DnsServer();
    DnsServer(const DnsServer&) = delete;
    DnsServer& operator=(const DnsServer&) = delete;

    // Binds UDP and TCP on 127.0.0.1 and [::1], one port for all four.
    [[nodiscard]] Result<std::uint16_t> listen_loopback();
    // Serves in a new thread until stop() (or destruction).
    [[nodiscard]] Result<void> start();
    void stop() noexcept;

private:
    struct State;
    std::unique_ptr<State> state_;
    std::thread thread_;
};

} // namespace pinfold::dns

namespace pinfold::dns {

// Everything the proxy needs to run its resolver: parses `upstream`, builds
// the name policy from `policy`, binds, starts the thread. `audit_fd` is
// duplicated (the resolver writes its own lines).
[[nodiscard]] Result<std::pair<std::unique_ptr<DnsServer>, std::uint16_t>>
start_dns_server(std::string_view upstream, std::uint64_t sandbox_id, const policy::Policy& policy,
                 const std::map<std::string, std::vector<MappedAddress>>& overrides, AnswerMemory& memory,
                 proxy::OriginSource& origins, int audit_fd);

} // namespace pinfold::dns
