// The head sent upstream: hop-by-hop fields gone, order kept, framing
// re-emitted from what was validated.

#include "http/parser.hpp"

#include <doctest/doctest.h>

#include <string>

namespace {

using pinfold::http::parse_request_head;
using pinfold::http::RequestHead;
using pinfold::http::serialize_request_head;

RequestHead parse(const std::string& input)
{
    auto r = parse_request_head(input);
    REQUIRE_MESSAGE(r.has_value(), r.error().reason);
    REQUIRE(r->has_value());
    return (*r)->first;
}

} // namespace

TEST_CASE("http serialize: drops hop-by-hop fields, keeps order, re-emits framing")
{
    const auto head = parse("POST http://h/p?q HTTP/1.1\r\n"
                            "Host: h\r\n"
                            "Connection: keep-alive, X-Secret , x-other\r\n"
                            "X-A: 1\r\n"
                            "Keep-Alive: timeout=5\r\n"
                            "X-Secret: s\r\n"
                            "TE: trailers\r\n"
                            "Content-Length:  7 \r\n"
                            "Trailer: X-T\r\n"
                            "Upgrade: foo\r\n"
                            "Proxy-Authorization: Basic eA==\r\n"
                            "Proxy-Connection: keep-alive\r\n"
                            "X-Other: o\r\n"
                            "x-b:\t2\r\n"
                            "Authorization: Bearer t\r\n"
                            "\r\n");
    CHECK(serialize_request_head(head, "/p?q") == "POST /p?q HTTP/1.1\r\n"
                                                  "Host: h\r\n"
                                                  "X-A: 1\r\n"
                                                  "x-b: 2\r\n"
                                                  "Authorization: Bearer t\r\n"
                                                  "Content-Length: 7\r\n"
                                                  "\r\n");
}

TEST_CASE("http serialize: chunked and body-less requests")
{
    auto head = parse("PUT /x HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nHost: h\r\nX-A: a\r\n\r\n");
    CHECK(serialize_request_head(head, "/x") == "PUT /x HTTP/1.1\r\nHost: h\r\nX-A: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    head = parse("GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(serialize_request_head(head, "/y") == "GET /y HTTP/1.1\r\nHost: h\r\n\r\n");
    head = parse("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    CHECK(serialize_request_head(head, "/x") == "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
}

TEST_CASE("http serialize: Host survives being named in Connection")
{
    const auto head = parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: host, content-length\r\n\r\n");
    CHECK(serialize_request_head(head, "/") == "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
}

TEST_CASE("http serialize: HTTP/1.0 becomes 1.1")
{
    auto head = parse("GET http://example.com/a HTTP/1.0\r\nAccept: */*\r\n\r\n");
    CHECK(serialize_request_head(head, "/a") == "GET /a HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");
    head = parse("POST /a HTTP/1.0\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
    CHECK(serialize_request_head(head, "/a") == "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n");
    head = parse("POST /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
    CHECK(serialize_request_head(head, "/a") ==
          "POST /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
}

TEST_CASE("http serialize: a target that could inject a line is refused")
{
    const auto head = parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(serialize_request_head(head, "").empty());
    CHECK(serialize_request_head(head, "/a b").empty());
    CHECK(serialize_request_head(head, "/a\r\nX-Evil: 1").empty());
    CHECK(serialize_request_head(head, "/caf\xC3\xA9").empty());
}

TEST_CASE("http serialize: output parses back to the same request")
{
    const auto head = parse("DELETE /r HTTP/1.1\r\nHost: [::1]:8080\r\nX-A: v 1\r\nConnection: close\r\nX-B: \r\n\r\n");
    const auto wire = serialize_request_head(head, head.target);
    const auto again = parse(wire);
    CHECK(again.method == head.method);
    CHECK(again.target == head.target);
    CHECK(again.host == head.host);
    REQUIRE(again.headers.size() == 3);
    CHECK(again.headers[1].name == "X-A");
    CHECK(again.headers[2].name == "X-B");
    CHECK(again.headers[2].value.empty());
}
