#include "upstream_pool.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <utility>

#include "http/syntax.hpp"

namespace pinfold::proxy {

namespace {

void mix(std::size_t& h, std::size_t v) noexcept
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
}

} // namespace

UpstreamKey plain_http_key(const ConnectionOrigin& origin, std::string_view host, std::string_view rule,
                           const std::vector<std::string>& injected)
{
    UpstreamKey k;
    // Bound by structure, here and in key_matches: a field added to the key
    // stops both from compiling until it is filled and compared.
    auto& [scheme, sandbox_id, uid, exe, exe_name, identity_note, address, port, key_host, key_rule, credentials] = k;
    scheme = "http";
    sandbox_id = origin.sandbox_id;
    uid = origin.uid;
    exe = origin.exe;
    exe_name = origin.exe_name;
    identity_note = origin.identity_note;
    address = origin.address;
    port = origin.port;
    key_host.assign(host);
    key_rule.assign(rule);
    credentials = injected;
    return k;
}

bool key_matches(const UpstreamKey& key, const ConnectionOrigin& origin, std::string_view host,
                 std::string_view rule, const std::vector<std::string>& injected) noexcept
{
    const auto& [scheme, sandbox_id, uid, exe, exe_name, identity_note, address, port, key_host, key_rule,
                 credentials] = key;
    return scheme == "http" && sandbox_id == origin.sandbox_id && uid == origin.uid && exe == origin.exe &&
           exe_name == origin.exe_name && identity_note == origin.identity_note && address == origin.address &&
           port == origin.port && key_host == host && key_rule == rule && credentials == injected;
}

std::size_t hash_key(const UpstreamKey& key) noexcept
{
    std::size_t h = std::hash<std::string_view>{}(key.host);
    mix(h, std::hash<std::string_view>{}(key.rule));
    mix(h, key.sandbox_id);
    mix(h, key.exe.dev);
    mix(h, key.exe.ino);
    mix(h, key.uid);
    mix(h, key.port);
    for (unsigned char b : key.address)
        mix(h, b);
    mix(h, key.credentials.size());
    return h;
}

bool may_use_pooled(const http::RequestHead& head) noexcept
{
    if (head.body != http::BodyKind::none || head.expect_continue || head.upgrade)
        return false;
    // RFC 9110 9.2.2; the parser admits no other method of that kind.
    return head.method == "GET" || head.method == "HEAD" || head.method == "OPTIONS";
}

bool authenticates_connection(const http::RequestHead& head) noexcept
{
    for (const auto& header : head.headers) {
        if (!http::syntax::iequals(header.name, "authorization"))
            continue;
        std::string_view value = header.value;
        std::string_view scheme = value.substr(0, value.find(' '));
        if (http::syntax::iequals(scheme, "NTLM") || http::syntax::iequals(scheme, "Negotiate"))
            return true;
    }
    return false;
}

bool reusable_after(const ExchangeEnd& end, const UpstreamPoolLimits& limits) noexcept
{
    if (!end.plain || !end.request_complete || !end.request_sent || !end.response_complete)
        return false;
    // 1xx never ends an exchange (101 is refused before it gets here).
    if (end.status < 200 || end.status > 599)
        return false;
    // HTTP/1.0 keep-alive is an old extension with its own pitfalls; only
    // HTTP/1.1 persistence is trusted.
    if (end.minor_version != 1 || !end.response_keep_alive)
        return false;
    // A close-delimited body ends only when the origin closes: nothing left.
    if (end.body == http::BodyKind::until_close)
        return false;
    // A byte after a framed response is a response nobody asked for (or a
    // smuggling attempt): it must never reach the next request's client.
    if (end.extra_bytes || end.upstream_eof)
        return false;
    return end.requests < limits.max_requests;
}

IdleSocket probe_idle_socket(int fd) noexcept
{
    char byte;
    ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
        return IdleSocket::unsolicited_bytes;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? IdleSocket::alive : IdleSocket::closed;
}

UpstreamPool::~UpstreamPool()
{
    clear();
}

void UpstreamPool::close_at(std::size_t index)
{
    ::close(idle_[index].fd);
    idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(index));
}

std::optional<UpstreamPool::Taken> UpstreamPool::take(const UpstreamKey& key, Clock::time_point now)
{
    std::size_t h = hash_key(key);
    // Newest first: the entry released last is the likeliest still open.
    for (std::size_t i = idle_.size(); i-- > 0;) {
        Idle& e = idle_[i];
        if (e.hash != h || !(e.key == key))
            continue;
        if (now - e.since >= limits_.idle_timeout) {
            close_at(i);
            continue;
        }
        if (auto state = probe_idle_socket(e.fd); state != IdleSocket::alive) {
            if (state == IdleSocket::unsolicited_bytes)
                ++unsolicited_discards_;
            close_at(i);
            continue;
        }
        Taken out{e.fd, e.requests};
        idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
        return out;
    }
    return std::nullopt;
}

bool UpstreamPool::release(UpstreamKey key, int fd, std::uint32_t requests, Clock::time_point now)
{
    if (fd < 0)
        return false;
    // No liveness probe here: take() probes before every reuse, and a
    // byte or EOF present now is still there then.
    if (limits_.idle_per_key == 0 || limits_.idle_total == 0 || requests >= limits_.max_requests) {
        ::close(fd);
        return false;
    }
    std::size_t h = hash_key(key);
    std::size_t same = 0;
    std::size_t oldest_same = idle_.size();
    for (std::size_t i = 0; i < idle_.size(); ++i) {
        if (idle_[i].hash == h && idle_[i].key == key) {
            if (same++ == 0)
                oldest_same = i;
        }
    }
    if (same >= limits_.idle_per_key)
        close_at(oldest_same);
    else if (idle_.size() >= limits_.idle_total)
        close_at(0);   // oldest of all: entries are appended in release order
    idle_.push_back(Idle{std::move(key), h, fd, requests, now});
    return true;
}

std::size_t UpstreamPool::reap(Clock::time_point now)
{
    std::size_t closed = 0;
    for (std::size_t i = idle_.size(); i-- > 0;) {
        if (now - idle_[i].since >= limits_.idle_timeout) {
            close_at(i);
            ++closed;
        }
    }
    return closed;
}

void UpstreamPool::clear()
{
    for (const Idle& e : idle_)
        ::close(e.fd);
    idle_.clear();
}

std::size_t UpstreamPool::size_for(const UpstreamKey& key) const
{
    std::size_t h = hash_key(key);
    std::size_t n = 0;
    for (const Idle& e : idle_)
        if (e.hash == h && e.key == key)
            ++n;
    return n;
}

} // namespace pinfold::proxy
