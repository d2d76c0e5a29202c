// Request head parsing: a table of valid and hostile inputs, and every byte
// split of each valid one (a proxy sees heads arrive in arbitrary pieces).

#include "http/parser.hpp"
#include "parse_result_compare.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

namespace {

using pinfold::http::BodyKind;
using pinfold::http::Limits;
using pinfold::http::parse_request_head;
using pinfold::http::RequestHead;
using namespace std::string_literals;

struct Expected {
    const char* name;
    std::string input;
    int status; // 0: valid
};

const std::string pipelined = "GET /next HTTP/1.1\r\nHost: next\r\n\r\n";

std::vector<Expected> valid_requests()
{
    return {
        {"minimal 1.1", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 0},
        {"1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 0},
        {"query, port, several fields", "GET /a/b?c=d&e HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n", 0},
        {"content-length", "POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\n", 0},
        {"content-length with OWS", "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: \t 5 \r\n\r\n", 0},
        {"content-length zero", "PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", 0},
        {"GET content-length zero", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", 0},
        {"DELETE with content", "DELETE /r HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n", 0},
        {"chunked", "PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 0},
        {"chunked mixed case, HTAB", "PATCH /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tChunked\r\n\r\n", 0},
        {"asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n", 0},
        {"absolute-form", "GET http://example.com/path?q HTTP/1.1\r\nHost: example.com\r\n\r\n", 0},
        {"absolute-form, no path", "GET http://Example.com:81 HTTP/1.1\r\nHost: example.COM:81\r\n\r\n", 0},
        {"absolute-form 1.0 without Host", "GET http://example.com/ HTTP/1.0\r\n\r\n", 0},
        {"IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0},
        {"IPv6 Host with IPv4 tail", "GET / HTTP/1.1\r\nHost: [::ffff:10.0.0.1]\r\n\r\n", 0},
        {"IPv4 Host", "GET / HTTP/1.1\r\nHost: 10.0.0.1:80\r\n\r\n", 0},
        {"Host with digits in labels", "GET / HTTP/1.1\r\nHost: 1.example-2.co_m.\r\n\r\n", 0},
        {"value OWS, empty value, obs-text, inner HTAB",
         "DELETE /r HTTP/1.1\r\nHost: h\r\nX-A:   v  \r\nX-Empty:\r\nX-Utf8: caf\xC3\xA9\r\nX-Tab: a\tb\r\n\r\n", 0},
        {"connection list", "HEAD / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, , X-Foo\r\nX-Foo: 1\r\n\r\n", 0},
        {"expect 100-continue", "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", 0},
        {"upgrade", "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 0},
        {"target with all printable", "GET /!$&'()*+,;=:@-._~%20[]|{}^`\"<>\\ HTTP/1.1\r\nHost: h\r\n\r\n", 0},
    };
}

std::vector<Expected> invalid_requests()
{
    const std::string h = "Host: h\r\n";
    return {
        // Smuggling: framing must be unambiguous.
        {"CL and TE", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"TE and CL", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400},
        {"TE chunked, identity", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, identity\r\n\r\n", 501},
        {"TE identity", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: identity\r\n\r\n", 501},
        {"TE gzip, chunked", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"TE chunked with param", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked;x=1\r\n\r\n", 501},
        {"TE xchunked", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: xchunked\r\n\r\n", 501},
        {"TE empty", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding:\r\n\r\n", 400},
        {"TE space before colon", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding : chunked\r\n\r\n", 400},
        {"two TE", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"TE obs-fold", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding:\r\n chunked\r\n\r\n", 400},
        {"duplicate CL same", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400},
        {"duplicate CL different", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
        {"CL list", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5, 5\r\n\r\n", 400},
        {"CL plus sign", "POST / HTTP/1.1\r\n" + h + "Content-Length: +5\r\n\r\n", 400},
        {"CL minus sign", "POST / HTTP/1.1\r\n" + h + "Content-Length: -5\r\n\r\n", 400},
        {"CL inner space", "POST / HTTP/1.1\r\n" + h + "Content-Length: 5 5\r\n\r\n", 400},
        {"CL hex", "POST / HTTP/1.1\r\n" + h + "Content-Length: 0x5\r\n\r\n", 400},
        {"CL empty", "POST / HTTP/1.1\r\n" + h + "Content-Length:\r\n\r\n", 400},
        {"CL above 2^62", "POST / HTTP/1.1\r\n" + h + "Content-Length: 4611686018427387905\r\n\r\n", 400},
        {"CL overflow", "POST / HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999999\r\n\r\n", 400},
        {"CL space before colon", "POST / HTTP/1.1\r\n" + h + "Content-Length : 5\r\n\r\n", 400},
        // Content where origins do not look for it: read as a request of its own.
        {"GET with content", "GET / HTTP/1.1\r\n" + h + "Content-Length: 35\r\n\r\n", 400},
        {"GET chunked", "GET / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n", 400},
        {"HEAD with content", "HEAD / HTTP/1.1\r\n" + h + "Content-Length: 1\r\n\r\n", 400},
        {"OPTIONS chunked", "OPTIONS * HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n", 400},
        // Line syntax.
        {"obs-fold", "GET / HTTP/1.1\r\n" + h + "X-A: a\r\n b\r\n\r\n", 400},
        {"obs-fold HTAB", "GET / HTTP/1.1\r\n" + h + "X-A: a\r\n\tb\r\n\r\n", 400},
        {"first field folded", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400},
        {"bare CR in value", "GET / HTTP/1.1\r\n" + h + "X-A: a\rb\r\n\r\n", 400},
        {"bare CR before CRLF", "GET / HTTP/1.1\r\nHost: h\r\r\n\r\n", 400},
        {"bare CR as terminator", "GET / HTTP/1.1\r\nHost: h\r\r\r", 400},
        {"bare LF request line", "GET / HTTP/1.1\nHost: h\r\n\r\n", 400},
        {"bare LF field", "GET / HTTP/1.1\r\nHost: h\n\r\n", 400},
        {"bare LF terminator", "GET / HTTP/1.1\r\nHost: h\r\n\n", 400},
        {"NUL in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n"s, 400},
        {"NUL in target", "GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n"s, 400},
        {"DEL in value", "GET / HTTP/1.1\r\n" + h + "X-A: a\x7f\r\n\r\n", 400},
        {"control in value", "GET / HTTP/1.1\r\n" + h + "X-A: a\x01\r\n\r\n", 400},
        {"field without colon", "GET / HTTP/1.1\r\n" + h + "X-A\r\n\r\n", 400},
        {"space before colon", "GET / HTTP/1.1\r\n" + h + "X-A : v\r\n\r\n", 400},
        {"empty field name", "GET / HTTP/1.1\r\n" + h + ": v\r\n\r\n", 400},
        {"non-token field name", "GET / HTTP/1.1\r\n" + h + "X(A): v\r\n\r\n", 400},
        {"leading empty line", "\r\nGET / HTTP/1.1\r\n" + h + "\r\n", 400},
        {"leading bare LF", "\nGET / HTTP/1.1\r\n" + h + "\r\n", 400},
        // Host.
        {"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
        {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400},
        {"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400},
        {"Host list", "GET / HTTP/1.1\r\nHost: a.com, b.com\r\n\r\n", 400},
        {"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
        {"Host userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
        {"Host percent", "GET / HTTP/1.1\r\nHost: a%2eb\r\n\r\n", 400},
        {"Host empty port", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", 400},
        {"Host port zero", "GET / HTTP/1.1\r\nHost: a:0\r\n\r\n", 400},
        {"Host port too big", "GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", 400},
        {"Host two ports", "GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", 400},
        {"Host unclosed IPv6", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400},
        {"Host bad IPv6", "GET / HTTP/1.1\r\nHost: [zz::1]\r\n\r\n", 400},
        {"Host IPv6 zone", "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", 400},
        {"Host bare IPv6", "GET / HTTP/1.1\r\nHost: ::1\r\n\r\n", 400},
        {"Host short IPv4", "GET / HTTP/1.1\r\nHost: 127.1\r\n\r\n", 400},
        {"Host hex IPv4", "GET / HTTP/1.1\r\nHost: 0x7f.0.0.1\r\n\r\n", 400},
        {"Host integer IPv4", "GET / HTTP/1.1\r\nHost: 2130706433\r\n\r\n", 400},
        {"Host octal IPv4", "GET / HTTP/1.1\r\nHost: 0177.0.0.1\r\n\r\n", 400},
        {"Host bad IPv4", "GET / HTTP/1.1\r\nHost: 1.2.3.256\r\n\r\n", 400},
        {"Host empty label", "GET / HTTP/1.1\r\nHost: a..b\r\n\r\n", 400},
        {"Host leading dot", "GET / HTTP/1.1\r\nHost: .a\r\n\r\n", 400},
        // Request line.
        {"lowercase method", "get / HTTP/1.1\r\n" + h + "\r\n", 501},
        {"unknown method", "FOO / HTTP/1.1\r\n" + h + "\r\n", 501},
        {"CONNECT", "CONNECT h:443 HTTP/1.1\r\n" + h + "\r\n", 501},
        {"TRACE", "TRACE / HTTP/1.1\r\n" + h + "\r\n", 501},
        {"non-token method", "G(T / HTTP/1.1\r\n" + h + "\r\n", 400},
        {"HTTP/2.0", "GET / HTTP/2.0\r\n" + h + "\r\n", 505},
        {"HTTP/1.2", "GET / HTTP/1.2\r\n" + h + "\r\n", 505},
        {"HTTP/0.9", "GET / HTTP/0.9\r\n" + h + "\r\n", 505},
        {"lowercase version", "GET / http/1.1\r\n" + h + "\r\n", 400},
        {"version HTTP/11", "GET / HTTP/11\r\n" + h + "\r\n", 400},
        {"version HTTP/1.10", "GET / HTTP/1.10\r\n" + h + "\r\n", 400},
        {"no version", "GET /\r\n" + h + "\r\n", 400},
        {"trailing space", "GET / HTTP/1.1 \r\n" + h + "\r\n", 400},
        {"double space", "GET  / HTTP/1.1\r\n" + h + "\r\n", 400},
        {"space in target", "GET /a b HTTP/1.1\r\n" + h + "\r\n", 400},
        {"tab separator", "GET\t/ HTTP/1.1\r\n" + h + "\r\n", 400},
        {"leading space", " GET / HTTP/1.1\r\n" + h + "\r\n", 400},
        {"asterisk with GET", "GET * HTTP/1.1\r\n" + h + "\r\n", 400},
        {"relative target", "GET a/b HTTP/1.1\r\n" + h + "\r\n", 400},
        {"fragment", "GET /a#b HTTP/1.1\r\n" + h + "\r\n", 400},
        {"non-ASCII target", "GET /caf\xC3\xA9 HTTP/1.1\r\n" + h + "\r\n", 400},
        {"https absolute-form", "GET https://h/ HTTP/1.1\r\n" + h + "\r\n", 400},
        {"authority differs from Host", "GET http://evil/ HTTP/1.1\r\n" + h + "\r\n", 400},
        {"authority port differs", "GET http://h:81/ HTTP/1.1\r\n" + h + "\r\n", 400},
        {"authority userinfo", "GET http://u@h/ HTTP/1.1\r\n" + h + "\r\n", 400},
        {"empty authority", "GET http:///x HTTP/1.1\r\n" + h + "\r\n", 400},
        // Semantics.
        {"Expect other", "GET / HTTP/1.1\r\n" + h + "Expect: 200-ok\r\n\r\n", 417},
        {"Connection non-token", "GET / HTTP/1.1\r\n" + h + "Connection: a b\r\n\r\n", 400},
    };
}

bool same_head(const RequestHead& a, const RequestHead& b)
{
    if (a.headers.size() != b.headers.size())
        return false;
    for (std::size_t i = 0; i < a.headers.size(); ++i)
        if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value)
            return false;
    return a.method == b.method && a.target == b.target && a.minor_version == b.minor_version && a.host == b.host &&
           a.body == b.body && a.content_length == b.content_length && a.keep_alive == b.keep_alive &&
           a.expect_continue == b.expect_continue && a.upgrade == b.upgrade;
}

RequestHead parse_ok(const std::string& input)
{
    auto r = parse_request_head(input);
    REQUIRE_MESSAGE(r.has_value(), r.error().reason);
    REQUIRE(r->has_value());
    CHECK((*r)->second == input.size());
    return (*r)->first;
}

} // namespace

TEST_CASE("http request: valid heads parse at every byte split")
{
    for (const auto& c : valid_requests()) {
        CAPTURE(c.name);
        const auto full = parse_request_head(c.input);
        REQUIRE_MESSAGE(full.has_value(), full.error().reason);
        REQUIRE(full->has_value());
        CHECK((*full)->second == c.input.size());
        const auto& head = (*full)->first;

        for (std::size_t i = 0; i < c.input.size(); ++i) {
            CAPTURE(i);
            const auto partial = parse_request_head(std::string_view(c.input).substr(0, i));
            REQUIRE(partial.has_value());
            CHECK_FALSE(partial->has_value());
        }

        // Bytes after the head (a body or the next pipelined request) are not part of it.
        const auto with_next = parse_request_head(c.input + pipelined);
        REQUIRE(with_next.has_value());
        REQUIRE(with_next->has_value());
        CHECK((*with_next)->second == c.input.size());
        CHECK(same_head((*with_next)->first, head));
    }
}

TEST_CASE("http request: invalid heads are rejected with the right status")
{
    for (const auto& c : invalid_requests()) {
        CAPTURE(c.name);
        const auto r = parse_request_head(c.input);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().status == c.status);
        CHECK_FALSE(r.error().reason.empty());
        // No prefix of a bad head may be taken for a good one.
        for (std::size_t i = 0; i < c.input.size(); ++i) {
            const auto partial = parse_request_head(std::string_view(c.input).substr(0, i));
            CHECK((!partial.has_value() || !partial->has_value()));
        }
    }
}

TEST_CASE("http request: errors that no later byte can fix are reported before the head ends")
{
    for (const std::string& prefix : std::vector<std::string>{"GET / HTTP/1.1\nHo", "GET / HTTP/1.1\r\nHost: h\rX", "\r", "\n",
                                      "GET /\0"s, "GET / HTTP/1.1\r\nX: \x7f"}) {
        CAPTURE(prefix);
        const auto r = parse_request_head(prefix);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().status == 400);
    }
}

TEST_CASE("http request: size limits")
{
    SUBCASE("no end within max_head_bytes")
    {
        const std::string input = "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(40 * 1024, 'a');
        const auto r = parse_request_head(input);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().status == 431);
        // Just below the limit it is still waiting for more.
        const auto waiting = parse_request_head(std::string_view(input).substr(0, 32 * 1024 - 1));
        REQUIRE(waiting.has_value());
        CHECK_FALSE(waiting->has_value());
    }
    SUBCASE("complete head over the limit")
    {
        const std::string input = "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(40 * 1024, 'a') + "\r\n\r\n";
        const auto r = parse_request_head(input);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().status == 431);
    }
    SUBCASE("head of exactly max_head_bytes is accepted, one more is not")
    {
        const std::string input = "GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789\r\n\r\n";
        Limits limits;
        limits.max_head_bytes = input.size();
        const auto ok = parse_request_head(input, limits);
        REQUIRE(ok.has_value());
        CHECK(ok->has_value());
        limits.max_head_bytes = input.size() - 1;
        const auto too_big = parse_request_head(input, limits);
        REQUIRE_FALSE(too_big.has_value());
        CHECK(too_big.error().status == 431);
    }
    SUBCASE("too many header fields")
    {
        std::string input = "GET / HTTP/1.1\r\nHost: h\r\n";
        for (int i = 0; i < 99; ++i)
            input += "X-" + std::to_string(i) + ": v\r\n";
        CHECK(parse_request_head(input + "\r\n").has_value()); // 100 fields
        input += "X-Last: v\r\n\r\n";                           // 101 fields
        const auto r = parse_request_head(input);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().status == 431);
    }
}

TEST_CASE("http request: parsed fields")
{
    SUBCASE("plain GET")
    {
        const auto head = parse_ok("GET /a?b HTTP/1.1\r\nHost: Example.com:8080\r\nX-A:  v 1 \t\r\n\r\n");
        CHECK(head.method == "GET");
        CHECK(head.target == "/a?b");
        CHECK(head.minor_version == 1);
        CHECK(head.host == "Example.com:8080");
        CHECK(head.body == BodyKind::none);
        CHECK(head.keep_alive);
        CHECK_FALSE(head.expect_continue);
        CHECK_FALSE(head.upgrade);
        REQUIRE(head.headers.size() == 2);
        CHECK(head.headers[1].name == "X-A");
        CHECK(head.headers[1].value == "v 1");
        REQUIRE(head.find("x-a") != nullptr);
        CHECK(head.find("X-a")->value == "v 1");
        CHECK(head.find("HOST") == &head.headers[0]);
        CHECK(head.find("missing") == nullptr);
    }
    SUBCASE("framing")
    {
        auto head = parse_ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0012\r\n\r\n");
        CHECK(head.body == BodyKind::content_length);
        CHECK(head.content_length == 12);
        head = parse_ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4611686018427387904\r\n\r\n");
        CHECK(head.content_length == (std::uint64_t{1} << 62));
        head = parse_ok("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED\r\n\r\n");
        CHECK(head.body == BodyKind::chunked);
        head = parse_ok("POST / HTTP/1.1\r\nHost: h\r\n\r\n");
        CHECK(head.body == BodyKind::none);
    }
    SUBCASE("keep-alive")
    {
        CHECK(parse_ok("GET / HTTP/1.1\r\nHost: h\r\n\r\n").keep_alive);
        CHECK_FALSE(parse_ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive);
        CHECK_FALSE(parse_ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: X-A, CLOSE\r\n\r\n").keep_alive);
        CHECK_FALSE(parse_ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n").keep_alive);
        CHECK(parse_ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        CHECK_FALSE(parse_ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
        CHECK(parse_ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        CHECK_FALSE(parse_ok("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
    }
    SUBCASE("expect and upgrade")
    {
        CHECK(parse_ok("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n").expect_continue);
        CHECK_FALSE(parse_ok("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
        CHECK(parse_ok("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n").upgrade);
        CHECK(parse_ok("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n").upgrade);
    }
    SUBCASE("host from the target only for HTTP/1.0 without Host")
    {
        CHECK(parse_ok("GET http://example.com:8080/x HTTP/1.0\r\n\r\n").host == "example.com:8080");
        CHECK(parse_ok("GET / HTTP/1.0\r\n\r\n").host.empty());
        CHECK(parse_ok("GET /x HTTP/1.0\r\nHost: a\r\n\r\n").host == "a");
        const auto head = parse_ok("GET http://a/x HTTP/1.1\r\nHost: A\r\n\r\n");
        CHECK(head.target == "http://a/x");
        CHECK(head.host == "A");
    }
}

namespace {

using pinfold::http::HeadScan;
using pinfold::http::RequestParse;

bool same_result(const RequestParse& a, const RequestParse& b)
{
    return pinfold::test::same_parse(a, b, [](const auto& x, const auto& y) {
        return x.second == y.second && same_head(x.first, y.first);
    });
}

bool finished(const RequestParse& r) { return !r || r->has_value(); }

// The proxy parses a buffer that grows read by read and passes a HeadScan so
// that bytes already scanned are not scanned again. Whatever the pieces,
// each call must answer exactly what a fresh parse of the same bytes does.
void check_incremental(const std::string& input, const Limits& limits = {})
{
    const std::string_view all(input);
    {
        HeadScan scan;
        for (std::size_t i = 0; i <= all.size(); ++i) {
            CAPTURE(i);
            const auto inc = parse_request_head(all.substr(0, i), limits, &scan);
            REQUIRE(same_result(inc, parse_request_head(all.substr(0, i), limits)));
            if (finished(inc)) {
                CHECK(scan.checked == 0);
                break;
            }
        }
    }
    for (std::size_t k = 0; k <= all.size(); ++k) {
        CAPTURE(k);
        HeadScan scan;
        const auto first = parse_request_head(all.substr(0, k), limits, &scan);
        REQUIRE(same_result(first, parse_request_head(all.substr(0, k), limits)));
        if (finished(first))
            continue;
        REQUIRE(same_result(parse_request_head(all, limits, &scan), parse_request_head(all, limits)));
    }
}

} // namespace

TEST_CASE("http request: incremental parsing answers as a fresh parse, byte by byte and at every 2-way split")
{
    for (const auto& c : valid_requests()) {
        CAPTURE(c.name);
        check_incremental(c.input);
        check_incremental(c.input + pipelined);
        check_incremental(c.input + "hello");
    }
    for (const auto& c : invalid_requests()) {
        CAPTURE(c.name);
        check_incremental(c.input);
    }
    for (const std::string& prefix : std::vector<std::string>{"GET / HTTP/1.1\nHo", "GET / HTTP/1.1\r\nHost: h\rX", "\r",
                                                              "\n", "GET /\0"s, "GET / HTTP/1.1\r\nX: \x7f", "GET / \r\r\n"}) {
        CAPTURE(prefix);
        check_incremental(prefix);
    }
    SUBCASE("size limit reached between two calls")
    {
        Limits limits;
        limits.max_head_bytes = 48;
        check_incremental("GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(60, 'a') + "\r\n\r\n", limits);
        const std::string exact = "GET / HTTP/1.1\r\nHost: h\r\nX: 0123456789\r\n\r\n";
        limits.max_head_bytes = exact.size();
        check_incremental(exact, limits);
        check_incremental(exact + pipelined, limits);
        limits.max_head_bytes = exact.size() - 1;
        check_incremental(exact, limits);
        limits.max_head_bytes = exact.size() - 2;   // ends on the final CR
        check_incremental(exact, limits);
    }
    SUBCASE("a scan state from a longer buffer restarts on a shorter one")
    {
        const std::string input = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        HeadScan scan;
        REQUIRE(same_result(parse_request_head(std::string_view(input).substr(0, 20), {}, &scan),
                            parse_request_head(std::string_view(input).substr(0, 20))));
        CHECK(scan.checked == 20);
        const std::string other = "GET /\x01";
        REQUIRE(same_result(parse_request_head(other, {}, &scan), parse_request_head(other)));
    }
}

TEST_CASE("http request: pipelined requests with bodies, fed in pieces, parse as one-shot parses do")
{
    // A stream of requests, bodies by Content-Length, consumed the way the
    // proxy does: append a read, parse with the kept scan, on a head drop it
    // and its body from the front and start a fresh scan.
    const std::vector<std::string> requests = {
        "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        "GET /b HTTP/1.1\r\nHost: h\r\n\r\n",
        "PUT /c HTTP/1.1\r\nHost: h\r\nContent-Length: 14\r\n\r\n\r\n\r\nGET / HTTP",
        "GET /d HTTP/1.1\r\nHost: h\r\nX-A: v\r\n\r\n",
        "GET /e HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n",   // bad: the stream ends in a 400
    };
    std::string stream;
    for (const auto& r : requests)
        stream += r;
    for (std::size_t piece = 1; piece <= 9; ++piece) {
        CAPTURE(piece);
        std::string buffer;
        HeadScan scan;
        std::uint64_t body_left = 0;
        std::size_t next = 0;   // index into requests
        std::size_t offset = 0; // of the current request in stream
        bool failed = false;
        for (std::size_t at = 0; at < stream.size() && !failed; at += piece) {
            buffer.append(stream, at, piece);
            for (;;) {
                if (body_left > 0) {
                    const auto n = std::min<std::uint64_t>(body_left, buffer.size());
                    buffer.erase(0, n);
                    body_left -= n;
                    if (body_left > 0)
                        break;
                }
                const auto r = parse_request_head(buffer, {}, &scan);
                const auto fresh = parse_request_head(std::string_view(stream).substr(offset));
                if (!r) {
                    REQUIRE_FALSE(fresh.has_value());
                    CHECK(r.error().reason == fresh.error().reason);
                    CHECK(next == requests.size() - 1);
                    failed = true;
                    break;
                }
                if (!r->has_value())
                    break;
                REQUIRE(fresh.has_value());
                REQUIRE(fresh->has_value());
                CHECK(same_result(r, fresh));
                const auto& [head, used] = **r;
                buffer.erase(0, used);
                scan = {};
                body_left = head.body == BodyKind::content_length ? head.content_length : 0;
                offset += requests[next].size();
                ++next;
            }
        }
        CHECK(failed);
    }
}

namespace {

// The head scanner as first written: one byte at a time, no skipping. The
// parser's word-at-a-time scan must agree with it on every input.
struct ReferenceScan {
    std::string error;              // non-empty: rejected with this reason
    std::optional<std::size_t> end; // else: the head's end, or nullopt (need more)
};

ReferenceScan reference_scan(std::string_view buf)
{
    if (!buf.empty() && (buf[0] == '\r' || buf[0] == '\n'))
        return {"empty line before start line", {}};
    for (std::size_t i = 0; i < buf.size(); ++i) {
        const auto c = static_cast<unsigned char>(buf[i]);
        if (c == '\n') {
            if (buf[i - 1] != '\r')
                return {"bare LF in head", {}};
            if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
                return {"", i + 1};
        } else if (c == '\r') {
            if (i + 1 < buf.size() && buf[i + 1] != '\n')
                return {"bare CR in head", {}};
        } else if (c != '\t' && (c < 0x20 || c == 0x7f)) {
            return {"control character in head", {}};
        }
    }
    return {"", {}};
}

} // namespace

TEST_CASE("http request: the head scan agrees with a byte-at-a-time reference on random and mutated heads")
{
    std::mt19937 random(20261123);
    const std::string alphabet = "GET /aZ:.-\r\n\t \x01\x1f\x7f\x80\xff"s + '\0';
    auto pick = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(random); };
    std::vector<std::string> inputs;
    for (int k = 0; k < 3000; ++k) {
        std::string s;
        const std::size_t length = 1 + pick(90);
        for (std::size_t i = 0; i < length; ++i)
            s += alphabet[pick(alphabet.size())];
        inputs.push_back(std::move(s));
    }
    const auto valid = valid_requests();
    for (int k = 0; k < 3000; ++k) {
        std::string s = valid[pick(valid.size())].input + pipelined;
        for (std::size_t m = 1 + pick(2); m > 0; --m)
            s[pick(s.size())] = alphabet[pick(alphabet.size())];
        inputs.push_back(std::move(s));
    }
    for (std::size_t k = 0; k < inputs.size(); ++k) {
        const std::string& input = inputs[k];
        CAPTURE(input);
        const auto ref = reference_scan(input);
        const auto r = parse_request_head(input);
        if (!ref.error.empty()) {
            REQUIRE_FALSE(r.has_value());
            CHECK(r.error().reason == ref.error);
        } else if (!ref.end) {
            REQUIRE(r.has_value());
            CHECK_FALSE(r->has_value());
        } else if (r.has_value()) {
            REQUIRE(r->has_value());
            CHECK((*r)->second == *ref.end);
        } else {
            // Refused for what the head says, not by the scanner.
            CHECK(r.error().reason.find(" in head") == std::string::npos);
            CHECK(r.error().reason != "empty line before start line");
        }
        if (k % 40 == 0)
            check_incremental(input);
    }
}
