// Response head parsing: which responses carry a body and how it is framed.

#include "http/parser.hpp"
#include "parse_result_compare.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using pinfold::http::BodyKind;
using pinfold::http::parse_response_head;
using pinfold::http::ResponseHead;

struct ValidResponse {
    const char* name;
    std::string input;
    const char* method;
    int status;
    BodyKind body;
    std::uint64_t content_length;
    bool keep_alive;
};

std::vector<ValidResponse> valid_responses()
{
    return {
        {"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "GET", 200, BodyKind::content_length, 5, true},
        {"HEAD ignores content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD", 200, BodyKind::none, 0, true},
        {"HEAD ignores chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD", 200, BodyKind::none, 0, true},
        {"204", "HTTP/1.1 204 No Content\r\n\r\n", "DELETE", 204, BodyKind::none, 0, true},
        {"304 with content-length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET", 304, BodyKind::none, 0, true},
        {"100", "HTTP/1.1 100 Continue\r\n\r\n", "POST", 100, BodyKind::none, 0, true},
        {"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "GET", 101, BodyKind::none, 0, true},
        {"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", 200, BodyKind::chunked, 0, true},
        {"gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", "GET", 200, BodyKind::chunked, 0, true},
        {"gzip then chunked in two fields", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", 200, BodyKind::chunked, 0, true},
        {"final coding not chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET", 200, BodyKind::until_close, 0, false},
        {"until close", "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", "GET", 200, BodyKind::until_close, 0, false},
        {"no reason", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", "GET", 404, BodyKind::content_length, 0, true},
        {"empty reason", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", "GET", 404, BodyKind::content_length, 0, true},
        {"reason with spaces and tab", "HTTP/1.1 500 Very\tBad Thing\r\nContent-Length: 1\r\n\r\n", "POST", 500, BodyKind::content_length, 1, true},
        {"repeated equal content-length", "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", "GET", 200, BodyKind::content_length, 7, true},
        {"content-length list of equal values", "HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n", "GET", 200, BodyKind::content_length, 7, true},
        {"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", "GET", 200, BodyKind::content_length, 2, false},
        {"1.0 default close", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", "GET", 200, BodyKind::content_length, 2, false},
        {"1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", "GET", 200, BodyKind::content_length, 2, true},
        {"1.0 keep-alive without length", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", "GET", 200, BodyKind::until_close, 0, false},
    };
}

struct InvalidResponse {
    const char* name;
    std::string input;
};

std::vector<InvalidResponse> invalid_responses()
{
    return {
        {"CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"},
        {"differing CL", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"},
        {"differing CL list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n"},
        {"bad CL", "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n"},
        {"empty CL", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n"},
        {"chunked not last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"},
        {"chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"},
        {"empty TE", "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n"},
        {"TE in 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
        {"HTTP/2", "HTTP/2 200 OK\r\n\r\n"},
        {"HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n"},
        {"two-digit status", "HTTP/1.1 20 OK\r\n\r\n"},
        {"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n"},
        {"status 099", "HTTP/1.1 099 X\r\n\r\n"},
        {"status 600", "HTTP/1.1 600 X\r\n\r\n"},
        {"letter in status", "HTTP/1.1 2x0 OK\r\n\r\n"},
        {"double space", "HTTP/1.1  200 OK\r\n\r\n"},
        {"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"},
        {"bare CR", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"},
        {"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"},
        {"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"},
        {"control in reason", "HTTP/1.1 200 O\x01K\r\n\r\n"},
        {"leading empty line", "\r\nHTTP/1.1 200 OK\r\n\r\n"},
        {"huge head", "HTTP/1.1 200 OK\r\nX: " + std::string(40 * 1024, 'a')},
    };
}

} // namespace

TEST_CASE("http response: valid heads, framing, every byte split")
{
    for (const auto& c : valid_responses()) {
        CAPTURE(c.name);
        const auto r = parse_response_head(c.input, c.method);
        REQUIRE_MESSAGE(r.has_value(), r.error().reason);
        REQUIRE(r->has_value());
        const auto& [head, size] = **r;
        CHECK(size == c.input.size());
        CHECK(head.status == c.status);
        CHECK(head.body == c.body);
        CHECK(head.content_length == c.content_length);
        CHECK(head.keep_alive == c.keep_alive);

        for (std::size_t i = 0; i < c.input.size(); ++i) {
            CAPTURE(i);
            const auto partial = parse_response_head(std::string_view(c.input).substr(0, i), c.method);
            REQUIRE(partial.has_value());
            CHECK_FALSE(partial->has_value());
        }
        const auto with_body = parse_response_head(c.input + "hello", c.method);
        REQUIRE(with_body.has_value());
        REQUIRE(with_body->has_value());
        CHECK((*with_body)->second == c.input.size());
    }
}

TEST_CASE("http response: invalid heads are 502")
{
    for (const auto& c : invalid_responses()) {
        CAPTURE(c.name);
        const auto r = parse_response_head(c.input, "GET");
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().status == 502);
    }
}

TEST_CASE("http response: fields are kept in order")
{
    const auto r = parse_response_head("HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n", "GET");
    REQUIRE(r.has_value());
    REQUIRE(r->has_value());
    const ResponseHead& head = (*r)->first;
    REQUIRE(head.headers.size() == 3);
    CHECK(head.headers[0].value == "a=1");
    CHECK(head.headers[1].value == "b=2");
    CHECK(head.find("content-length") == &head.headers[2]);
    CHECK(head.minor_version == 1);
}

namespace {

using pinfold::http::HeadScan;
using pinfold::http::ResponseParse;

bool same_result(const ResponseParse& a, const ResponseParse& b)
{
    return pinfold::test::same_parse(a, b, [](const auto& first, const auto& second) {
        const auto& [x, x_size] = first;
        const auto& [y, y_size] = second;
        if (x.headers.size() != y.headers.size())
            return false;
        for (std::size_t i = 0; i < x.headers.size(); ++i)
            if (x.headers[i].name != y.headers[i].name || x.headers[i].value != y.headers[i].value)
                return false;
        return x_size == y_size && x.status == y.status && x.minor_version == y.minor_version && x.body == y.body &&
               x.content_length == y.content_length && x.keep_alive == y.keep_alive;
    });
}

// As for requests: a growing buffer parsed with a kept HeadScan answers
// exactly what a fresh parse does, byte by byte and at every 2-way split.
void check_incremental(const std::string& input, const char* method)
{
    const std::string_view all(input);
    HeadScan scan;
    for (std::size_t i = 0; i <= all.size(); ++i) {
        CAPTURE(i);
        const auto inc = parse_response_head(all.substr(0, i), method, {}, &scan);
        REQUIRE(same_result(inc, parse_response_head(all.substr(0, i), method)));
        if (!inc || inc->has_value()) {
            CHECK(scan.checked == 0);
            break;
        }
    }
    for (std::size_t k = 0; k <= all.size(); ++k) {
        CAPTURE(k);
        HeadScan split;
        const auto first = parse_response_head(all.substr(0, k), method, {}, &split);
        REQUIRE(same_result(first, parse_response_head(all.substr(0, k), method)));
        if (!first || first->has_value())
            continue;
        REQUIRE(same_result(parse_response_head(all, method, {}, &split), parse_response_head(all, method)));
    }
}

} // namespace

TEST_CASE("http response: incremental parsing answers as a fresh parse, byte by byte and at every 2-way split")
{
    for (const auto& c : valid_responses()) {
        CAPTURE(c.name);
        check_incremental(c.input, c.method);
        check_incremental(c.input + "hello", c.method);
        check_incremental("HTTP/1.1 100 Continue\r\n\r\n" + c.input, c.method);
    }
    for (const auto& c : invalid_responses()) {
        CAPTURE(c.name);
        if (c.input.size() > 4096)
            continue;   // the size limit is covered for requests with a small limit
        check_incremental(c.input, "GET");
    }
}

TEST_CASE("http response: parse_response_framing answers as parse_response_head, without the fields")
{
    using pinfold::http::parse_response_framing;
    auto same_but_fields = [](const ResponseParse& full, const ResponseParse& framing) {
        return pinfold::test::same_parse(full, framing, [](const auto& first, const auto& second) {
            const auto& [x, x_size] = first;
            const auto& [y, y_size] = second;
            return y.headers.empty() && x_size == y_size && x.status == y.status &&
                   x.minor_version == y.minor_version && x.body == y.body && x.content_length == y.content_length &&
                   x.keep_alive == y.keep_alive;
        });
    };
    std::vector<std::pair<std::string, std::string>> inputs;
    for (const auto& c : valid_responses())
        inputs.emplace_back(c.input + "body", c.method);
    for (const auto& c : invalid_responses())
        inputs.emplace_back(c.input, "GET");
    // Errors of both kinds in one head: a bad line after a bad Content-Length
    // must give the same (line) error from both.
    inputs.emplace_back("HTTP/1.1 200 OK\r\nContent-Length: x\r\nBad Line\r\n\r\n", "GET");
    inputs.emplace_back("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\nX: a\r\n b\r\n\r\n", "GET");
    std::string many = "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n";
    for (int i = 0; i < 120; ++i)
        many += "X-" + std::to_string(i) + ": v\r\n";
    inputs.emplace_back(many + "\r\n", "GET");
    std::mt19937 random(7);
    const std::string alphabet = "HTP/1.0 2:\r\n\tCcLlx,-" "\x01\x7f";
    for (int k = 0; k < 3000; ++k) {
        std::string s = valid_responses()[random() % valid_responses().size()].input;
        for (int m = 0; m < 2; ++m)
            s[random() % s.size()] = alphabet[random() % alphabet.size()];
        inputs.emplace_back(s, k % 3 == 0 ? "HEAD" : "GET");
    }
    for (const auto& [input, method] : inputs) {
        CAPTURE(input);
        CHECK(same_but_fields(parse_response_head(input, method), parse_response_framing(input, method)));
        HeadScan a, b;
        for (std::size_t i = 0; i <= input.size(); i += 7) {
            const auto prefix = std::string_view(input).substr(0, i);
            REQUIRE(same_but_fields(parse_response_head(prefix, method, {}, &a),
                                    parse_response_framing(prefix, method, {}, &b)));
        }
    }
}
