// Body framing: the decoder must claim exactly the body's bytes however the
// stream is cut, and never a byte of the next pipelined message.

#include "http/body_decoder.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace {

using pinfold::http::BodyDecoder;
using pinfold::http::BodyKind;
using pinfold::http::Limits;
using namespace std::string_literals;

const std::string next_request = "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";

struct Body {
    const char* name;
    BodyKind kind;
    std::uint64_t content_length;
    std::string bytes;
};

std::vector<Body> valid_bodies()
{
    return {
        {"content-length", BodyKind::content_length, 5, "hello"},
        {"content-length one", BodyKind::content_length, 1, "x"},
        {"content-length with CRLFs", BodyKind::content_length, 6, "\r\n0\r\n\r\n"s.substr(0, 6)},
        {"chunked simple", BodyKind::chunked, 0, "5\r\nhello\r\n0\r\n\r\n"},
        {"chunked empty", BodyKind::chunked, 0, "0\r\n\r\n"},
        {"chunked hex sizes", BodyKind::chunked, 0, "a\r\n0123456789\r\nB\r\n0123456789A\r\n0\r\n\r\n"},
        {"chunked leading zeros", BodyKind::chunked, 0, "0005\r\nhello\r\n000\r\n\r\n"},
        {"chunked binary data with CRLF inside", BodyKind::chunked, 0, "4\r\n\r\n\0\n\r\n0\r\n\r\n"s},
        {"chunked extensions", BodyKind::chunked, 0,
         "5;name=value;flag;q=\"a \\\" b;c\"\r\nhello\r\n3;x=\"\"\r\nabc\r\n0;last\r\n\r\n"},
        {"chunked trailers", BodyKind::chunked, 0,
         "3\r\nabc\r\n0\r\nX-Checksum: 1234\r\nX-Empty:\r\nX-Long-Trailer-Name-Beyond-Buffer: a\tb \xC3\xA9\r\n\r\n"},
    };
}

struct InvalidBody {
    const char* name;
    std::string bytes;
    int status;
    Limits limits;
};

std::vector<InvalidBody> invalid_chunked()
{
    Limits small_line;
    small_line.max_chunk_line = 16;
    Limits small_trailer;
    small_trailer.max_trailer_bytes = 20;
    Limits few_fields;
    few_fields.max_headers = 2;
    return {
        {"non-hex size", "g\r\n", 400, {}},
        {"empty size", "\r\n", 400, {}},
        {"negative size", "-5\r\nhello\r\n0\r\n\r\n", 400, {}},
        {"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", 400, {}},
        {"space after size", "5 \r\nhello\r\n0\r\n\r\n", 400, {}},
        {"space before ext", "5 ;a\r\nhello\r\n0\r\n\r\n", 400, {}},
        {"size overflow 2^64", "10000000000000000\r\n", 400, {}},
        {"size above 2^62", "4000000000000001\r\n", 400, {}},
        {"size LF only", "5\nhello\r\n0\r\n\r\n", 400, {}},
        {"size CR CR", "5\r\rhello\r\n0\r\n\r\n", 400, {}},
        {"data too long", "5\r\nhelloX\r\n0\r\n\r\n", 400, {}},
        {"data LF only", "5\r\nhello\n0\r\n\r\n", 400, {}},
        {"data CR only", "5\r\nhello\r0\r\n\r\n", 400, {}},
        {"data too short", "5\r\nhell\r\n0\r\n\r\n", 400, {}},
        {"empty ext name", "5;\r\nhello\r\n0\r\n\r\n", 400, {}},
        {"empty ext value", "5;a=\r\nhello\r\n0\r\n\r\n", 400, {}},
        {"ext space", "5;a b\r\nhello\r\n0\r\n\r\n", 400, {}},
        {"unterminated quoted ext", "5;a=\"x\r\nhello\r\n0\r\n\r\n", 400, {}},
        {"bytes after quoted ext", "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n", 400, {}},
        {"control in quoted ext", "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n", 400, {}},
        {"oversize chunk line", "5;" + std::string(2000, 'a') + "\r\nhello\r\n0\r\n\r\n", 400, {}},
        {"oversize leading zeros", std::string(20, '0') + "5\r\nhello\r\n0\r\n\r\n", 400, small_line},
        {"trailer without colon", "0\r\nX-A\r\n\r\n", 400, {}},
        {"trailer space before colon", "0\r\nX-A : v\r\n\r\n", 400, {}},
        {"trailer obs-fold", "0\r\nX-A: v\r\n w\r\n\r\n", 400, {}},
        {"trailer control", "0\r\nX-A: \x01\r\n\r\n", 400, {}},
        {"trailer NUL", "0\r\nX-A: a\0\r\n\r\n"s, 400, {}},
        {"trailer bare LF", "0\r\nX-A: v\n\r\n", 400, {}},
        {"trailer bare CR", "0\r\nX-A: v\rx\r\n\r\n", 400, {}},
        {"trailer Content-Length", "0\r\nContent-Length: 5\r\n\r\n", 400, {}},
        {"trailer Transfer-Encoding", "0\r\ntransfer-ENCODING: chunked\r\n\r\n", 400, {}},
        {"trailer Host", "0\r\nHost: evil\r\n\r\n", 400, {}},
        {"trailer Authorization", "0\r\nAuthorization: x\r\n\r\n", 400, {}},
        {"final bare CR", "0\r\n\rX", 400, {}},
        {"final bare LF", "0\r\n\n", 400, {}},
        {"trailer section too large", "0\r\nX-A: 0123456789012345\r\n\r\n", 431, small_trailer},
        {"too many trailers", "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431, few_fields},
    };
}

} // namespace

TEST_CASE("http body: every split consumes exactly the body")
{
    for (const auto& b : valid_bodies()) {
        CAPTURE(b.name);
        const std::string stream = b.bytes + next_request;
        const auto body_size = b.bytes.size();

        SUBCASE("whole")
        {
            BodyDecoder decoder(b.kind, b.content_length);
            const auto n = decoder.feed(stream);
            REQUIRE_MESSAGE(n.has_value(), n.error().reason);
            CHECK(*n == body_size);
            CHECK(decoder.done());
            const auto again = decoder.feed(next_request);
            REQUIRE(again.has_value());
            CHECK(*again == 0);
        }
        SUBCASE("two pieces, at every position")
        {
            for (std::size_t i = 0; i <= stream.size(); ++i) {
                CAPTURE(i);
                BodyDecoder decoder(b.kind, b.content_length);
                const auto first = decoder.feed(std::string_view(stream).substr(0, i));
                REQUIRE(first.has_value());
                CHECK(*first == std::min(i, body_size));
                CHECK(decoder.done() == (i >= body_size));
                const auto second = decoder.feed(std::string_view(stream).substr(*first));
                REQUIRE(second.has_value());
                CHECK(*first + *second == body_size);
                CHECK(decoder.done());
            }
        }
        SUBCASE("three pieces")
        {
            for (std::size_t i = 0; i <= body_size; ++i)
                for (std::size_t j = i; j <= body_size; ++j) {
                    BodyDecoder decoder(b.kind, b.content_length);
                    std::size_t total = 0;
                    for (auto piece : {std::string_view(stream).substr(0, i),
                                       std::string_view(stream).substr(i, j - i),
                                       std::string_view(stream).substr(j)}) {
                        const auto n = decoder.feed(piece);
                        REQUIRE(n.has_value());
                        total += *n;
                    }
                    CHECK(total == body_size);
                    CHECK(decoder.done());
                }
        }
        SUBCASE("byte by byte")
        {
            BodyDecoder decoder(b.kind, b.content_length);
            std::size_t total = 0;
            for (std::size_t i = 0; i < stream.size(); ++i) {
                CHECK(decoder.done() == (i >= body_size));
                const auto n = decoder.feed(std::string_view(stream).substr(i, 1));
                REQUIRE(n.has_value());
                CHECK(*n == (i < body_size ? 1u : 0u));
                total += *n;
            }
            CHECK(total == body_size);
            CHECK(decoder.done());
        }
    }
}

TEST_CASE("http body: no body and until close")
{
    BodyDecoder none(BodyKind::none, 0);
    CHECK(none.done());
    auto n = none.feed(next_request);
    REQUIRE(n.has_value());
    CHECK(*n == 0);

    BodyDecoder zero(BodyKind::content_length, 0);
    CHECK(zero.done());
    n = zero.feed(next_request);
    REQUIRE(n.has_value());
    CHECK(*n == 0);

    BodyDecoder until_close(BodyKind::until_close, 0);
    for (int i = 0; i < 3; ++i) {
        n = until_close.feed(next_request);
        REQUIRE(n.has_value());
        CHECK(*n == next_request.size());
        CHECK_FALSE(until_close.done());
    }
    n = until_close.feed("");
    REQUIRE(n.has_value());
    CHECK(*n == 0);
    CHECK_FALSE(until_close.done());
}

TEST_CASE("http body: large content-length is counted, not buffered")
{
    BodyDecoder decoder(BodyKind::content_length, std::uint64_t{1} << 40);
    const std::string block(64 * 1024, 'x');
    for (int i = 0; i < 16; ++i) {
        const auto n = decoder.feed(block);
        REQUIRE(n.has_value());
        CHECK(*n == block.size());
    }
    CHECK_FALSE(decoder.done());
}

TEST_CASE("http body: large chunk sizes are accepted up to 2^62")
{
    BodyDecoder decoder(BodyKind::chunked, 0);
    const auto n = decoder.feed("4000000000000000\r\nabc");
    REQUIRE(n.has_value());
    CHECK(*n == 21);
    CHECK_FALSE(decoder.done());
}

TEST_CASE("http body: chunk line of exactly max_chunk_line is accepted")
{
    Limits limits;
    limits.max_chunk_line = 8;
    BodyDecoder ok(BodyKind::chunked, 0, limits);
    auto n = ok.feed("1;abcdef\r\nx\r\n0\r\n\r\n");
    REQUIRE(n.has_value());
    CHECK(ok.done());
    BodyDecoder too_long(BodyKind::chunked, 0, limits);
    n = too_long.feed("1;abcdefg\r\nx\r\n0\r\n\r\n");
    REQUIRE_FALSE(n.has_value());
    CHECK(n.error().status == 400);
}

TEST_CASE("http body: invalid chunked bodies fail however they are split")
{
    for (const auto& b : invalid_chunked()) {
        CAPTURE(b.name);
        {
            BodyDecoder decoder(BodyKind::chunked, 0, b.limits);
            const auto n = decoder.feed(b.bytes);
            REQUIRE_FALSE(n.has_value());
            CHECK(n.error().status == b.status);
            CHECK_FALSE(decoder.done());
            // Failure is sticky: the connection must not be resynchronised.
            const auto again = decoder.feed("0\r\n\r\n");
            REQUIRE_FALSE(again.has_value());
            CHECK(again.error().status == b.status);
            CHECK(again.error().reason == n.error().reason);
        }
        {
            BodyDecoder decoder(BodyKind::chunked, 0, b.limits);
            bool failed = false;
            for (std::size_t i = 0; i < b.bytes.size() && !failed; ++i) {
                const auto n = decoder.feed(std::string_view(b.bytes).substr(i, 1));
                if (!n) {
                    failed = true;
                    CHECK(n.error().status == b.status);
                } else {
                    CHECK(*n == 1);
                }
            }
            CHECK(failed);
            CHECK_FALSE(decoder.done());
        }
    }
}
