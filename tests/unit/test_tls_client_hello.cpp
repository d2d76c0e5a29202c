// ClientHello reading: hand-built hellos (SNI, ALPN, ECH, hostile shapes),
// a real one from OpenSSL, and every byte split of each valid one.

#include "tls/client_hello.hpp"

#include <doctest/doctest.h>

#include <openssl/ssl.h>

#include <string>
#include <vector>

#include "tls/certificate_authority.hpp"
#include "tls/tls_stream.hpp"

namespace {

using pinfold::tls::ClientHello;
using pinfold::tls::ClientHelloParser;
using pinfold::tls::HelloStatus;

std::string u16(std::size_t v) { return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)}; }
std::string u24(std::size_t v) { return std::string(1, static_cast<char>(v >> 16)) + u16(v & 0xffff); }
std::string vec16(const std::string& body) { return u16(body.size()) + body; }

std::string extension(std::uint16_t type, const std::string& data) { return u16(type) + vec16(data); }

std::string sni(const std::string& name) { return extension(0, vec16(std::string(1, '\0') + vec16(name))); }

std::string alpn(const std::vector<std::string>& protocols)
{
    std::string list;
    for (const auto& p : protocols)
        list += std::string(1, static_cast<char>(p.size())) + p;
    return extension(16, vec16(list));
}

std::string hello_body(const std::string& extensions, bool with_extensions = true)
{
    std::string body = "\x03\x03" + std::string(32, 'r');
    body += std::string(1, '\0');                 // no session id
    body += vec16(std::string("\x13\x01", 2));    // one cipher suite
    body += std::string("\x01\x00", 2);           // null compression
    if (with_extensions)
        body += vec16(extensions);
    return body;
}

// The handshake message split over records of at most `record_size` bytes.
std::string records(const std::string& body, std::size_t record_size = 16384)
{
    std::string handshake = "\x01" + u24(body.size()) + body;
    std::string out;
    for (std::size_t at = 0; at < handshake.size(); at += record_size) {
        std::string part = handshake.substr(at, record_size);
        out += "\x16\x03\x01" + u16(part.size()) + part;
    }
    return out;
}

HelloStatus parse(const std::string& bytes, ClientHello& out, std::string* error = nullptr)
{
    return pinfold::tls::parse_client_hello(bytes, out, error);
}

// Every split into two pieces, and byte by byte, gives the same result.
void check_every_split(const std::string& bytes, const ClientHello& expected)
{
    for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
        ClientHelloParser p;
        HelloStatus first = p.feed(std::string_view(bytes).substr(0, cut));
        if (cut < bytes.size())
            REQUIRE(first == HelloStatus::need_more);
        REQUIRE(p.feed(std::string_view(bytes).substr(cut)) == HelloStatus::complete);
        CHECK(p.hello().server_name == expected.server_name);
        CHECK(p.hello().alpn == expected.alpn);
        CHECK(p.hello().encrypted_client_hello == expected.encrypted_client_hello);
    }
    ClientHelloParser p;
    for (char c : bytes)
        p.feed(std::string_view(&c, 1));
    CHECK(p.status() == HelloStatus::complete);
    CHECK(p.hello().server_name == expected.server_name);
}

} // namespace

TEST_CASE("ClientHello: SNI and ALPN, every byte split, several records")
{
    std::string exts = sni("API.GitHub.com") + alpn({"h2", "http/1.1"});
    for (std::size_t record_size : {16384u, 100u, 7u, 1u}) {
        std::string bytes = records(hello_body(exts), record_size);
        ClientHello h;
        REQUIRE(parse(bytes, h) == HelloStatus::complete);
        CHECK(h.server_name == "api.github.com");
        CHECK(h.alpn == std::vector<std::string>{"h2", "http/1.1"});
        CHECK_FALSE(h.encrypted_client_hello);
        if (record_size >= 100)
            check_every_split(bytes, h);
    }
}

TEST_CASE("ClientHello: no SNI, no extensions at all, ECH and ESNI")
{
    ClientHello h;
    REQUIRE(parse(records(hello_body(alpn({"http/1.1"}))), h) == HelloStatus::complete);
    CHECK_FALSE(h.server_name);
    REQUIRE(parse(records(hello_body("", false)), h) == HelloStatus::complete);
    CHECK_FALSE(h.server_name);
    CHECK(h.alpn.empty());

    std::string ech = sni("public.example") + extension(0xfe0d, std::string(40, 'e'));
    REQUIRE(parse(records(hello_body(ech)), h) == HelloStatus::complete);
    CHECK(h.encrypted_client_hello);
    CHECK(h.server_name == "public.example");
    check_every_split(records(hello_body(ech)), h);
    REQUIRE(parse(records(hello_body(extension(0xffce, "x"))), h) == HelloStatus::complete);
    CHECK(h.encrypted_client_hello);
}

TEST_CASE("ClientHello: truncated input waits, malformed input is refused")
{
    std::string good = records(hello_body(sni("a.example")));
    ClientHello h;
    for (std::size_t n = 0; n < good.size(); ++n)
        CHECK(parse(good.substr(0, n), h) == HelloStatus::need_more);

    struct Case {
        const char* name;
        std::string bytes;
    };
    std::vector<Case> bad = {
        {"not a handshake record", "\x17\x03\x03" + u16(5) + "hello"},
        {"HTTP", "GET / HTTP/1.1\r\n\r\n"},
        {"zero-length record", "\x16\x03\x01" + u16(0)},
        {"oversized record", "\x16\x03\x01" + u16(20000)},
        {"record version", "\x16\x09\x01" + u16(5) + "hello"},
        {"not a ClientHello", "\x16\x03\x01" + u16(5) + "\x02" + u24(1) + "x"},
        {"hello over the size bound", "\x16\x03\x01" + u16(4) + "\x01" + u24(40000)},
        {"truncated before extensions", records(hello_body("", false).substr(0, 30))},
        {"odd cipher suites", records("\x03\x03" + std::string(32, 'r') + std::string(1, '\0') + vec16("\x13") + "\x01\x00")},
        {"no compression", records("\x03\x03" + std::string(32, 'r') + std::string(1, '\0') + vec16("\x13\x01") + std::string(1, '\0'))},
        {"extensions length mismatch", records(hello_body(sni("a.example")) + "x")},
        {"extension truncated", records(hello_body(std::string("\x00\x00\x00\x10zz", 6)))},
        {"duplicate extension", records(hello_body(sni("a.example") + sni("b.example")))},
        {"two host names", records(hello_body(extension(0, vec16(std::string(1, '\0') + vec16("a.example") +
                                                                     std::string(1, '\0') + vec16("b.example")))))},
        {"empty host name", records(hello_body(sni("")))},
        {"host name with NUL", records(hello_body(sni(std::string("a\0b.example", 11))))},
        {"host name with space", records(hello_body(sni("a b.example")))},
        {"unknown name type", records(hello_body(extension(0, vec16("\x01" + vec16("a.example")))))},
        {"empty server_name list", records(hello_body(extension(0, vec16(""))))},
        {"empty ALPN protocol", records(hello_body(extension(16, vec16(std::string(1, '\0')))))},
        {"ALPN list overrun", records(hello_body(extension(16, vec16("\x09http/1.1"))))},
    };
    for (const auto& c : bad) {
        CAPTURE(c.name);
        std::string error;
        CHECK(parse(c.bytes, h, &error) == HelloStatus::malformed);
        CHECK_FALSE(error.empty());
    }
}

TEST_CASE("ClientHello: what OpenSSL really sends")
{
    auto ctx = pinfold::tls::make_upstream_context("");
    REQUIRE(ctx);
    auto stream = pinfold::tls::TlsStream::connect(ctx->get(), "Real.Example.org");
    REQUIRE(stream);
    std::string in, out, wire;
    REQUIRE((*stream)->pump(in, out, wire));
    REQUIRE_FALSE(wire.empty());
    ClientHello h;
    REQUIRE(parse(wire, h) == HelloStatus::complete);
    CHECK(h.server_name == "real.example.org");
    CHECK(h.alpn == std::vector<std::string>{"http/1.1"});
    check_every_split(wire, h);

    // An IP literal peer: no SNI at all (RFC 6066).
    auto by_ip = pinfold::tls::TlsStream::connect(ctx->get(), "192.0.2.7");
    REQUIRE(by_ip);
    wire.clear();
    REQUIRE((*by_ip)->pump(in, out, wire));
    REQUIRE(parse(wire, h) == HelloStatus::complete);
    CHECK_FALSE(h.server_name);
}
