// The upstream keep-alive pool (proxy/upstream_pool.hpp): key equality,
// bounds, reaping, liveness and the eligibility rules. Socket pairs stand
// in for upstream connections: no privilege, no network.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "proxy/upstream_pool.hpp"

using namespace pinfold;
using namespace pinfold::proxy;
using namespace std::chrono_literals;

namespace {

UpstreamKey base_key()
{
    UpstreamKey k;
    k.scheme = "http";
    k.sandbox_id = 7;
    k.uid = 1000;
    k.exe = {2049, 1234};
    k.exe_name = "curl";
    k.address = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
    k.port = 8080;
    k.host = "example.test";
    k.rule = "allow-example";
    return k;
}

// One end is the "upstream connection" handed to the pool, the other
// plays the origin. The pool closes its end; the origin end is ours.
struct Link {
    int proxy_end = -1;
    int origin_end = -1;
    Link()
    {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        proxy_end = fds[0];
        origin_end = fds[1];
    }
    ~Link()
    {
        if (origin_end >= 0)
            ::close(origin_end);
    }
    Link(const Link&) = delete;
    Link& operator=(const Link&) = delete;
};

bool fd_open(int fd)
{
    return ::fcntl(fd, F_GETFD) != -1;
}

// The origin side sees EOF once the pool closed the proxy end.
bool closed_by_pool(const Link& l)
{
    char c;
    return ::recv(l.origin_end, &c, 1, MSG_DONTWAIT) == 0;
}

ExchangeEnd clean_end()
{
    ExchangeEnd e;
    e.plain = true;
    e.request_complete = true;
    e.request_sent = true;
    e.response_complete = true;
    e.status = 200;
    e.minor_version = 1;
    e.body = http::BodyKind::content_length;
    e.response_keep_alive = true;
    e.requests = 1;
    return e;
}

} // namespace

TEST_CASE("upstream pool: keys differing in any field are different")
{
    UpstreamKey a = base_key();
    CHECK(a == base_key());
    CHECK(hash_key(a) == hash_key(base_key()));
    auto differs = [&](auto change) {
        UpstreamKey b = base_key();
        change(b);
        return !(a == b);
    };
    CHECK(differs([](UpstreamKey& k) { k.scheme = "https"; }));
    CHECK(differs([](UpstreamKey& k) { k.sandbox_id = 8; }));
    CHECK(differs([](UpstreamKey& k) { k.uid = 1001; }));
    CHECK(differs([](UpstreamKey& k) { k.exe.ino = 1235; }));
    CHECK(differs([](UpstreamKey& k) { k.exe.dev = 2050; }));
    CHECK(differs([](UpstreamKey& k) { k.exe_name = "wget"; }));
    CHECK(differs([](UpstreamKey& k) { k.identity_note = "degraded"; }));
    CHECK(differs([](UpstreamKey& k) { k.address[15] = 2; }));
    CHECK(differs([](UpstreamKey& k) { k.port = 8081; }));
    CHECK(differs([](UpstreamKey& k) { k.host = "other.test"; }));
    CHECK(differs([](UpstreamKey& k) { k.rule = "allow-other"; }));
    CHECK(differs([](UpstreamKey& k) { k.credentials = {"github"}; }));
    UpstreamKey one = base_key(), two = base_key();
    one.credentials = {"github"};
    two.credentials = {"gitlab"};
    CHECK_FALSE(one == two);
}

TEST_CASE("upstream pool: a connection is only handed back for an equal key")
{
    UpstreamPool pool;
    auto now = UpstreamPool::Clock::now();
    Link l;
    CHECK(pool.release(base_key(), l.proxy_end, 1, now));
    UpstreamKey other_rule = base_key();
    other_rule.rule = "allow-other";
    UpstreamKey other_exe = base_key();
    other_exe.exe.ino = 99;
    UpstreamKey with_credential = base_key();
    with_credential.credentials = {"github"};
    CHECK_FALSE(pool.take(other_rule, now));
    CHECK_FALSE(pool.take(other_exe, now));
    CHECK_FALSE(pool.take(with_credential, now));
    CHECK(pool.size() == 1);
    auto taken = pool.take(base_key(), now);
    REQUIRE(taken);
    CHECK(taken->fd == l.proxy_end);
    CHECK(taken->requests == 1);
    CHECK(pool.size() == 0);
    ::close(taken->fd);
}

TEST_CASE("upstream pool: newest first, per-key and total bounds evict the oldest")
{
    UpstreamPoolLimits limits;
    limits.idle_per_key = 2;
    limits.idle_total = 3;
    UpstreamPool pool(limits);
    auto now = UpstreamPool::Clock::now();
    Link a1, a2, a3, b1, c1;
    UpstreamKey b = base_key();
    b.host = "b.test";
    UpstreamKey c = base_key();
    c.host = "c.test";
    CHECK(pool.release(base_key(), a1.proxy_end, 1, now));
    CHECK(pool.release(base_key(), a2.proxy_end, 1, now + 1s));
    CHECK(pool.release(base_key(), a3.proxy_end, 1, now + 2s));   // key full: a1 goes
    CHECK(closed_by_pool(a1));
    CHECK(pool.size_for(base_key()) == 2);
    CHECK(pool.release(b, b1.proxy_end, 1, now + 3s));
    CHECK(pool.size() == 3);
    CHECK(pool.release(c, c1.proxy_end, 1, now + 4s));   // pool full: a2, the oldest, goes
    CHECK(closed_by_pool(a2));
    CHECK(pool.size() == 3);
    auto t = pool.take(base_key(), now + 5s);
    REQUIRE(t);
    CHECK(t->fd == a3.proxy_end);
    ::close(t->fd);
    CHECK_FALSE(pool.take(base_key(), now + 5s));
}

TEST_CASE("upstream pool: hostile churn of many keys never holds more than the bound")
{
    UpstreamPoolLimits limits;
    limits.idle_total = 8;
    UpstreamPool pool(limits);
    auto now = UpstreamPool::Clock::now();
    for (int i = 0; i < 200; ++i) {
        Link l;
        UpstreamKey k = base_key();
        k.host = "h" + std::to_string(i) + ".test";
        pool.release(k, l.proxy_end, 1, now);
        CHECK(pool.size() <= 8);
    }
    CHECK(pool.size() == 8);
}

TEST_CASE("upstream pool: idle connections are reaped after the timeout and closed")
{
    UpstreamPoolLimits limits;
    limits.idle_timeout = 10s;
    UpstreamPool pool(limits);
    auto now = UpstreamPool::Clock::now();
    Link old_one, young;
    CHECK(pool.release(base_key(), old_one.proxy_end, 1, now));
    CHECK(pool.release(base_key(), young.proxy_end, 1, now + 6s));
    CHECK(pool.reap(now + 9s) == 0);
    CHECK(pool.reap(now + 10s) == 1);
    CHECK(closed_by_pool(old_one));
    CHECK(pool.size() == 1);
    // take() never hands out an expired one either.
    CHECK_FALSE(pool.take(base_key(), now + 16s));
    CHECK(closed_by_pool(young));
    CHECK(pool.size() == 0);
}

TEST_CASE("upstream pool: a closed or chatty idle connection is discarded, never handed out")
{
    UpstreamPool pool;
    auto now = UpstreamPool::Clock::now();
    SUBCASE("origin closed it while idle")
    {
        Link l;
        CHECK(pool.release(base_key(), l.proxy_end, 1, now));
        ::close(l.origin_end);
        l.origin_end = -1;
        CHECK_FALSE(pool.take(base_key(), now));
        CHECK(pool.size() == 0);
        CHECK(pool.unsolicited_discards() == 0);   // an ordinary idle close: nothing to report
    }
    SUBCASE("origin sent a byte nobody asked for while idle")
    {
        Link l;
        CHECK(pool.release(base_key(), l.proxy_end, 1, now));
        REQUIRE(::send(l.origin_end, "H", 1, 0) == 1);
        CHECK_FALSE(pool.take(base_key(), now));
        CHECK(pool.size() == 0);
        CHECK(pool.unsolicited_discards() == 1);
    }
    SUBCASE("a byte already pending at release: never handed out")
    {
        Link l;
        REQUIRE(::send(l.origin_end, "HTTP/1.1 200 OK\r\n", 17, 0) == 17);
        int fd = l.proxy_end;
        pool.release(base_key(), fd, 1, now);
        CHECK_FALSE(pool.take(base_key(), now));
        CHECK_FALSE(fd_open(fd));
        CHECK(pool.size() == 0);
    }
    SUBCASE("past max_requests: closed at release")
    {
        UpstreamPoolLimits limits;
        limits.max_requests = 3;
        UpstreamPool small(limits);
        Link l;
        CHECK_FALSE(small.release(base_key(), l.proxy_end, 3, now));
        CHECK(closed_by_pool(l));
    }
}

TEST_CASE("upstream pool: every idle connection is closed with the pool")
{
    Link a, b;
    {
        UpstreamPool pool;
        auto now = UpstreamPool::Clock::now();
        CHECK(pool.release(base_key(), a.proxy_end, 1, now));
        UpstreamKey other = base_key();
        other.port = 81;
        CHECK(pool.release(other, b.proxy_end, 1, now));
    }
    CHECK(closed_by_pool(a));
    CHECK(closed_by_pool(b));
}

TEST_CASE("upstream pool: only idempotent requests without a body may use a pooled connection")
{
    http::RequestHead h;
    h.method = "GET";
    CHECK(may_use_pooled(h));
    h.method = "HEAD";
    CHECK(may_use_pooled(h));
    h.method = "OPTIONS";
    CHECK(may_use_pooled(h));
    for (const char* m : {"POST", "PUT", "DELETE", "PATCH"}) {
        h.method = m;
        CHECK_FALSE(may_use_pooled(h));
    }
    h.method = "GET";
    h.body = http::BodyKind::content_length;
    h.content_length = 0;
    CHECK_FALSE(may_use_pooled(h));   // a declared body, even empty
    h.body = http::BodyKind::chunked;
    CHECK_FALSE(may_use_pooled(h));
    h.body = http::BodyKind::none;
    h.expect_continue = true;
    CHECK_FALSE(may_use_pooled(h));
    h.expect_continue = false;
    h.upgrade = true;
    CHECK_FALSE(may_use_pooled(h));
}

TEST_CASE("upstream pool: NTLM and Negotiate authenticate the connection, other schemes only the request")
{
    http::RequestHead h;
    h.method = "GET";
    CHECK_FALSE(authenticates_connection(h));
    for (const char* value : {"NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==", "ntlm x",
                              "Negotiate YIIabc", "NEGOTIATE x", "NTLM"}) {
        h.headers = {{"Accept", "*/*"}, {"authorization", value}};
        CHECK_MESSAGE(authenticates_connection(h), value);
    }
    for (const char* value : {"Bearer NTLM", "Basic dXNlcjpwYXNz", "NTLMx abc", "Negotiated x", ""}) {
        h.headers = {{"Authorization", value}};
        CHECK_FALSE_MESSAGE(authenticates_connection(h), value);
    }
    // Any of several Authorization headers counts.
    h.headers = {{"Authorization", "Bearer t"}, {"Authorization", "Negotiate x"}};
    CHECK(authenticates_connection(h));
    // Only Authorization: the same words elsewhere bind nothing.
    h.headers = {{"X-Auth", "NTLM abc"}, {"Proxy-Authorization", "Basic x"}};
    CHECK_FALSE(authenticates_connection(h));
}

TEST_CASE("upstream pool: a connection is reusable only after a clean, fully framed exchange")
{
    UpstreamPoolLimits limits;
    limits.max_requests = 5;
    CHECK(reusable_after(clean_end(), limits));
    auto with = [&](auto change) {
        ExchangeEnd e = clean_end();
        change(e);
        return reusable_after(e, limits);
    };
    CHECK(with([](ExchangeEnd& e) { e.body = http::BodyKind::chunked; }));
    CHECK(with([](ExchangeEnd& e) { e.body = http::BodyKind::none; e.status = 204; }));
    CHECK(with([](ExchangeEnd& e) { e.status = 404; }));
    CHECK_FALSE(with([](ExchangeEnd& e) { e.body = http::BodyKind::until_close; }));
    CHECK_FALSE(with([](ExchangeEnd& e) { e.response_keep_alive = false; }));   // Connection: close
    CHECK_FALSE(with([](ExchangeEnd& e) { e.minor_version = 0; }));
    CHECK_FALSE(with([](ExchangeEnd& e) { e.extra_bytes = true; }));
    CHECK_FALSE(with([](ExchangeEnd& e) { e.upstream_eof = true; }));
    CHECK_FALSE(with([](ExchangeEnd& e) { e.request_complete = false; }));
    CHECK_FALSE(with([](ExchangeEnd& e) { e.request_sent = false; }));
    CHECK_FALSE(with([](ExchangeEnd& e) { e.response_complete = false; }));
    CHECK_FALSE(with([](ExchangeEnd& e) { e.plain = false; }));
    CHECK_FALSE(with([](ExchangeEnd& e) { e.status = 101; }));
    CHECK_FALSE(with([](ExchangeEnd& e) { e.status = 100; }));
    CHECK_FALSE(with([](ExchangeEnd& e) { e.requests = 5; }));
    CHECK(with([](ExchangeEnd& e) { e.requests = 4; }));
}

TEST_CASE("upstream pool: the key of a plain request holds the origin's identity and the decision")
{
    ConnectionOrigin o;
    o.sandbox_id = 7;
    o.uid = 1000;
    o.exe = {2049, 1234};
    o.exe_name = "curl";
    o.address = base_key().address;
    o.port = 8080;
    o.pid = 42;   // the pid is not part of it: a pool serves the executable, not one process
    UpstreamKey k = plain_http_key(o, "example.test", "allow-example", {});
    CHECK(k == base_key());
    o.pid = 43;
    CHECK(plain_http_key(o, "example.test", "allow-example", {}) == base_key());
    CHECK_FALSE(plain_http_key(o, "example.test", "allow-example", {"github"}) == base_key());
    CHECK_FALSE(plain_http_key(o, "example.test", "other", {}) == base_key());
    o.exe.ino = 1;
    CHECK_FALSE(plain_http_key(o, "example.test", "allow-example", {}) == base_key());
    // key_matches says the same as building the key and comparing.
    o.exe.ino = 1234;
    CHECK(key_matches(base_key(), o, "example.test", "allow-example", {}));
    CHECK_FALSE(key_matches(base_key(), o, "other.test", "allow-example", {}));
    CHECK_FALSE(key_matches(base_key(), o, "example.test", "other", {}));
    CHECK_FALSE(key_matches(base_key(), o, "example.test", "allow-example", {"github"}));
    auto changed = [&](auto change) {
        ConnectionOrigin x = o;
        change(x);
        return key_matches(base_key(), x, "example.test", "allow-example", {});
    };
    CHECK_FALSE(changed([](ConnectionOrigin& x) { x.sandbox_id = 8; }));
    CHECK_FALSE(changed([](ConnectionOrigin& x) { x.uid = 0; }));
    CHECK_FALSE(changed([](ConnectionOrigin& x) { x.exe.dev = 1; }));
    CHECK_FALSE(changed([](ConnectionOrigin& x) { x.exe_name = "wget"; }));
    CHECK_FALSE(changed([](ConnectionOrigin& x) { x.identity_note = "degraded"; }));
    CHECK_FALSE(changed([](ConnectionOrigin& x) { x.address[15] = 9; }));
    CHECK_FALSE(changed([](ConnectionOrigin& x) { x.port = 1; }));
    UpstreamKey https = base_key();
    https.scheme = "https";
    CHECK_FALSE(key_matches(https, o, "example.test", "allow-example", {}));
}
