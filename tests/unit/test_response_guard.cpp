// The guard on responses to requests with an injected secret: a reflected
// secret is caught wherever reads split it, no byte of it is ever released,
// and everything else comes out whole and in order, held back only while
// a tail could still become a secret.
#include <doctest/doctest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "policy/credentials.hpp"
#include "proxy/body_scan.hpp"
#include "proxy/response_guard.hpp"

using namespace pinfold;
using namespace pinfold::policy;
using namespace pinfold::proxy;

namespace {

constexpr const char* secret = "ghp_guardSECRET0123456789";

CredentialSet set_of(const char* type_block)
{
    ::setenv("PF_UNIT_GUARD_TOKEN", secret, 1);
    auto p = parse_provider(std::string("name: github\n") + type_block +
                                "source: env:PF_UNIT_GUARD_TOKEN\nsandbox_env: GITHUB_TOKEN\n",
                            "github.yaml");
    REQUIRE(p);
    REQUIRE(resolve_secret(*p));
    return CredentialSet({*p});
}

CredentialSet bearer_set()
{
    return set_of("type: header\nconfig:\n  header: Authorization\n  value_template: \"Bearer {{GITHUB_TOKEN}}\"\n"
                  "  placeholder: \"Bearer __GITHUB_TOKEN__\"\n");
}

// What one feed releases, or nullopt when it finds the secret.
std::optional<std::string> release_now(ResponseSecretGuard& guard, std::string_view payload, const Provider** leaked)
{
    std::string out;
    if (!guard.feed(payload, out, leaked))
        return std::nullopt;
    return out;
}

std::string rest(ResponseSecretGuard& guard)
{
    std::string out;
    guard.finish(out);
    return out;
}

// Feeds `body` split at `a` and `b`; returns what was released, or "LEAK".
std::string through(ResponseSecretGuard& guard, const std::string& body, std::size_t a, std::size_t b)
{
    std::string out;
    for (auto [from, to] : {std::pair{std::size_t{0}, a}, std::pair{a, b}, std::pair{b, body.size()}}) {
        const Provider* leaked = nullptr;
        auto part = release_now(guard, std::string_view(body).substr(from, to - from), &leaked);
        if (!part) {
            CHECK(leaked);
            CHECK(leaked->name == "github");
            return "LEAK";
        }
        // Never a byte of the secret's start while it could still complete.
        out += *part;
    }
    return out + rest(guard);
}

} // namespace

TEST_CASE("response guard: a reflected secret is caught at every split, and nothing of it is released first")
{
    CredentialSet set = bearer_set();
    std::string body = std::string("{\"headers\":{\"Authorization\":\"Bearer ") + secret + "\"}}";
    std::size_t start = body.find(secret);
    for (std::size_t a = 0; a <= body.size(); ++a) {
        for (std::size_t b = a; b <= body.size(); b += 3) {
            ResponseSecretGuard guard(set, {"github"});
            std::string released;
            bool caught = false;
            for (auto [from, to] : {std::pair{std::size_t{0}, a}, std::pair{a, b}, std::pair{b, body.size()}}) {
                const Provider* leaked = nullptr;
                auto part = release_now(guard, std::string_view(body).substr(from, to - from), &leaked);
                if (!part) {
                    caught = true;
                    break;
                }
                released += *part;
            }
            REQUIRE_MESSAGE(caught, "split at " << a << "," << b);
            // What went out before the catch stops short of the secret.
            CHECK(released.size() <= start);
        }
    }
}

TEST_CASE("response guard: bodies without the secret come out whole, even when they end like its start")
{
    CredentialSet set = bearer_set();
    for (std::string body : {std::string("plain text, nothing to see"), std::string("ends with ghp_guard"),
                             std::string("ghp_guardSECRET012345678"),   // one byte short
                             std::string(70000, 'x') + "ghp_"}) {
        for (std::size_t a = 0; a <= body.size(); a += 1 + body.size() / 40) {
            ResponseSecretGuard guard(set, {"github"});
            CHECK(through(guard, body, a, std::min(body.size(), a + 7)) == body);
        }
    }
}

TEST_CASE("response guard: only the tail that could start a secret waits")
{
    CredentialSet set = bearer_set();
    ResponseSecretGuard guard(set, {"github"});
    const Provider* leaked = nullptr;
    CHECK(*release_now(guard, "streamed line\n", &leaked) == "streamed line\n");   // nothing held
    CHECK(*release_now(guard, "next gh", &leaked) == "next ");                     // "gh" may be the start
    CHECK(*release_now(guard, "x", &leaked) == "ghx");                             // it was not
    CHECK(rest(guard).empty());
}

TEST_CASE("response guard: the head is checked whole; a provider not injected is not looked for")
{
    CredentialSet set = bearer_set();
    ResponseSecretGuard guard(set, {"github"});
    std::string head = std::string("HTTP/1.1 200 OK\r\nX-Echo: Bearer ") + secret + "\r\n\r\n";
    CHECK(guard.head_leak(head));
    CHECK_FALSE(guard.head_leak("HTTP/1.1 200 OK\r\nX-Echo: Bearer __GITHUB_TOKEN__\r\n\r\n"));
    ResponseSecretGuard none(set, {});
    CHECK_FALSE(none.head_leak(head));
    const Provider* leaked = nullptr;
    CHECK(release_now(none, head, &leaked));
}

TEST_CASE("response guard: a coding it cannot read through is named; identity and chunked are not")
{
    auto coding = [](const char* fields) {
        return ResponseSecretGuard::unreadable_coding(std::string("HTTP/1.1 200 OK\r\n") + fields + "\r\n");
    };
    CHECK(coding("Content-Encoding: gzip\r\n") == "Content-Encoding: gzip");
    CHECK(coding("content-encoding:  identity , br\r\n") == "Content-Encoding: br");
    CHECK(coding("X-A: 1\r\nTransfer-Encoding: gzip, chunked\r\n") == "Transfer-Encoding: gzip");
    CHECK(coding("Transfer-Encoding: chunked\r\nContent-Encoding: identity\r\n").empty());
    CHECK(coding("Content-Length: 3\r\n").empty());
    CHECK(coding("X-Content-Encoding: gzip\r\n").empty());
    // Bare LF line ends are read the same way.
    CHECK(ResponseSecretGuard::unreadable_coding("HTTP/1.1 200 OK\nContent-Encoding: deflate\n\n") ==
          "Content-Encoding: deflate");

    CredentialSet set = bearer_set();
    CHECK(ResponseSecretGuard(set, {"github"}).provider_names() == "'github'");
}

TEST_CASE("response guard: Basic auth is caught in its encoded header value too")
{
    CredentialSet set = set_of("type: basic\nconfig:\n  username: x-access-token\n  password_template: \"{{GITHUB_TOKEN}}\"\n"
                               "  placeholder: \"__GITHUB_TOKEN__\"\n");
    const Provider* p = set.find("github");
    REQUIRE(p);
    ResponseSecretGuard guard(set, {"github"});
    CHECK(guard.head_leak("X-Echo: " + p->header_value + "\r\n"));
    CHECK(guard.head_leak(std::string("raw ") + secret));
}

TEST_CASE("chunked payload: framing removed at any split, trailers are not payload")
{
    std::string wire = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: ghp_\r\n\r\n";
    for (std::size_t a = 0; a <= wire.size(); ++a) {
        ChunkedPayload chunks;
        std::string payload(chunks.feed(std::string_view(wire).substr(0, a)));
        payload += chunks.feed(std::string_view(wire).substr(a));
        CHECK(payload == "hello world");
    }
}
