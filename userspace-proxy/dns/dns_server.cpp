#include "dns/dns_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include <chrono>
#include <charconv>
#include <cstring>
#include <list>

#include <spdlog/spdlog.h>

#include "dns/message.hpp"
#include "pinfold/socket_exemption.hpp"
#include "dns/resolution.hpp"

namespace pinfold::dns {

namespace {

using Clock = std::chrono::steady_clock;

std::shared_ptr<spdlog::logger> log()
{
    static auto logger = [] {
        auto l = spdlog::get("dns");
        return l ? l : spdlog::default_logger()->clone("dns");
    }();
    return logger;
}

std::uint16_t random_id()
{
    std::uint16_t id = 0;
    if (::getrandom(&id, sizeof id, 0) != sizeof id)
        id = static_cast<std::uint16_t>(Clock::now().time_since_epoch().count());
    return id;
}

// How a query came in, so its answer can go back the same way.
struct Client {
    int udp_fd = -1;                 // >= 0: datagram, answer with sendto(peer)
    sockaddr_storage peer{};
    socklen_t peer_len = 0;
    std::uint64_t tcp_id = 0;        // else: the TCP connection's id
};

struct Who {
    std::uint64_t sandbox = 0;
    std::uint32_t pid = 0;
    std::uint32_t uid = 0;
    std::uint64_t cgroup = 0;
};

struct Pending {
    int fd = -1;                     // connected UDP socket to the upstream
    std::uint16_t upstream_id = 0;
    Query query;
    Client client;
    Who who;
    Clock::time_point deadline;
};

struct TcpClient {
    std::uint64_t id = 0;
    int fd = -1;
    StreamFramer framer;
    std::vector<std::uint8_t> out;
    Who who;
    Clock::time_point deadline;
    bool closing = false;
};

} // namespace

Result<std::string> first_nameserver(std::string_view text)
{
    while (!text.empty()) {
        auto eol = text.find('\n');
        std::string_view line = text.substr(0, eol);
        text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
        constexpr std::string_view key = "nameserver";
        auto start = line.find_first_not_of(" \t");
        if (start == std::string_view::npos || !line.substr(start).starts_with(key))
            continue;
        line = line.substr(start + key.size());
        auto a = line.find_first_not_of(" \t");
        if (a == std::string_view::npos || a == 0)
            continue;
        line = line.substr(a);
        auto b = line.find_first_of(" \t\r#;");
        std::string addr(line.substr(0, b));
        // A scoped address (fe80::1%eth0) names an interface we cannot use.
        if (addr.find('%') != std::string::npos)
            continue;
        return addr.find(':') != std::string::npos ? "[" + addr + "]:53" : addr + ":53";
    }
    return fail("no nameserver line in /etc/resolv.conf (give --dns-upstream ADDR:PORT)");
}

Result<std::pair<sockaddr_storage, socklen_t>> parse_upstream(std::string_view text)
{
    std::string_view host;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find("]:");
        if (close == std::string_view::npos)
            return fail("DNS upstream '" + std::string(text) + "': expected [IPV6]:PORT");
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos || text.find(':') != colon)
            return fail("DNS upstream '" + std::string(text) + "': expected ADDR:PORT or [IPV6]:PORT");
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || ptr != port.data() + port.size() || p == 0 || p > 65535)
        return fail("DNS upstream '" + std::string(text) + "': invalid port");
    sockaddr_storage ss{};
    std::string h(host);
    auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET, h.c_str(), &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(static_cast<std::uint16_t>(p));
        return std::pair{ss, static_cast<socklen_t>(sizeof(sockaddr_in))};
    }
    if (::inet_pton(AF_INET6, h.c_str(), &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(static_cast<std::uint16_t>(p));
        return std::pair{ss, static_cast<socklen_t>(sizeof(sockaddr_in6))};
    }
    return fail("DNS upstream '" + std::string(text) + "': '" + h + "' is not an IP address");
}

struct DnsServer::State {
    ServerConfig config;
    NamePolicy names;
    AnswerMemory& memory;
    proxy::OriginSource& origins;
    AuditLog audit;
    int udp[2] = {-1, -1};
    int tcp[2] = {-1, -1};
    int stop_fd = -1;
    std::list<Pending> pending;
    std::list<TcpClient> tcp_clients;
    std::uint64_t next_tcp_id = 1;

    State(ServerConfig c, NamePolicy n, AnswerMemory& m, proxy::OriginSource& o, int audit_fd)
        : config(std::move(c)), names(std::move(n)), memory(m), origins(o), audit(audit_fd)
    {
    }

    ~State()
    {
        for (int fd : {udp[0], udp[1], tcp[0], tcp[1], stop_fd})
            if (fd >= 0)
                ::close(fd);
        for (auto& p : pending)
            ::close(p.fd);
        for (auto& c : tcp_clients)
            ::close(c.fd);
    }

    void loop() noexcept;
    void on_datagram(int fd) noexcept;
    void on_accept(int fd) noexcept;
    void on_tcp_readable(TcpClient& c) noexcept;
    void on_upstream(Pending& p) noexcept;
    void handle_query(std::span<const std::uint8_t> message, const Client& client, const Who& who) noexcept;
    void reply(const Client& client, const std::vector<std::uint8_t>& message) noexcept;
    void audit_query(const Who& who, const std::string& name, std::uint16_t type, bool allowed,
                     const std::string& reason) noexcept;
    TcpClient* find_tcp(std::uint64_t id) noexcept;
};

DnsServer::DnsServer(ServerConfig config, NamePolicy names, AnswerMemory& memory, proxy::OriginSource& origins,
                     int audit_fd)
    : state_(std::make_unique<State>(std::move(config), std::move(names), memory, origins, audit_fd))
{
}

DnsServer::~DnsServer() { stop(); }

Result<std::uint16_t> DnsServer::listen_loopback()
{
    auto& s = *state_;
    // The kernel picks the UDP port on 127.0.0.1; the three other sockets
    // take the same number, or we start over.
    for (int attempt = 0; attempt < 20; ++attempt) {
        int fds[4] = {-1, -1, -1, -1};
        auto close_all = [&] {
            for (int& fd : fds)
                if (fd >= 0)
                    ::close(fd), fd = -1;
        };
        std::uint16_t port = 0;
        bool ok = true;
        for (int i = 0; i < 4 && ok; ++i) {
            bool v6 = i % 2 == 1;
            bool stream = i >= 2;
            fds[i] = ::socket(v6 ? AF_INET6 : AF_INET, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
                              0);
            if (fds[i] < 0) {
                close_all();
                return fail_errno("socket");
            }
            // Container mode: the replies go to sandbox sockets on loopback.
            if (!stream && !exempt_replies(fds[i])) {
                auto err = fail_errno("mark the resolver's socket as pinfold's own");
                close_all();
                return err;
            }
            sockaddr_storage ss{};
            socklen_t len = 0;
            if (v6) {
                int one = 1;
                ::setsockopt(fds[i], IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
                auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
                a->sin6_family = AF_INET6;
                a->sin6_addr = in6addr_loopback;
                a->sin6_port = htons(port);
                len = sizeof *a;
            } else {
                auto* a = reinterpret_cast<sockaddr_in*>(&ss);
                a->sin_family = AF_INET;
                a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                a->sin_port = htons(port);
                len = sizeof *a;
            }
            if (::bind(fds[i], reinterpret_cast<sockaddr*>(&ss), len) != 0) {
                if (errno == EADDRINUSE && port != 0) {
                    ok = false;
                    break;
                }
                auto err = fail_errno("bind resolver socket");
                close_all();
                return err;
            }
            if (port == 0) {
                socklen_t l = sizeof ss;
                ::getsockname(fds[i], reinterpret_cast<sockaddr*>(&ss), &l);
                port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
            }
            if (stream && ::listen(fds[i], 64) != 0) {
                auto err = fail_errno("listen resolver socket");
                close_all();
                return err;
            }
        }
        if (!ok) {
            close_all();
            continue;
        }
        s.udp[0] = fds[0];
        s.udp[1] = fds[1];
        s.tcp[0] = fds[2];
        s.tcp[1] = fds[3];
        return port;
    }
    return fail("could not find one free port for the resolver on 127.0.0.1 and [::1] (UDP and TCP)");
}

Result<void> DnsServer::start()
{
    state_->stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (state_->stop_fd < 0)
        return fail_errno("eventfd");
    try {
        thread_ = std::thread([this] { state_->loop(); });
    } catch (const std::system_error& e) {
        return fail(std::string("start resolver thread: ") + e.what());
    }
    return {};
}

void DnsServer::stop() noexcept
{
    if (!thread_.joinable())
        return;
    std::uint64_t one = 1;
    (void)::write(state_->stop_fd, &one, sizeof one);
    thread_.join();
}

void DnsServer::State::audit_query(const Who& who, const std::string& name, std::uint16_t type, bool allowed,
                                   const std::string& reason) noexcept
{
    try {
        AuditRecord r;
        r.event = "dns";
        r.verdict = allowed ? "allow" : "deny";
        r.sandbox = who.sandbox;
        r.pid = who.pid;
        r.uid = who.uid;
        r.cgroup = who.cgroup;
        r.host = name;
        r.method = type_name(type);
        r.reason = reason;
        audit.write(r);
    } catch (...) {
        // The answer has been decided already; only its record is lost.
    }
}

TcpClient* DnsServer::State::find_tcp(std::uint64_t id) noexcept
{
    for (auto& c : tcp_clients)
        if (c.id == id)
            return &c;
    return nullptr;
}

void DnsServer::State::reply(const Client& client, const std::vector<std::uint8_t>& message) noexcept
{
    if (client.udp_fd >= 0) {
        // A lost datagram is the client's to retry, as with any resolver.
        (void)::sendto(client.udp_fd, message.data(), message.size(), MSG_DONTWAIT,
                       reinterpret_cast<const sockaddr*>(&client.peer), client.peer_len);
        return;
    }
    if (auto* c = find_tcp(client.tcp_id)) {
        auto framed = frame(message);
        c->out.insert(c->out.end(), framed.begin(), framed.end());
    }
}

void DnsServer::State::handle_query(std::span<const std::uint8_t> message, const Client& client,
                                    const Who& who) noexcept
{
    try {
        auto query = parse_query(message);
        if (!query) {
            audit_query(who, "", 0, false, "malformed query: " + query.error().reason);
            if (query.error().id)
                reply(client, build_error(*query.error().id, query.error().rcode));
            return;
        }
        std::size_t max_size = client.udp_fd >= 0 ? max_udp_message : 65535;
        auto plan = plan_query(*query, names, config.overrides);
        if (auto* refuse = std::get_if<Refuse>(&plan)) {
            audit_query(who, query->question.name, query->question.type, false,
                        refuse->reason + " (" + rcode_name(refuse->rcode) + ")");
            reply(client, build_response(*query, refuse->rcode, {}, max_size));
            return;
        }
        if (auto* local = std::get_if<AnswerLocally>(&plan)) {
            std::vector<MappedAddress> addresses;
            for (const auto& r : local->answers)
                addresses.push_back(r.address);
            memory.remember(who.sandbox, query->question.name, addresses);
            audit_query(who, query->question.name, query->question.type, true,
                        local->reason + ": " + std::to_string(addresses.size()) + " address(es)");
            reply(client, build_response(*query, Rcode::noerror, local->answers, max_size));
            return;
        }
        if (pending.size() >= config.max_pending) {
            audit_query(who, query->question.name, query->question.type, false,
                        "too many queries in flight (SERVFAIL)");
            reply(client, build_response(*query, Rcode::servfail, {}, max_size));
            return;
        }
        int fd = ::socket(config.upstream.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || !exempt_upstream(fd) ||
            ::connect(fd, reinterpret_cast<const sockaddr*>(&config.upstream), config.upstream_len) != 0) {
            std::string err = std::strerror(errno);
            if (fd >= 0)
                ::close(fd);
            audit_query(who, query->question.name, query->question.type, false,
                        "cannot reach the upstream resolver: " + err + " (SERVFAIL)");
            reply(client, build_response(*query, Rcode::servfail, {}, max_size));
            return;
        }
        Pending p;
        p.fd = fd;
        p.upstream_id = random_id();
        p.query = std::move(*query);
        p.client = client;
        p.who = who;
        p.deadline = Clock::now() + std::chrono::milliseconds(config.upstream_timeout_ms);
        // Only the question leaves the machine, rebuilt by us: none of the
        // client's header bits, EDNS options or padding go along.
        auto out = build_query(p.upstream_id, p.query.question);
        if (::send(fd, out.data(), out.size(), 0) < 0) {
            std::string err = std::strerror(errno);
            ::close(fd);
            audit_query(who, p.query.question.name, p.query.question.type, false,
                        "cannot reach the upstream resolver: " + err + " (SERVFAIL)");
            reply(client, build_response(p.query, Rcode::servfail, {}, max_size));
            return;
        }
        pending.push_back(std::move(p));
    } catch (const std::exception& e) {
        log()->error("query dropped: {}", e.what());
    }
}

void DnsServer::State::on_upstream(Pending& p) noexcept
{
    std::uint8_t buf[65536];
    ssize_t n = ::recv(p.fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    std::size_t max_size = p.client.udp_fd >= 0 ? max_udp_message : 65535;
    try {
        if (n < 0) {
            audit_query(p.who, p.query.question.name, p.query.question.type, false,
                        std::string("upstream resolver: ") + std::strerror(errno) + " (SERVFAIL)");
            reply(p.client, build_response(p.query, Rcode::servfail, {}, max_size));
        } else {
            auto response = parse_response(std::span(buf, static_cast<std::size_t>(n)), p.upstream_id,
                                           p.query.question);
            if (!response) {
                // Not our answer (or garbage): keep waiting for the real one
                // until the deadline, as a spoofed datagram would hope.
                log()->debug("ignored upstream datagram: {}", response.error().reason);
                return;
            }
            auto selected = select_answers(p.query, *response);
            memory.remember(p.who.sandbox, p.query.question.name, selected.addresses);
            audit_query(p.who, p.query.question.name, p.query.question.type, selected.rcode == Rcode::noerror,
                        std::string("forwarded upstream: ") + rcode_name(selected.rcode) + ", " +
                            std::to_string(selected.addresses.size()) + " address(es)");
            reply(p.client, build_response(p.query, selected.rcode, selected.answers, max_size));
        }
    } catch (const std::exception& e) {
        log()->error("upstream answer dropped: {}", e.what());
    }
    ::close(p.fd);
    p.fd = -1;
}

void DnsServer::State::on_datagram(int fd) noexcept
{
    // Bounded: at most 64 datagrams per wake-up, the rest next round.
    for (int i = 0; i < 64; ++i) {
        std::uint8_t buf[65536];
        Client client;
        client.udp_fd = fd;
        client.peer_len = sizeof client.peer;
        ssize_t n = ::recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&client.peer),
                               &client.peer_len);
        if (n < 0)
            return;
        // Datagrams have no origin record: they are attributed to the run's
        // sandbox (one proxy serves one sandbox; see docs/security.md).
        Who who{config.sandbox_id, 0, 0, 0};
        handle_query(std::span(buf, static_cast<std::size_t>(n)), client, who);
    }
}

void DnsServer::State::on_accept(int fd) noexcept
{
    for (int i = 0; i < 16; ++i) {
        int c = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0)
            return;
        auto origin = origins.lookup(c);
        if (!origin) {
            audit_query(Who{}, "", 0, false, "TCP connection to the resolver without an origin record: closed");
            ::close(c);
            continue;
        }
        if (tcp_clients.size() >= config.max_tcp_clients) {
            audit_query(Who{origin->sandbox_id, origin->pid, origin->uid, origin->cgroup_id}, "", 0, false,
                        "too many TCP clients of the resolver: closed");
            ::close(c);
            continue;
        }
        TcpClient t;
        t.id = next_tcp_id++;
        t.fd = c;
        t.who = Who{origin->sandbox_id, origin->pid, origin->uid, origin->cgroup_id};
        t.deadline = Clock::now() + std::chrono::milliseconds(config.tcp_idle_timeout_ms);
        tcp_clients.push_back(std::move(t));
    }
}

void DnsServer::State::on_tcp_readable(TcpClient& c) noexcept
{
    std::uint8_t buf[16384];
    ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        c.closing = true;
        return;
    }
    c.deadline = Clock::now() + std::chrono::milliseconds(config.tcp_idle_timeout_ms);
    c.framer.feed(std::span(buf, static_cast<std::size_t>(n)));
    for (int i = 0; i < 16; ++i) {
        auto message = c.framer.next();
        if (!message)
            break;
        Client client;
        client.tcp_id = c.id;
        handle_query(*message, client, c.who);
    }
    if (c.framer.failed() || c.framer.buffered() > 2 + 65535)
        c.closing = true;
}

void DnsServer::State::loop() noexcept
{
    std::vector<pollfd> fds;
    for (;;) {
        fds.clear();
        fds.push_back({stop_fd, POLLIN, 0});
        for (int fd : {udp[0], udp[1], tcp[0], tcp[1]})
            fds.push_back({fd, POLLIN, 0});
        for (auto& p : pending)
            fds.push_back({p.fd, POLLIN, 0});
        for (auto& c : tcp_clients)
            fds.push_back({c.fd, static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
        int n = ::poll(fds.data(), fds.size(), 250);
        if (n < 0 && errno != EINTR) {
            log()->error("poll: {}", std::strerror(errno));
            return;
        }
        if (fds[0].revents & POLLIN)
            return;
        std::size_t i = 5;
        std::size_t pending_count = pending.size();
        std::size_t tcp_count = tcp_clients.size();
        // Work on the lists as they were polled; handlers may append.
        auto p = pending.begin();
        for (std::size_t k = 0; k < pending_count; ++k, ++p, ++i) {
            if (fds[i].revents & (POLLIN | POLLERR))
                on_upstream(*p);
        }
        auto c = tcp_clients.begin();
        for (std::size_t k = 0; k < tcp_count; ++k, ++c, ++i) {
            if (fds[i].revents & (POLLIN | POLLHUP | POLLERR))
                on_tcp_readable(*c);
        }
        for (int k = 0; k < 2; ++k) {
            if (fds[1 + k].revents & POLLIN)
                on_datagram(udp[k]);
            if (fds[3 + k].revents & POLLIN)
                on_accept(tcp[k]);
        }
        auto now = Clock::now();
        for (auto it = pending.begin(); it != pending.end();) {
            if (it->fd >= 0 && now >= it->deadline) {
                std::size_t max_size = it->client.udp_fd >= 0 ? max_udp_message : 65535;
                audit_query(it->who, it->query.question.name, it->query.question.type, false,
                            "upstream resolver did not answer in time (SERVFAIL)");
                try {
                    reply(it->client, build_response(it->query, Rcode::servfail, {}, max_size));
                } catch (...) {
                }
                ::close(it->fd);
                it->fd = -1;
            }
            it = it->fd < 0 ? pending.erase(it) : std::next(it);
        }
        for (auto it = tcp_clients.begin(); it != tcp_clients.end();) {
            if (!it->out.empty()) {
                ssize_t w = ::send(it->fd, it->out.data(), it->out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w > 0)
                    it->out.erase(it->out.begin(), it->out.begin() + w);
                else if (w < 0 && errno != EAGAIN)
                    it->closing = true;
            }
            bool waiting = false;
            for (auto& q : pending)
                waiting = waiting || (q.client.udp_fd < 0 && q.client.tcp_id == it->id);
            if ((it->closing && (it->out.empty() || it->framer.failed()) && !waiting) || now >= it->deadline) {
                ::close(it->fd);
                it = tcp_clients.erase(it);
            } else {
                ++it;
            }
        }
    }
}

} // namespace pinfold::dns

namespace pinfold::dns {

Result<std::pair<std::unique_ptr<DnsServer>, std::uint16_t>>
start_dns_server(std::string_view upstream, std::uint64_t sandbox_id, const policy::Policy& policy,
                 const std::map<std::string, std::vector<MappedAddress>>& overrides, AnswerMemory& memory,
                 proxy::OriginSource& origins, int audit_fd)
{
    auto address = parse_upstream(upstream);
    if (!address)
        return std::unexpected(address.error());
    ServerConfig config;
    config.sandbox_id = sandbox_id;
    config.upstream = address->first;
    config.upstream_len = address->second;
    config.overrides = overrides;
    int fd = ::fcntl(audit_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return fail_errno("dup audit fd for the resolver");
    auto server = std::make_unique<DnsServer>(std::move(config), NamePolicy(policy), memory, origins, fd);
    auto port = server->listen_loopback();
    if (!port)
        return std::unexpected(port.error());
    if (auto r = server->start(); !r)
        return std::unexpected(r.error());
    return std::pair{std::move(server), *port};
}

} // namespace pinfold::dns
