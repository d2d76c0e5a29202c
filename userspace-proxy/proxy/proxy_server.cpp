#include "proxy_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "body_scan.hpp"
#include "credential_gate.hpp"
#include "pinfold/socket_exemption.hpp"
#include "http/parser.hpp"
#include "request_gate.hpp"
#include "response_guard.hpp"
#include "body_splice.hpp"
#include "splice_relay.hpp"
#include "tls/client_hello.hpp"
#include "tls/tls_stream.hpp"
#include "tls_gate.hpp"

namespace pinfold::proxy {

namespace {

using Clock = std::chrono::steady_clock;

std::shared_ptr<spdlog::logger> log()
{
    static auto logger = [] {
        auto l = spdlog::get("proxy.http");
        return l ? l : spdlog::default_logger()->clone("proxy.http");
    }();
    return logger;
}

std::shared_ptr<spdlog::logger> tls_log()
{
    static auto logger = [] {
        auto l = spdlog::get("proxy.tls");
        return l ? l : spdlog::default_logger()->clone("proxy.tls");
    }();
    return logger;
}

// Fatal alerts sent in the clear to a TLS client the proxy refuses before
// any session exists (RFC 8446 6.2): the client reports why it failed.
const std::string alert_access_denied("\x15\x03\x03\x00\x02\x02\x31", 7);

// epoll tags: listeners are small numbers; connection ids are multiples of
// 4, +1 for the upstream socket, +2 when that socket's generation is odd.
// An upstream replaced while events of the old socket are still in this
// round's batch (a pooled or kept one given up for a new connect) would
// otherwise have those events applied to the new socket.
constexpr std::uint64_t stop_tag = 1;
constexpr std::uint64_t listener_tag_base = 2;     // 2, 3
constexpr std::uint64_t first_connection_id = 8;

// head/exchange: HTTP (plain, or decrypted inside an intercepted TLS
// session); relay: TLS passed through untouched.
enum class Phase { head, exchange, relay, closing };

const char* reason_phrase(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

// The response pinfold itself sends: JSON naming the rule and the reason,
// and always Connection: close (a denied request's body is never read).
std::string error_response(int status, const std::string& rule, const std::string& reason,
                           const std::string& method, const std::string& host, const std::string& path)
{
    nlohmann::ordered_json body;
    body["error"] = status == 403 ? "denied" : (status == 502 ? "bad_gateway" : "bad_request");
    body["status"] = status;
    body["rule"] = rule.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(rule);
    body["reason"] = reason;
    if (!method.empty())
        body["method"] = method;
    if (!host.empty())
        body["host"] = host;
    if (!path.empty())
        body["path"] = path;
    std::string text = body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
    out += "Content-Type: application/json\r\n";
    out += "Content-Length: " + std::to_string(text.size()) + "\r\n";
    out += "Connection: close\r\n";
    out += "X-Pinfold-Verdict: deny\r\n\r\n";
    out += text;
    return out;
}

// A response head the proxy forwards although it will close the client
// connection after it (the client asked to): its Connection and Keep-Alive
// fields go, "Connection: close" comes in, so the client expects the end of
// the connection (and of its TLS session) instead of reading into it.
std::string close_delimited_head(std::string_view head)
{
    auto named = [](std::string_view line, std::string_view name) {
        if (line.size() <= name.size() || line[name.size()] != ':')
            return false;
        for (std::size_t i = 0; i < name.size(); ++i)
            if (std::tolower(static_cast<unsigned char>(line[i])) != name[i])
                return false;
        return true;
    };
    std::string out;
    out.reserve(head.size() + 32);
    std::size_t pos = 0;
    bool status_line = true;
    while (pos < head.size()) {
        std::size_t end = head.find('\n', pos);
        end = end == std::string_view::npos ? head.size() : end + 1;
        std::string_view line = head.substr(pos, end - pos);
        pos = end;
        if (line == "\r\n" || line == "\n")
            break;
        if (!status_line && (named(line, "connection") || named(line, "keep-alive")))
            continue;
        status_line = false;
        out.append(line);
    }
    out.append("Connection: close\r\n\r\n");
    return out;
}

int set_nonblocking_nodelay(int fd)
{
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

} // namespace

struct Connection {
    std::uint64_t id = 0;
    int client = -1;
    int upstream = -1;
    std::uint64_t upstream_generation = 0;   // sockets given up so far
    [[nodiscard]] std::uint64_t upstream_tag() const noexcept { return id | 1 | (upstream_generation & 1) << 1; }
    ConnectionOrigin origin;
    std::string client_in, client_out, upstream_in, upstream_out;
    bool client_eof = false;
    bool upstream_eof = false;
    bool upstream_connecting = false;
    Phase phase = Phase::head;
    bool first_request = true;
    // Where the head parsers stopped in client_in / upstream_in, so a head
    // arriving in pieces is scanned once (reset when a head is consumed).
    http::HeadScan request_head_scan, response_head_scan;
    // The exchange in progress.
    std::optional<http::BodyDecoder> request_body;
    std::optional<RequestBodyScan> request_scan;   // credentials in the request body (wire and de-chunked)
    // A request the proxy injected a secret into: its response may not carry
    // it back (response_guard.hpp). A chunked body is then re-framed from
    // its payload, so the guard sees one view and chunk framing cannot
    // split a secret past it.
    std::optional<ResponseSecretGuard> response_guard;
    std::optional<ChunkedPayload> response_chunks;
    std::optional<http::BodyDecoder> response_body;
    bool response_head_seen = false;
    bool response_until_close = false;
    bool keep_alive = true;
    bool response_sent_any = false;
    std::string method;
    AuditRecord record;
    bool record_pending = false;
    // The per-connection part of every record (origin, identity,
    // destination), formatted once; each request starts from a copy.
    std::optional<AuditRecord> record_base;
    std::uint32_t client_mask = 0;
    std::uint32_t upstream_mask = 0;
    Clock::time_point deadline;
    // TLS. While `opaque`, client bytes are TLS the proxy has not decrypted
    // (a hello being read, or a pass-through relay): nothing may be
    // answered in plain text. Intercepted sessions carry a TlsStream per
    // side; client_in/client_out (upstream_in/upstream_out) then hold
    // plaintext and the *_cipher_out buffers what goes on the wire.
    bool classified = false;
    bool opaque = false;
    tls::ClientHelloParser hello;
    std::size_t hello_fed = 0;
    std::string tls_identity;   // SNI name, or the dialled IP without SNI
    std::unique_ptr<tls::TlsStream> client_tls, upstream_tls;
    std::string client_cipher_out, upstream_cipher_out;
    std::optional<SpliceRelay> relay;
    // Large plain bodies of known length go by splice(); the pipe is made
    // for each such body and closed when it is complete.
    std::optional<BodySplice> body_splice;
    // The same pipe carries a large request body (client -> upstream) when
    // no credential scan needs its bytes; a request body always ends
    // before a response body starts to be spliced.
    bool splice_is_request = false;
    [[nodiscard]] bool splicing_response() const noexcept
    {
        return body_splice && body_splice->active() && !splice_is_request;
    }
    [[nodiscard]] bool splicing_request() const noexcept
    {
        return body_splice && body_splice->active() && splice_is_request;
    }
    std::uint64_t response_left = 0;     // body bytes not yet taken from upstream
    bool response_length_known = false;
    // The final response's framing, for the pool's "ended clean" check.
    int response_minor_version = 0;
    http::BodyKind response_kind = http::BodyKind::until_close;
    bool response_keep_alive = false;    // the origin's own, not the client's
    // Upstream keep-alive pool (upstream_pool.hpp), plain HTTP only. The
    // key the upstream socket was opened or taken for: it never carries a
    // request of another key.
    std::optional<UpstreamKey> upstream_key;
    std::uint32_t upstream_requests = 0;   // requests sent on this socket
    bool upstream_idle_clean = false;      // last exchange ended clean, nothing sent since
    bool upstream_authenticated = false;   // carried NTLM/Negotiate: this client's only, never pooled
    Clock::time_point upstream_idle_since;
    // The head sent on a reused socket, kept until a response byte arrives:
    // an origin that closed the socket while idle gets it once more on a
    // fresh connection (idempotent, body-less requests only).
    std::string retry_request;
};

struct ProxyServer::State {
    OriginSource& origins;
    Resolver& resolver;
    AuditLog& audit;
    ProxyLimits limits;
    int epoll_fd = -1;
    std::vector<int> listen_fds;
    std::uint16_t port = 0;
    std::uint64_t next_id = first_connection_id;
    std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> connections;
    std::unordered_map<std::uint64_t, std::shared_ptr<const policy::CompiledPolicy>> policies;
    std::unique_ptr<tls::LeafContexts> leaves;   // null: TLS disabled
    SSL_CTX* upstream_ctx = nullptr;
    std::shared_ptr<const policy::CredentialSet> credentials = std::make_shared<const policy::CredentialSet>();
    UpstreamPool pool;   // idle plain-HTTP upstream sockets, closed with the State (proxy exit)
    // Set while the listeners are out of epoll because accept4 ran out of
    // descriptors; the sweep puts them back once this time has passed.
    std::optional<Clock::time_point> accepting_paused_until;

    State(OriginSource& o, Resolver& r, AuditLog& a, ProxyLimits l)
        : origins(o), resolver(r), audit(a), limits(l), pool(l.pool)
    {
    }

    AuditRecord record_for(const ConnectionOrigin& origin) const
    {
        AuditRecord r;
        r.event = "http";
        r.sandbox = origin.sandbox_id;
        r.pid = origin.pid;
        r.uid = origin.uid;
        r.cgroup = origin.cgroup_id;
        r.exe = origin.exe_path;
        if (origin.exe.known())
            r.exe_id = policy::identity_text(origin.exe);
        r.identity = origin.identity_note;
        r.destination = endpoint_text(origin.address, origin.port);
        return r;
    }

    void touch(Connection& c) { c.deadline = Clock::now() + std::chrono::seconds(limits.idle_timeout_seconds); }

    void accept_from(int listen_fd) noexcept;
    void out_of_descriptors(int err) noexcept;
    void set_listening(bool on) noexcept;
    void on_event(std::uint64_t tag, std::uint32_t events) noexcept;
    void read_side(Connection& c, bool upstream) noexcept;
    bool write_side(Connection& c, bool upstream) noexcept;
    void advance(Connection& c) noexcept;
    bool step_head(Connection& c) noexcept;
    bool step_exchange(Connection& c) noexcept;
    bool start_body_splice(Connection& c, bool request, std::uint64_t length) noexcept;
    int splice_response_body(Connection& c, bool request_done) noexcept;
    int splice_request_body(Connection& c) noexcept;
    bool step_hello(Connection& c) noexcept;
    bool step_relay(Connection& c) noexcept;
    void deny_tls(Connection& c, const std::string& host, const std::string& reason, const std::string& alert) noexcept;
    bool pump_tls(Connection& c, bool upstream) noexcept;
    [[nodiscard]] bool client_drained(const Connection& c) const noexcept
    {
        return c.client_out.empty() && c.client_cipher_out.empty();
    }
    void reject(Connection& c, int status, const std::string& rule, const std::string& reason) noexcept;
    void block_reflected_secret(Connection& c, const policy::Provider& provider) noexcept;
    void block_guarded_response(Connection& c, const std::string& reason) noexcept;
    void deliver_chunk(Connection& c, std::string_view payload);
    bool connect_upstream(Connection& c, bool send_queued = false) noexcept;
    bool attach_pooled(Connection& c, int fd) noexcept;
    void release_upstream(Connection& c) noexcept;
    bool retry_fresh(Connection& c) noexcept;
    void finish_record(Connection& c, std::optional<int> status, const std::string& reason_if_unfinished) noexcept;
    void update_interest(Connection& c) noexcept;
    void close_connection(Connection& c) noexcept;
    void sweep_timeouts() noexcept;
};

ProxyServer::ProxyServer(OriginSource& origins, Resolver& resolver, AuditLog& audit, ProxyLimits limits)
    : state_(std::make_unique<State>(origins, resolver, audit, limits))
{
}

ProxyServer::~ProxyServer()
{
    for (auto& [id, c] : state_->connections) {
        if (c->client >= 0)
            ::close(c->client);
        if (c->upstream >= 0)
            ::close(c->upstream);
    }
    for (int fd : state_->listen_fds)
        ::close(fd);
    if (state_->epoll_fd >= 0)
        ::close(state_->epoll_fd);
}

void ProxyServer::set_policy(std::uint64_t sandbox_id, std::shared_ptr<const policy::CompiledPolicy> policy)
{
    state_->policies[sandbox_id] = std::move(policy);
}

void ProxyServer::set_credentials(std::shared_ptr<const policy::CredentialSet> credentials)
{
    if (credentials)
        state_->credentials = std::move(credentials);
}

void ProxyServer::enable_tls(const tls::CertificateAuthority& ca, SSL_CTX* upstream)
{
    state_->leaves = std::make_unique<tls::LeafContexts>(ca);
    state_->upstream_ctx = upstream;
}

Result<std::uint16_t> ProxyServer::listen_loopback()
{
    // Both listeners share one port so the BPF side needs one number. The
    // kernel picks it for IPv4; if [::1] has it taken, try again.
    for (int attempt = 0; attempt < 20; ++attempt) {
        int v4 = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (v4 < 0)
            return fail_errno("socket");
        sockaddr_in a4{};
        a4.sin_family = AF_INET;
        a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a4;
        if (::bind(v4, reinterpret_cast<sockaddr*>(&a4), sizeof a4) != 0 ||
            ::getsockname(v4, reinterpret_cast<sockaddr*>(&a4), &len) != 0 || ::listen(v4, 1024) != 0) {
            auto err = fail_errno("listen on 127.0.0.1");
            ::close(v4);
            return err;
        }
        std::uint16_t port = ntohs(a4.sin_port);
        int v6 = ::socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (v6 < 0) {
            ::close(v4);
            return fail_errno("socket");
        }
        int one = 1;
        ::setsockopt(v6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        sockaddr_in6 a6{};
        a6.sin6_family = AF_INET6;
        a6.sin6_addr = in6addr_loopback;
        a6.sin6_port = htons(port);
        if (::bind(v6, reinterpret_cast<sockaddr*>(&a6), sizeof a6) != 0 || ::listen(v6, 1024) != 0) {
            int err = errno;
            ::close(v4);
            ::close(v6);
            if (err == EADDRINUSE)
                continue;
            return fail("listen on [::1]", err);
        }
        // Accepted sockets inherit TCP_NODELAY from their listener: one
        // setsockopt here instead of one per connection.
        ::setsockopt(v4, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ::setsockopt(v6, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        state_->listen_fds = {v4, v6};
        state_->port = port;
        return port;
    }
    return fail("no port free on both 127.0.0.1 and [::1]");
}

Result<void> ProxyServer::run(int stop_fd, int parent_fd)
{
    State& s = *state_;
    s.epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (s.epoll_fd < 0)
        return fail_errno("epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = stop_tag;
    if (::epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, stop_fd, &ev) != 0)
        return fail_errno("epoll_ctl stop fd");
    if (parent_fd >= 0 && ::epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, parent_fd, &ev) != 0)
        return fail_errno("epoll_ctl parent stop fd");
    for (std::size_t i = 0; i < s.listen_fds.size(); ++i) {
        ev.events = EPOLLIN;
        ev.data.u64 = listener_tag_base + i;
        if (::epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, s.listen_fds[i], &ev) != 0)
            return fail_errno("epoll_ctl listener");
    }
    epoll_event events[128];
    auto next_sweep = Clock::now() + std::chrono::seconds(1);
    // Records of one wake-up go out in one write(), before the loop blocks
    // again, and on every way out of it (the stop signal included).
    s.audit.set_buffered(true);
    struct AuditFlush {
        AuditLog& audit;
        ~AuditFlush() { audit.set_buffered(false); }
    } audit_flush{s.audit};
    const bool busy_polling = s.limits.busy_poll.count() > 0;
    auto poll_until = Clock::time_point::min();
    for (;;) {
        s.audit.flush();
        bool polling = busy_polling && Clock::now() < poll_until;
        int n = ::epoll_wait(s.epoll_fd, events, 128, polling ? 0 : 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail_errno("epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            if (events[i].data.u64 == stop_tag)
                return {};
            s.on_event(events[i].data.u64, events[i].events);
        }
        if (busy_polling && n > 0)
            poll_until = Clock::now() + s.limits.busy_poll;
        if (Clock::now() >= next_sweep) {
            s.sweep_timeouts();
            next_sweep = Clock::now() + std::chrono::seconds(1);
        }
    }
}

void ProxyServer::State::on_event(std::uint64_t tag, std::uint32_t events) noexcept
{
    if (tag >= listener_tag_base && tag < first_connection_id) {
        accept_from(listen_fds[tag - listener_tag_base]);
        return;
    }
    auto it = connections.find(tag & ~std::uint64_t{3});
    if (it == connections.end())
        return;
    Connection& c = *it->second;
    bool upstream = tag & 1;
    if (upstream && tag != c.upstream_tag())
        return;   // for a socket this connection has given up since
    touch(c);
    if (upstream && c.upstream_connecting && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(c.upstream, SOL_SOCKET, SO_ERROR, &err, &len);
        c.upstream_connecting = false;
        if (err != 0) {
            reject(c, 502, c.record.rule,
                   "cannot connect to " + c.record.destination + ": " + std::strerror(err));
            advance(c);
            return;
        }
        touch(c);
    }
    if (c.phase == Phase::relay || (upstream ? c.splicing_response() : c.splicing_request())) {
        advance(c);   // splice moves the bytes; nothing is read into memory
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        read_side(c, upstream);
    if (events & EPOLLOUT) {
        if (!write_side(c, upstream)) {
            close_connection(c);
            return;
        }
    }
    advance(c);
}

void ProxyServer::State::accept_from(int listen_fd) noexcept
{
    // Bounded per wake-up so one busy listener cannot starve the rest.
    for (int i = 0; i < 64; ++i) {
        int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                out_of_descriptors(errno);
            return;
        }
        auto origin = origins.lookup(fd);
        if (!origin) {
            AuditRecord r;
            r.event = "connect";
            r.verdict = "deny";
            r.reason = "connection carries no origin record (not from a sandbox)";
            audit.write(r);
            ::close(fd);
            continue;
        }
        bool loopback = address_text(origin->address) == "127.0.0.1" || address_text(origin->address) == "::1";
        if (loopback && origin->port == port) {
            AuditRecord r = record_for(*origin);
            r.event = "connect";
            r.verdict = "deny";
            r.reason = "connection to the proxy itself";
            audit.write(r);
            ::close(fd);
            continue;
        }
        auto c = std::make_unique<Connection>();
        c->id = next_id;
        next_id += 4;
        c->client = fd;
        c->origin = *origin;
        touch(*c);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = c->id;
        if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            ::close(fd);
            continue;
        }
        c->client_mask = EPOLLIN;
        log()->debug("accepted connection {} from pid {} to {}", c->id, origin->pid,
                     endpoint_text(origin->address, origin->port));
        Connection& accepted = *c;
        connections.emplace(c->id, std::move(c));
        // A client sends its request right after connect() returns, which
        // is usually before this wake-up: reading now saves the next epoll
        // round. An empty socket costs one recv() that says EAGAIN.
        read_side(accepted, false);
        if (!accepted.client_in.empty() || accepted.client_eof)
            advance(accepted);
    }
}

void ProxyServer::State::out_of_descriptors(int err) noexcept
{
    // The pending connection stays in the listen queue, so a level-triggered
    // listener would wake the loop again at once and spin. Idle pooled
    // upstreams are the descriptors nobody waits on: give them back first,
    // and the next round's accept4 can succeed.
    if (pool.size() > 0) {
        log()->warn("accept4: {}; closing {} idle upstream connections", std::strerror(err), pool.size());
        pool.clear();
        return;
    }
    // Otherwise stop listening for about a second, like nginx does. The
    // connections queue in the kernel (or their SYNs are dropped once the
    // queue is full): they wait, and nothing reaches an origin unpoliced.
    set_listening(false);
    accepting_paused_until = Clock::now() + std::chrono::seconds(1);
    AuditRecord r;
    r.event = "limit";
    r.verdict = "deny";
    r.reason = std::string("proxy out of file descriptors (accept4: ") + std::strerror(err) +
               "): not accepting new connections for 1 s";
    audit.write(r);
    log()->warn("{}", r.reason);
}

void ProxyServer::State::set_listening(bool on) noexcept
{
    for (std::size_t i = 0; i < listen_fds.size(); ++i) {
        epoll_event ev{};
        ev.events = on ? std::uint32_t{EPOLLIN} : 0u;
        ev.data.u64 = listener_tag_base + i;
        ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, listen_fds[i], &ev);
    }
}

void ProxyServer::State::read_side(Connection& c, bool upstream) noexcept
{
    int fd = upstream ? c.upstream : c.client;
    std::string& in = upstream ? c.upstream_in : c.client_in;
    bool& eof = upstream ? c.upstream_eof : c.client_eof;
    if (fd < 0 || eof || (upstream && c.upstream_connecting))
        return;
    if (upstream ? c.splicing_response() : c.splicing_request())
        return;   // the body goes socket to socket, not through upstream_in / client_in
    tls::TlsStream* tls = upstream ? c.upstream_tls.get() : c.client_tls.get();
    char buf[64 * 1024];
    for (int i = 0; i < 16 && in.size() < limits.max_buffer; ++i) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0 && tls) {
            tls->feed(std::string_view(buf, static_cast<std::size_t>(n)));
            if (!pump_tls(c, upstream) || static_cast<std::size_t>(n) < sizeof buf)
                return;
            continue;
        }
        if (n > 0) {
            in.append(buf, static_cast<std::size_t>(n));
            // A short read drained the socket: level-triggered epoll says
            // when more comes, so no recv() only to learn EAGAIN.
            if (static_cast<std::size_t>(n) < sizeof buf)
                return;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            eof = true;
        return;
    }
}

bool ProxyServer::State::write_side(Connection& c, bool upstream) noexcept
{
    if ((upstream ? c.upstream : c.client) < 0 || (upstream && c.upstream_connecting))
        return true;
    bool tls = upstream ? c.upstream_tls != nullptr : c.client_tls != nullptr;
    // Encrypting may fail (and reject() drop the upstream): look again.
    if (tls && !pump_tls(c, upstream))
        return true;
    int fd = upstream ? c.upstream : c.client;
    if (fd < 0)
        return true;
    std::string& out = tls ? (upstream ? c.upstream_cipher_out : c.client_cipher_out)
                           : (upstream ? c.upstream_out : c.client_out);
    while (!out.empty()) {
        ssize_t n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
        if (n > 0) {
            out.erase(0, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return true;
        // A reused socket the origin reset while it sat idle: the request
        // goes once more on a new one (retry_fresh says whether it may).
        if (upstream && !tls && retry_fresh(c))
            return true;
        return false;
    }
    return true;
}

void ProxyServer::State::finish_record(Connection& c, std::optional<int> status,
                                       const std::string& reason_if_unfinished) noexcept
{
    if (!c.record_pending)
        return;
    c.record.status = status;
    if (!reason_if_unfinished.empty())
        c.record.reason = reason_if_unfinished;
    audit.write(c.record);
    c.record_pending = false;
}

void ProxyServer::State::reject(Connection& c, int status, const std::string& rule, const std::string& reason) noexcept
{
    try {
        if (!c.response_sent_any && !c.opaque) {
            std::string response = error_response(status, rule, reason, c.record.method, c.record.host, c.record.path);
            c.record.bytes_out += response.size();
            c.client_out += response;
            c.response_sent_any = true;
        }
        c.record.verdict = status == 502 ? c.record.verdict : "deny";
        c.record.rule = rule;
        c.record.reason = reason;
        c.record_pending = true;
        finish_record(c, status, "");
    } catch (...) {
    }
    log()->debug("connection {}: {} {}", c.id, status, reason);
    c.phase = Phase::closing;
    c.upstream_tls.reset();
    c.upstream_cipher_out.clear();
    // Closed, or back to the pool when idle and clean (a request denied
    // before anything was written to it).
    release_upstream(c);
}

void ProxyServer::State::block_reflected_secret(Connection& c, const policy::Provider& provider) noexcept
{
    try {
        block_guarded_response(c, "the response carries the secret of provider '" + provider.name +
                                      "' (the server reflects it): not delivered");
        return;
    } catch (...) {
    }
    c.phase = Phase::closing;
}

// The response to a request with an injected secret stops here: either it
// carries the secret or the guard cannot read it.
void ProxyServer::State::block_guarded_response(Connection& c, const std::string& reason) noexcept
{
    try {
        c.record.verdict = "deny";
        log()->warn("connection {}: {}", c.id, reason);
        c.response_guard.reset();
        c.response_chunks.reset();
        if (!c.response_sent_any) {
            reject(c, 502, c.record.rule, reason);   // keeps the deny verdict
            return;
        }
        // Part of the body went out already (none of the secret): the rest
        // never does, and the client sees a truncated response.
        c.client_out.clear();
        finish_record(c, c.record.status, reason);
    } catch (...) {
    }
    c.phase = Phase::closing;
}

void ProxyServer::State::deliver_chunk(Connection& c, std::string_view payload)
{
    if (payload.empty())
        return;   // an empty chunk would end the body
    c.client_out += fmt::format("{:x}\r\n", payload.size());
    c.client_out.append(payload);
    c.client_out += "\r\n";
}

// `send_queued`: upstream_out holds plain bytes (an allowed request) to
// try sending at once, before any epoll round.
bool ProxyServer::State::connect_upstream(Connection& c, bool send_queued) noexcept
{
    bool v4 = is_ipv4_mapped(c.origin.address);
    int fd = ::socket(v4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    // Container mode: unmarked, the hooks would steer it back to us.
    if (!exempt_upstream(fd)) {
        ::close(fd);
        return false;
    }
    set_nonblocking_nodelay(fd);
    int rc;
    if (v4) {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        std::memcpy(&a.sin_addr, c.origin.address.data() + 12, 4);
        a.sin_port = htons(c.origin.port);
        rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        std::memcpy(&a.sin6_addr, c.origin.address.data(), 16);
        a.sin6_port = htons(c.origin.port);
        rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    if (rc != 0 && errno != EINPROGRESS) {
        ::close(fd);
        return false;
    }
    // On loopback the handshake is usually over when connect() returns
    // EINPROGRESS (the SYN-ACK waits in the socket's backlog, processed as
    // connect() releases the socket): the request goes out now, not one
    // EPOLLOUT wake-up later. A socket still connecting says EAGAIN and is
    // watched for EPOLLOUT as before; a refused one reports its error here.
    bool connecting = true;
    if (send_queued && !c.upstream_out.empty()) {
        ssize_t n = ::send(fd, c.upstream_out.data(), c.upstream_out.size(), MSG_NOSIGNAL);
        if (n > 0) {
            c.upstream_out.erase(0, static_cast<std::size_t>(n));
            connecting = false;
        } else if (errno != EAGAIN && errno != EINTR) {
            int err = errno;
            ::close(fd);
            errno = err;
            return false;
        }
    }
    epoll_event ev{};
    ev.events = connecting ? EPOLLOUT : (c.upstream_out.empty() ? EPOLLIN : EPOLLIN | EPOLLOUT);
    ev.data.u64 = c.upstream_tag();
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        ::close(fd);
        return false;
    }
    if (c.client_tls) {
        // Toward the dialled address, named and verified as the SNI said.
        auto session = tls::TlsStream::connect(upstream_ctx, c.tls_identity);
        if (!session) {
            ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
            ::close(fd);
            errno = EPROTO;
            return false;
        }
        c.upstream_tls = std::move(*session);
        c.upstream_cipher_out.clear();
    }
    c.upstream = fd;
    c.upstream_mask = ev.events;
    c.upstream_connecting = connecting;
    c.upstream_eof = false;
    c.upstream_in.clear();
    if (connecting)
        c.deadline = Clock::now() + std::chrono::seconds(limits.connect_timeout_seconds);
    return true;
}

// A socket from the pool (not in the epoll set while it sat idle): the
// queued head goes out at once, as on a fresh connect, so the socket is
// watched with the right events from the start. A send that fails here
// reached no origin: the caller connects anew.
bool ProxyServer::State::attach_pooled(Connection& c, int fd) noexcept
{
    // Registered before anything is sent: false (the caller then sends the
    // head again on a new connection) must mean nothing reached the origin.
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = c.upstream_tag();
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        ::close(fd);
        return false;
    }
    ssize_t n = ::send(fd, c.upstream_out.data(), c.upstream_out.size(), MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
        return false;
    }
    if (n > 0)
        c.upstream_out.erase(0, static_cast<std::size_t>(n));
    if (!c.upstream_out.empty()) {
        // Rare (a small head on an idle socket): the rest when writable. A
        // failure here comes after bytes may have left, so it is no retry.
        ev.events = EPOLLIN | EPOLLOUT;
        if (::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev) != 0)
            ev.events = EPOLLIN;
    }
    c.upstream = fd;
    c.upstream_mask = ev.events;
    c.upstream_connecting = false;
    c.upstream_eof = false;
    c.upstream_in.clear();
    return true;
}

// Takes the upstream socket off the connection: into the pool when its
// last exchange ended clean and nothing came or went since, else closed.
void ProxyServer::State::release_upstream(Connection& c) noexcept
{
    if (c.upstream < 0)
        return;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c.upstream, nullptr);
    bool clean = c.upstream_key && c.upstream_idle_clean && !c.upstream_authenticated && c.upstream_in.empty() &&
                 c.upstream_out.empty() && !c.upstream_eof && !c.upstream_connecting && !c.upstream_tls;
    bool pooled = false;
    if (clean) {
        try {
            pooled = pool.release(std::move(*c.upstream_key), c.upstream, c.upstream_requests,
                                  c.upstream_idle_since);
        } catch (...) {
            ::close(c.upstream);   // out of memory for the entry: the socket must not leak
        }
    } else {
        ::close(c.upstream);
    }
    log()->debug("connection {}: upstream {}", c.id, pooled ? "kept in the pool" : "closed");
    c.upstream = -1;
    ++c.upstream_generation;
    c.upstream_mask = 0;
    c.upstream_out.clear();   // bytes meant for that socket, never for another
    c.upstream_key.reset();
    c.upstream_idle_clean = false;
    c.upstream_authenticated = false;
    c.upstream_requests = 0;
    c.upstream_in.clear();
    c.upstream_eof = false;
    c.retry_request.clear();
}

// A reused socket failed before any response byte (the origin closed it
// while idle, or reset it): the same head once more on a fresh connection.
// Returns false when no retry applies; then the caller fails as before.
bool ProxyServer::State::retry_fresh(Connection& c) noexcept
{
    if (c.retry_request.empty() || c.phase != Phase::exchange || c.response_sent_any || c.response_head_seen ||
        !c.upstream_in.empty() || c.upstream < 0)
        return false;
    std::string request = std::move(c.retry_request);
    auto key = c.upstream_key;
    c.upstream_idle_clean = false;
    release_upstream(c);   // not clean: closed
    c.upstream_out = std::move(request);
    c.response_head_scan = {};
    c.record.upstream = "retry";
    if (!connect_upstream(c, true)) {
        c.upstream_out.clear();
        reject(c, 502, c.record.rule, "cannot connect to " + c.record.destination + ": " + std::strerror(errno));
        return true;
    }
    c.upstream_key = std::move(key);
    c.upstream_requests = 1;
    log()->debug("connection {}: reused upstream failed before responding, retried on a new one", c.id);
    return true;
}

bool ProxyServer::State::step_head(Connection& c) noexcept
{
    if (c.client_in.empty()) {
        if (c.client_eof)
            c.phase = Phase::closing;
        return c.client_eof;
    }
    // Classify by the first bytes, whatever the port: TLS or HTTP.
    if (!c.classified) {
        if (tls::starts_like_tls(static_cast<unsigned char>(c.client_in[0])))
            return step_hello(c);
        c.classified = true;
    }
    auto parsed = http::parse_request_head(c.client_in, {}, &c.request_head_scan);
    if (!c.record_base)
        c.record_base = record_for(c.origin);
    c.record = *c.record_base;
    if (!parsed) {
        // Bytes that do not even start like a request line are not HTTP:
        // close without an answer the other protocol could misread.
        unsigned char first = static_cast<unsigned char>(c.client_in[0]);
        if (c.first_request && !(first >= 'A' && first <= 'Z')) {
            c.record.event = "connect";
            c.record.verdict = "deny";
            c.record.reason = "not HTTP: " + parsed.error().reason;
            audit.write(c.record);
            c.response_sent_any = true;
            c.phase = Phase::closing;
            c.client_out.clear();
            return true;
        }
        reject(c, parsed.error().status, "", "malformed request: " + parsed.error().reason);
        return true;
    }
    if (!*parsed) {
        if (c.client_eof) {
            reject(c, 400, "", "connection closed inside a request head");
            return true;
        }
        return false;
    }
    auto& [head, used] = **parsed;
    c.first_request = false;
    c.client_in.erase(0, used);
    c.record.method = head.method;
    c.record.bytes_in = used;
    c.method = head.method;
    c.response_sent_any = false;

    if (head.upgrade) {
        c.record.host = head.host;
        reject(c, 403, "", "protocol upgrade is not supported");
        return true;
    }
    auto policy_it = policies.find(c.origin.sandbox_id);
    const policy::CompiledPolicy* policy = policy_it == policies.end() ? nullptr : policy_it->second.get();
    GateDecision d = decide_request(policy, resolver, c.origin, head, c.client_tls ? "https" : "http");
    c.record.host = d.host;
    c.record.path = d.path;
    c.record.rule = d.rule;
    c.record.reason = d.reason;
    if (c.client_tls)
        c.record.event = "https";
    // Checked on denied requests too, so the audit says what was tried.
    const std::vector<std::string>* bound = nullptr;
    if (d.allowed && policy != nullptr)
        for (const policy::Rule& rule : policy->policy().rules)
            if (rule.name == d.rule)
                bound = &rule.credentials;
    CredentialOutcome injected = apply_credentials(*credentials, bound, head, d.upstream_target, d.host);
    // The audit and the logs never hold a secret or a placeholder.
    credentials->redact(c.record.host);
    credentials->redact(c.record.path);
    credentials->redact(c.record.reason);
    if (!injected.allowed) {
        reject(c, 403, d.rule, injected.reason);
        return true;
    }
    if (!d.allowed) {
        reject(c, d.status, d.rule, d.reason);
        return true;
    }
    // Domain fronting: the session was opened (and its upstream will be
    // verified) for one name; every request in it must be for that name.
    if (c.client_tls && d.host != c.tls_identity) {
        reject(c, 403, "", "Host " + d.host + " differs from the TLS server name " + c.tls_identity);
        return true;
    }
    c.record.verdict = "allow";
    c.record_pending = true;
    // Plain HTTP is pooled by everything that allowed it (upstream_pool.hpp);
    // an intercepted session keeps its upstream to itself, as before.
    bool pooling = !c.client_tls;
    // The upstream of this client's last request serves this one only for
    // the same key, and only if that exchange ended clean with nothing
    // arriving since; else it goes (to the pool if clean).
    if (c.upstream >= 0 && pooling &&
        (!c.upstream_key || !key_matches(*c.upstream_key, c.origin, d.host, d.rule, injected.injected) ||
         !c.upstream_idle_clean || c.upstream_eof || !c.upstream_in.empty()))
        release_upstream(c);
    const char* upstream_use = c.upstream >= 0 ? "kept" : "new";
    // Built only for a socket to take or open: a kept one has it already.
    std::optional<UpstreamKey> key;
    if (pooling && c.upstream < 0)
        key = plain_http_key(c.origin, d.host, d.rule, injected.injected);
    // Only a request that may be sent twice rides on a socket that sat
    // idle: the origin may have closed it meanwhile (then: one retry).
    bool retryable = pooling && may_use_pooled(head);
    std::optional<UpstreamPool::Taken> taken;
    if (key && retryable) {
        auto unsolicited = pool.unsolicited_discards();
        taken = pool.take(*key, Clock::now());
        if (pool.unsolicited_discards() != unsolicited) {
            AuditRecord r = record_for(c.origin);
            r.event = "upstream";
            r.host = d.host;
            r.rule = d.rule;
            r.reason = std::to_string(pool.unsolicited_discards() - unsolicited) +
                       " idle pooled connection(s) held bytes the origin sent unasked: closed, not used";
            audit.write(r);
            log()->warn("connection {}: {} ({})", c.id, r.reason, r.destination);
        }
    }
    c.upstream_idle_clean = false;
    c.upstream_out += http::serialize_request_head(head, d.upstream_target);
    // Connection is hop-by-hop and dropped above. Unpooled, the proxy
    // closes the upstream after this exchange too, and says so; pooled, it
    // closes only toward the client (close_delimited_head) and keeps the
    // upstream if the exchange ends clean.
    if (!pooling && !head.keep_alive && c.upstream_out.ends_with("\r\n\r\n"))
        c.upstream_out.insert(c.upstream_out.size() - 2, "Connection: close\r\n");
    // Only for a pooled socket: a keep-alive client's own kept upstream
    // fails toward that client as before, and its requests pay no copy.
    if (retryable && taken)
        c.retry_request = c.upstream_out;
    else
        c.retry_request.clear();
    if (taken) {
        if (attach_pooled(c, taken->fd)) {
            c.upstream_requests = taken->requests;
            upstream_use = "reused";
        } else {
            // The pooled socket refused the head (reset while idle): the
            // whole head again, on a new one.
            upstream_use = "retry";
            c.upstream_out = std::move(c.retry_request);
            c.retry_request.clear();
        }
    }
    if (c.upstream < 0)
        c.upstream_requests = 0;
    // Connected after the head is queued, so a plain request can leave
    // with the connect (an intercepted one waits for its TLS handshake).
    if (c.upstream < 0 && !connect_upstream(c, !c.client_tls)) {
        c.upstream_out.clear();
        reject(c, 502, d.rule, "cannot connect to " + c.record.destination + ": " + std::strerror(errno));
        return true;
    }
    if (key)
        c.upstream_key = std::move(key);
    if (authenticates_connection(head))
        c.upstream_authenticated = true;
    ++c.upstream_requests;
    c.record.upstream = upstream_use;
    c.request_body.reset();
    c.request_scan.reset();
    if (!credentials->empty())
        c.request_scan.emplace(*credentials, head.body == http::BodyKind::chunked);
    if (head.body != http::BodyKind::none)
        c.request_body.emplace(head.body, head.content_length);
    c.response_body.reset();
    c.response_guard.reset();
    c.response_chunks.reset();
    if (!injected.injected.empty())
        c.response_guard.emplace(*credentials, injected.injected);
    c.response_length_known = false;
    c.response_head_seen = false;
    c.response_head_scan = {};
    c.response_until_close = false;
    c.keep_alive = head.keep_alive;
    c.phase = Phase::exchange;
    return true;
}

bool ProxyServer::State::step_exchange(Connection& c) noexcept
{
    bool progress = false;
    // Request body, client -> upstream, only the bytes that belong to it.
    if (c.request_body && !c.request_body->done() && !c.client_in.empty() &&
        c.upstream_out.size() < limits.max_buffer) {
        auto used = c.request_body->feed(c.client_in);
        if (!used) {
            reject(c, used.error().status, c.record.rule, "malformed request body: " + used.error().reason);
            return true;
        }
        // Checked before the bytes go upstream; the window carries a value
        // split across reads or TLS records. The head is already gone, so
        // the connection is cut rather than answered.
        bool secret = false;
        const policy::Provider* leaked =
            c.request_scan ? c.request_scan->feed(std::string_view(c.client_in).substr(0, *used), &secret) : nullptr;
        if (leaked != nullptr) {
            std::string reason = std::string("possible credential exfiltration: the ") +
                                 (secret ? "secret" : "placeholder") + " of provider '" + leaked->name +
                                 "' is in the request body";
            // Drops the upstream (and what is still queued for it).
            reject(c, 403, c.record.rule, reason);
            return true;
        }
        c.upstream_out.append(c.client_in, 0, *used);
        c.client_in.erase(0, *used);
        c.record.bytes_in += *used;
        progress = progress || *used > 0;
    }
    if (int r = splice_request_body(c); r >= 0) {
        if (c.phase == Phase::closing)
            return true;
        progress = progress || r > 0;
    }
    bool request_done = !c.request_body || c.request_body->done();
    if (!request_done && c.client_eof) {
        finish_record(c, std::nullopt, "client closed inside the request body");
        c.phase = Phase::closing;
        c.client_out.clear();
        return true;
    }
    // Response, upstream -> client.
    while (!c.response_head_seen && !c.upstream_in.empty()) {
        // Only status and framing: the head goes to the client as received.
        auto parsed = http::parse_response_framing(c.upstream_in, c.method, {}, &c.response_head_scan);
        if (!parsed) {
            reject(c, 502, c.record.rule, "malformed response from upstream: " + parsed.error().reason);
            return true;
        }
        if (!*parsed)
            break;
        auto& [head, used] = **parsed;
        if (head.status == 101) {
            reject(c, 502, c.record.rule, "upstream switched protocols without being asked");
            return true;
        }
        if (c.response_guard) {
            std::string_view head_text = std::string_view(c.upstream_in).substr(0, used);
            if (const auto* leaked = c.response_guard->head_leak(head_text)) {
                block_reflected_secret(c, *leaked);
                return true;
            }
            // Only a body can hide a coded secret (a HEAD or 304 answer may
            // still name the coding of what it would have sent).
            std::string coding =
                head.body == http::BodyKind::none ? std::string() : ResponseSecretGuard::unreadable_coding(head_text);
            if (!coding.empty()) {
                block_guarded_response(c, "the response to a request carrying the secret of provider " +
                                              c.response_guard->provider_names() + " is encoded (" + coding +
                                              ", though the proxy asked for identity): a secret reflected "
                                              "inside it could not be seen, so it is not delivered");
                return true;
            }
        }
        if (head.status >= 200 && !c.keep_alive && head.keep_alive) {
            std::string closing = close_delimited_head(std::string_view(c.upstream_in).substr(0, used));
            c.record.bytes_out += closing.size();
            c.client_out += closing;
        } else {
            c.client_out.append(c.upstream_in, 0, used);
            c.record.bytes_out += used;
        }
        c.upstream_in.erase(0, used);
        c.response_sent_any = true;
        progress = true;
        if (head.status >= 100 && head.status < 200)
            continue; // interim (100 Continue): the final head follows
        c.response_head_seen = true;
        c.record.status = head.status;
        c.keep_alive = c.keep_alive && head.keep_alive;
        c.response_minor_version = head.minor_version;
        c.response_kind = head.body;
        c.response_keep_alive = head.keep_alive;
        if (head.body == http::BodyKind::until_close)
            c.response_until_close = true;
        if (head.body != http::BodyKind::none)
            c.response_body.emplace(head.body, head.content_length);
        if (c.response_guard && head.body == http::BodyKind::chunked)
            c.response_chunks.emplace();
        c.response_length_known = head.body == http::BodyKind::content_length;
        c.response_left = c.response_length_known ? head.content_length : 0;
    }
    if (c.response_head_seen && c.response_body && !c.response_body->done() && !c.upstream_in.empty() &&
        c.client_out.size() < limits.max_buffer) {
        auto used = c.response_body->feed(c.upstream_in);
        if (!used) {
            finish_record(c, c.record.status, "malformed response body: " + used.error().reason);
            c.phase = Phase::closing;
            return true;
        }
        if (c.response_guard) {
            std::string_view wire(c.upstream_in.data(), *used);
            std::string_view payload = c.response_chunks ? c.response_chunks->feed(wire) : wire;
            const policy::Provider* leaked = nullptr;
            bool clean;
            if (c.response_chunks) {
                // Re-framed: the released bytes become one chunk.
                std::string released;
                clean = c.response_guard->feed(payload, released, &leaked);
                deliver_chunk(c, released);
            } else {
                clean = c.response_guard->feed(payload, c.client_out, &leaked);
            }
            if (!clean) {
                block_reflected_secret(c, *leaked);
                return true;
            }
        } else {
            c.client_out.append(c.upstream_in, 0, *used);
        }
        c.upstream_in.erase(0, *used);
        c.record.bytes_out += *used;
        if (c.response_length_known)
            c.response_left -= *used;
        progress = progress || *used > 0;
    }
    if (int r = splice_response_body(c, request_done); r >= 0)
        return r > 0 || progress;
    bool response_done = c.response_head_seen &&
                         (!c.response_body || c.response_body->done() || (c.response_until_close && c.upstream_eof));
    if (!response_done && c.upstream_eof && c.upstream_in.empty()) {
        if (!c.response_sent_any && retry_fresh(c))
            return true;
        if (!c.response_sent_any) {
            reject(c, 502, c.record.rule, "upstream closed before responding");
        } else {
            finish_record(c, c.record.status, "upstream closed inside the response");
            c.phase = Phase::closing;
        }
        return true;
    }
    if (!response_done)
        return progress;
    if (c.response_guard) {
        // Nothing can complete a secret any more: the held tail goes, and a
        // re-framed chunked body gets its last chunk (trailers are dropped:
        // they were never scanned as payload).
        if (c.response_chunks) {
            std::string released;
            c.response_guard->finish(released);
            deliver_chunk(c, released);
            c.client_out += "0\r\n\r\n";
        } else {
            c.response_guard->finish(c.client_out);
        }
        c.response_guard.reset();
        c.response_chunks.reset();
    }
    finish_record(c, c.record.status, "");
    c.retry_request.clear();
    if (c.upstream_key) {
        // Pooled (plain HTTP): the upstream may serve another request only
        // after a clean, fully framed exchange; otherwise it is closed now,
        // whatever the client does next, so stray bytes reach nobody.
        ExchangeEnd end;
        end.plain = !c.client_tls && !c.upstream_tls;
        end.request_complete = request_done;
        end.request_sent = c.upstream_out.empty();
        end.response_complete = true;
        end.status = c.record.status.value_or(0);
        end.minor_version = c.response_minor_version;
        end.body = c.response_kind;
        end.response_keep_alive = c.response_keep_alive;
        end.extra_bytes = !c.upstream_in.empty();
        end.upstream_eof = c.upstream_eof;
        end.requests = c.upstream_requests;
        c.upstream_idle_clean = reusable_after(end, pool.limits());
        c.upstream_idle_since = Clock::now();
        // The client asked to close: its connection goes, the upstream
        // (hop-by-hop, never told to close) goes to the pool.
        if (!c.upstream_idle_clean || !c.keep_alive)
            release_upstream(c);
    }
    // A response that ended before the request body did leaves the
    // connection in an unknown state: close rather than guess.
    if (!request_done || !c.keep_alive || c.response_until_close) {
        c.phase = Phase::closing;
        return true;
    }
    if (c.upstream_eof) {
        c.upstream_tls.reset();
        c.upstream_cipher_out.clear();
        release_upstream(c);   // closed: an upstream that said EOF is never clean
    }
    c.phase = Phase::head;
    return true;
}

// Bodies shorter than this are copied: below it a pipe costs more than the copy.
constexpr std::uint64_t splice_threshold = 128 * 1024;

// One pipe per body in flight, for either direction.
bool ProxyServer::State::start_body_splice(Connection& c, bool request, std::uint64_t length) noexcept
{
    if (!c.body_splice) {
        auto created = BodySplice::create();
        if (!created)
            return false;
        c.body_splice.emplace(std::move(*created));
    }
    c.splice_is_request = request;
    c.body_splice->start(length);
    return true;
}

// Moves the rest of a large plain response body of known length with
// splice(), once its head and every buffered body byte have reached the
// client. Returns -1 when it does not apply (the buffered path goes on),
// else whether it moved anything; when the body is complete it leaves the
// exchange to finish as if the body had been fed.
int ProxyServer::State::splice_response_body(Connection& c, bool request_done) noexcept
{
    bool active = c.splicing_response();
    if (!active) {
        // Only plain bytes both ways: an intercepted session's body must be
        // decrypted and re-encrypted, so it stays in the buffered path.
        if (!c.response_head_seen || !c.response_length_known || !c.response_body || c.response_body->done() ||
            c.response_left < splice_threshold || c.response_guard || !c.upstream_in.empty() || !c.client_out.empty() ||
            !request_done || c.client_tls || c.upstream_tls || c.upstream_connecting || c.upstream < 0)
            return -1;
        if (!start_body_splice(c, false, c.response_left))
            return -1;   // out of pipes: copying still works
    }
    std::uint64_t before = c.body_splice->delivered();
    BodySplice::Step step = c.body_splice->pump(c.upstream, c.client);
    c.record.bytes_out += c.body_splice->delivered() - before;
    if (step.error != 0) {
        c.body_splice->finish();
        finish_record(c, c.record.status, std::string("relaying the response body: ") + std::strerror(step.error));
        c.phase = Phase::closing;
        return 1;
    }
    if (c.body_splice->done()) {
        // The pipe goes with the body: an unprivileged user's pipe pages are
        // limited in all (fs.pipe-user-pages-soft; past it new pipes get 8
        // KiB), so only bodies in flight hold 1 MiB. A new one costs 3 calls.
        c.body_splice.reset();
        c.response_left = 0;
        c.response_body.reset();   // complete: the exchange ends as usual
        return -1;
    }
    if (c.body_splice->source_closed() && c.body_splice->drained()) {
        c.body_splice->finish();
        finish_record(c, c.record.status, "upstream closed inside the response");
        c.phase = Phase::closing;
        return 1;
    }
    return step.progress ? 1 : 0;
}

// Moves the rest of a large request body of known length with splice(),
// once the head and every buffered body byte have gone upstream. Only when
// nothing needs to see the bytes: no credential scan (RequestBodyScan runs
// whenever providers are configured), no TLS on either side. Returns -1
// when it does not apply, else whether it moved anything; on an error or a
// client gone mid-body the exchange is closed (phase closing), and a
// complete body leaves the exchange as if the decoder had been fed.
int ProxyServer::State::splice_request_body(Connection& c) noexcept
{
    if (!c.splicing_request()) {
        if (!c.request_body || c.request_body->done() || c.request_body->length_left() < splice_threshold ||
            c.request_scan || !c.client_in.empty() || !c.upstream_out.empty() || c.client_tls || c.upstream_tls ||
            c.upstream_connecting || c.upstream < 0 || c.client_eof || c.splicing_response())
            return -1;
        if (!start_body_splice(c, true, c.request_body->length_left()))
            return -1;   // out of pipes: copying still works
    }
    std::uint64_t before = c.body_splice->delivered();
    BodySplice::Step step = c.body_splice->pump(c.client, c.upstream);
    c.record.bytes_in += c.body_splice->delivered() - before;
    if (step.error != 0) {
        c.body_splice->finish();
        finish_record(c, std::nullopt, std::string("relaying the request body: ") + std::strerror(step.error));
        c.phase = Phase::closing;
        c.client_out.clear();
        return 1;
    }
    if (c.body_splice->done()) {
        c.body_splice.reset();     // as for responses: only bodies in flight hold a pipe
        c.request_body.reset();   // complete: the exchange goes on as usual
        return 1;
    }
    if (c.body_splice->source_closed() && c.body_splice->drained()) {
        c.body_splice->finish();
        finish_record(c, std::nullopt, "client closed inside the request body");
        c.phase = Phase::closing;
        c.client_out.clear();
        return 1;
    }
    return step.progress ? 1 : 0;
}

// ---- TLS: classification, pass-through, interception ----

bool ProxyServer::State::pump_tls(Connection& c, bool upstream) noexcept
{
    tls::TlsStream* tls = upstream ? c.upstream_tls.get() : c.client_tls.get();
    if (!tls)
        return true;
    auto r = upstream ? tls->pump(c.upstream_in, c.upstream_out, c.upstream_cipher_out)
                      : tls->pump(c.client_in, c.client_out, c.client_cipher_out);
    if (!r) {
        if (upstream) {
            // Verification or protocol failure toward the real server: the
            // client gets a 502 inside its own (healthy) session.
            tls_log()->debug("connection {}: upstream TLS: {}", c.id, r.error().message);
            c.record.verdict = "deny";
            reject(c, 502, c.record.rule, "upstream TLS with " + c.tls_identity + ": " + r.error().message);
        } else {
            // Most often the client refused the run CA (no trust injected).
            AuditRecord rec = record_for(c.origin);
            rec.event = "tls";
            rec.verdict = "deny";
            rec.host = c.tls_identity;
            rec.reason = "client TLS: " + r.error().message;
            audit.write(rec);
            c.client_eof = true;
            c.client_out.clear();
            c.phase = Phase::closing;
        }
        return false;
    }
    if (tls->peer_closed())
        (upstream ? c.upstream_eof : c.client_eof) = true;
    return true;
}

void ProxyServer::State::deny_tls(Connection& c, const std::string& host, const std::string& reason,
                                  const std::string& alert) noexcept
{
    AuditRecord rec = record_for(c.origin);
    rec.event = "tls";
    rec.verdict = "deny";
    rec.host = host;
    rec.reason = reason;
    audit.write(rec);
    tls_log()->debug("connection {}: TLS denied: {}", c.id, reason);
    c.client_out = alert;
    c.response_sent_any = true;
    c.phase = Phase::closing;
}

bool ProxyServer::State::step_hello(Connection& c) noexcept
{
    c.opaque = true;
    tls::HelloStatus status = c.hello.feed(std::string_view(c.client_in).substr(c.hello_fed));
    c.hello_fed = c.client_in.size();
    if (status == tls::HelloStatus::malformed) {
        // Garbage that merely starts like TLS gets no answer, as non-HTTP
        // bytes get none.
        deny_tls(c, "", "not HTTP or TLS: malformed TLS ClientHello: " + c.hello.error(), "");
        return true;
    }
    if (status == tls::HelloStatus::need_more) {
        if (!c.client_eof)
            return false;
        deny_tls(c, "", "connection closed inside the TLS ClientHello", "");
        return true;
    }
    c.classified = true;
    auto policy_it = policies.find(c.origin.sandbox_id);
    const policy::CompiledPolicy* policy = policy_it == policies.end() ? nullptr : policy_it->second.get();
    TlsVerdict v = decide_tls(policy, resolver, c.origin, c.hello.hello());
    if (v.action != TlsAction::deny && !leaves)
        v = TlsVerdict{TlsAction::deny, v.identity, "", "TLS is not enabled in this proxy"};
    if (v.action == TlsAction::deny) {
        deny_tls(c, v.identity, v.reason, alert_access_denied);
        return true;
    }
    c.tls_identity = v.identity;
    c.record = record_for(c.origin);
    c.record.host = v.identity;
    c.record.rule = v.rule;
    if (v.action == TlsAction::passthrough) {
        auto relay = SpliceRelay::create();
        if (!relay) {
            deny_tls(c, v.identity, relay.error().what(), alert_access_denied);
            return true;
        }
        c.relay.emplace(std::move(*relay));
        AuditRecord rec = c.record;
        rec.event = "tls";
        rec.verdict = "allow";
        rec.reason = "pass-through: " + v.reason;
        audit.write(rec);
        c.record.event = "tls";
        if (!connect_upstream(c)) {
            reject(c, 502, v.rule, "cannot connect to " + c.record.destination + ": " + std::strerror(errno));
            return true;
        }
        // The hello goes out first, as read; the relay takes over after it.
        c.upstream_out = std::move(c.client_in);
        c.client_in.clear();
        c.phase = Phase::relay;
        return true;
    }
    auto ctx = leaves->context_for(v.identity);
    if (!ctx) {
        deny_tls(c, v.identity, "cannot mint a certificate: " + ctx.error().message, alert_access_denied);
        return true;
    }
    auto session = tls::TlsStream::accept(*ctx);
    if (!session) {
        deny_tls(c, v.identity, session.error().message, alert_access_denied);
        return true;
    }
    c.client_tls = std::move(*session);
    c.client_tls->feed(c.client_in);
    c.client_in.clear();
    c.opaque = false;   // from here on the proxy answers inside the session
    tls_log()->debug("connection {}: intercepting {} ({})", c.id, v.identity, v.reason);
    pump_tls(c, false);
    return true;
}

bool ProxyServer::State::step_relay(Connection& c) noexcept
{
    if (c.upstream_connecting || c.upstream < 0 || !c.relay)
        return false;
    if (!c.upstream_out.empty()) {
        if (!write_side(c, true)) {
            finish_record(c, std::nullopt, "upstream refused the ClientHello");
            c.phase = Phase::closing;
            return true;
        }
        if (!c.upstream_out.empty())
            return false;
    }
    SpliceRelay::Step step = c.relay->pump(c.client, c.upstream);
    c.record.bytes_in = c.relay->bytes_to_upstream();
    c.record.bytes_out = c.relay->bytes_to_client();
    if (!step.error.empty() || step.done) {
        tls_log()->debug("connection {}: relay ended{}{}", c.id, step.error.empty() ? "" : ": ", step.error);
        c.phase = Phase::closing;
        return true;
    }
    return step.progress;
}

void ProxyServer::State::advance(Connection& c) noexcept
{
    // Bounded: each step either makes progress or returns false.
    for (int i = 0; i < 64; ++i) {
        bool progress = false;
        switch (c.phase) {
        case Phase::head: progress = step_head(c); break;
        case Phase::exchange: progress = step_exchange(c); break;
        case Phase::relay: progress = step_relay(c); break;
        case Phase::closing: progress = false; break;
        }
        if (c.phase == Phase::closing && c.client_tls && c.client_out.empty())
            c.client_tls->close(c.client_cipher_out);
        // Draining an output buffer is progress too: it may be what a step
        // that moved nothing was waiting for (a full client_out holding back
        // upstream_in). Stopping there would leave neither socket watched.
        std::size_t queued = c.client_out.size() + c.upstream_out.size();
        if (!write_side(c, false) || !write_side(c, true)) {
            close_connection(c);
            return;
        }
        bool drained = c.client_out.size() + c.upstream_out.size() < queued;
        if (!progress && !drained)
            break;
    }
    if (c.phase == Phase::closing && client_drained(c)) {
        close_connection(c);
        return;
    }
    if (c.client_eof && c.phase == Phase::head && c.client_in.empty()) {
        close_connection(c);
        return;
    }
    update_interest(c);
}

void ProxyServer::State::update_interest(Connection& c) noexcept
{
    std::uint32_t client_mask = 0;
    bool relaying = c.phase == Phase::relay && c.relay && !c.upstream_connecting && c.upstream_out.empty();
    if (relaying) {
        client_mask = c.relay->client_events();
    } else {
        if (c.splicing_request()) {
            if (c.phase == Phase::exchange && c.body_splice->wants_source())
                client_mask |= EPOLLIN;
        } else if (!c.client_eof && c.phase != Phase::closing && c.phase != Phase::relay &&
                   c.client_in.size() < limits.max_buffer) {
            client_mask |= EPOLLIN;
        }
        if (!client_drained(c) || (c.splicing_response() && c.body_splice->wants_destination()))
            client_mask |= EPOLLOUT;
    }
    if (client_mask != c.client_mask) {
        epoll_event ev{};
        ev.events = client_mask;
        ev.data.u64 = c.id;
        ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.client, &ev);
        c.client_mask = client_mask;
    }
    if (c.upstream < 0)
        return;
    std::uint32_t upstream_mask = 0;
    // Plaintext waits inside an unfinished handshake; only ciphertext
    // (or plain bytes on a plain or relayed connection) wants the socket.
    bool sendable = !c.upstream_cipher_out.empty() ||
                    (!c.upstream_out.empty() && (!c.upstream_tls || c.upstream_tls->established()));
    if (relaying)
        upstream_mask = c.relay->upstream_events();
    else if (c.upstream_connecting || sendable || (c.splicing_request() && c.body_splice->wants_destination()))
        upstream_mask |= EPOLLOUT;
    if (c.splicing_response()) {
        if (c.body_splice->wants_source())
            upstream_mask |= EPOLLIN;
    } else if (!relaying && c.phase != Phase::relay && !c.upstream_connecting && !c.upstream_eof &&
               c.upstream_in.size() < limits.max_buffer) {
        upstream_mask |= EPOLLIN;
    }
    if (upstream_mask != c.upstream_mask) {
        epoll_event ev{};
        ev.events = upstream_mask;
        ev.data.u64 = c.upstream_tag();
        ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.upstream, &ev);
        c.upstream_mask = upstream_mask;
    }
}

void ProxyServer::State::close_connection(Connection& c) noexcept
{
    finish_record(c, c.record.status, "connection closed before the exchange completed");
    if (c.client >= 0)
        ::close(c.client);
    release_upstream(c);   // pooled only if its last exchange ended clean
    log()->debug("closed connection {}", c.id);
    connections.erase(c.id);
}

void ProxyServer::State::sweep_timeouts() noexcept
{
    auto now = Clock::now();
    pool.reap(now);   // the loop's one-second tick: no timer of its own
    if (accepting_paused_until && *accepting_paused_until <= now) {
        accepting_paused_until.reset();
        set_listening(true);
    }
    std::vector<std::uint64_t> expired;
    for (auto& [id, c] : connections) {
        if (c->deadline <= now)
            expired.push_back(id);
    }
    for (auto id : expired) {
        auto it = connections.find(id);
        if (it == connections.end())
            continue;
        Connection& c = *it->second;
        if (c.upstream_connecting) {
            reject(c, 502, c.record.rule, "timed out connecting to " + c.record.destination);
            touch(c);
            advance(c);
            continue;
        }
        finish_record(c, c.record.status, "idle timeout");
        close_connection(c);
    }
}

} // namespace pinfold::proxy
