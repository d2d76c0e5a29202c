#pragma once
// Idle upstream connections kept for the next request with the same key,
// so a sandbox that opens one TCP connection per request does not pay a
// new proxy -> origin handshake (and the origin's accept) each time.
//
// Plain HTTP forwarded by the proxy only. A TLS pass-through relay carries
// the client's own session and can never be shared; an intercepted
// session's upstream TLS state is per client today. The key has a scheme
// so interception could pool its upstream sessions later with the SNI name
// as part of it; nothing does that now.
//
// The pool owns the idle sockets (they are not in any epoll set while
// idle) and closes them when evicted, reaped, found dead or destroyed.
// Everything here is bookkeeping over file descriptors plus a recv()
// liveness probe, so it is unit-tested with socket pairs, no privilege.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "connection_origin.hpp"
#include "http/message.hpp"
#include "pinfold/address.hpp"
#include "policy/binaries.hpp"

namespace pinfold::proxy {

// Everything that made a request allowed and where it went. A pooled
// connection is only ever handed to a request whose key is equal in every
// field: an origin may tie state to a connection (connection-based auth,
// a proxy's own keep-alive bookkeeping), so a connection opened for one
// executable, rule or credential must never carry another's request.
struct UpstreamKey {
    std::string scheme;                 // "http" only, today
    std::uint64_t sandbox_id = 0;
    std::uint32_t uid = 0;
    policy::ExeIdentity exe{};          // kernel-captured identity the rules match on
    std::string exe_name;               // also seen by the policy (labels only, kept strict)
    std::string identity_note;          // degraded identity source, if any
    MappedAddress address{};            // dialled address: the only place the proxy connects to
    std::uint16_t port = 0;
    std::string host;                   // the decided Host (lowercase)
    std::string rule;                   // the allow rule that matched
    std::vector<std::string> credentials;   // providers injected into the head, in order

    friend bool operator==(const UpstreamKey&, const UpstreamKey&) = default;
};

// The key of a plain HTTP request the gate allowed: the origin's identity
// as the kernel recorded it, the dialled destination, the decided Host,
// the allowing rule and the providers injected into the head.
[[nodiscard]] UpstreamKey plain_http_key(const ConnectionOrigin& origin, std::string_view host,
                                         std::string_view rule, const std::vector<std::string>& injected);

// plain_http_key(origin, host, rule, injected) == key, without building
// one: a keep-alive client's every request checks its kept upstream.
[[nodiscard]] bool key_matches(const UpstreamKey& key, const ConnectionOrigin& origin, std::string_view host,
                               std::string_view rule, const std::vector<std::string>& injected) noexcept;

// A quick pre-filter; equality decides.
[[nodiscard]] std::size_t hash_key(const UpstreamKey& key) noexcept;

struct UpstreamPoolLimits {
    std::size_t idle_per_key = 4;
    std::size_t idle_total = 64;
    // Well under nginx's default keepalive_timeout (75 s) and most
    // origins', so the proxy usually drops a connection before the origin
    // does; the liveness probe and the retry cover the rest.
    std::chrono::seconds idle_timeout{12};
    std::uint32_t max_requests = 1000;  // per upstream connection (nginx's default), then it is closed
};

// May this request go on a pooled connection? Only methods that are
// idempotent and carry no body: if the origin closed the connection while
// it sat idle, such a request can be sent again on a fresh connection
// without the origin ever acting on it twice.
[[nodiscard]] bool may_use_pooled(const http::RequestHead& head) noexcept;

// Does this request authenticate the connection rather than itself? NTLM
// and Negotiate (RFC 4559) bind the whole TCP connection to the user who
// completed the handshake, and later requests on it carry no credential.
// Such an upstream serves only the client connection that authenticated
// it and is closed after, never pooled: the pool key cannot tell two
// processes of one executable apart.
[[nodiscard]] bool authenticates_connection(const http::RequestHead& head) noexcept;

// What the proxy knows at the end of one exchange on an upstream connection.
struct ExchangeEnd {
    bool plain = true;                 // no TLS on either side
    bool request_complete = false;     // request body fully taken from the client...
    bool request_sent = false;         // ...and every byte written to the upstream socket
    bool response_complete = false;    // final response fully relayed
    int status = 0;                    // final status
    int minor_version = 0;             // of the response
    http::BodyKind body = http::BodyKind::until_close;
    bool response_keep_alive = false;  // no Connection: close from upstream
    bool extra_bytes = false;          // anything buffered after the response
    bool upstream_eof = false;         // upstream closed or failed
    std::uint32_t requests = 0;        // requests sent on this connection so far
};

// Whether the connection is in a known, clean state to serve another
// request: an HTTP/1.1 final response whose end was framed (length,
// chunked, or no body by status/method), fully relayed, with the request
// fully sent and nothing after the response. Close-delimited bodies, 1xx
// endings (101 is refused earlier), Connection: close, stray bytes, a
// connection past max_requests: not reusable.
[[nodiscard]] bool reusable_after(const ExchangeEnd& end, const UpstreamPoolLimits& limits) noexcept;

// What recv(MSG_PEEK | MSG_DONTWAIT) says of an idle socket: EAGAIN is
// alive; EOF or an error is closed; any byte is a response nobody asked
// for (an origin out of step with its requests, or smuggling one).
enum class IdleSocket { alive, closed, unsolicited_bytes };
[[nodiscard]] IdleSocket probe_idle_socket(int fd) noexcept;

class UpstreamPool {
public:
    using Clock = std::chrono::steady_clock;

    explicit UpstreamPool(UpstreamPoolLimits limits = {}) noexcept : limits_(limits) {}
    ~UpstreamPool();   // closes every idle connection
    UpstreamPool(const UpstreamPool&) = delete;
    UpstreamPool& operator=(const UpstreamPool&) = delete;

    struct Taken {
        int fd = -1;
        std::uint32_t requests = 0;   // requests it already served
    };

    // The most recently released live connection for `key`, taken out of
    // the pool (the caller owns it). Entries found dead or expired on the
    // way are closed.
    [[nodiscard]] std::optional<Taken> take(const UpstreamKey& key, Clock::time_point now);

    // Gives an idle connection to the pool; it takes ownership of `fd`
    // whatever it answers. Returns whether it was kept: a connection past
    // max_requests is closed; a full key or a full pool
    // closes its oldest entry to make room (the newest is the likeliest to
    // be alive and the origin's least likely to be reaped).
    bool release(UpstreamKey key, int fd, std::uint32_t requests, Clock::time_point now);

    // Closes connections idle longer than the timeout; returns how many.
    std::size_t reap(Clock::time_point now);
    void clear();

    [[nodiscard]] std::size_t size() const noexcept { return idle_.size(); }
    [[nodiscard]] std::size_t size_for(const UpstreamKey& key) const;
    [[nodiscard]] const UpstreamPoolLimits& limits() const noexcept { return limits_; }
    // Idle connections take() found holding bytes nobody asked for and
    // discarded, since the pool was made: worth an audit record each.
    [[nodiscard]] std::uint64_t unsolicited_discards() const noexcept { return unsolicited_discards_; }

private:
    struct Idle {
        UpstreamKey key;
        std::size_t hash = 0;
        int fd = -1;
        std::uint32_t requests = 0;
        Clock::time_point since;
    };
    void close_at(std::size_t index);

    UpstreamPoolLimits limits_;
    // At most idle_total entries, oldest first: linear scans over a few
    // dozen entries beat any index here.
    std::vector<Idle> idle_;
    std::uint64_t unsolicited_discards_ = 0;
};

} // namespace pinfold::proxy
