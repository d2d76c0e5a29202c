// The per-request decision: Host consistency with the dialled address,
// then policy. Resolution is faked; no sockets.
#include <doctest/doctest.h>

#include "proxy/request_gate.hpp"
#include "proxy/resolver.hpp"

using namespace pinfold;
using namespace pinfold::proxy;

namespace {

class FakeResolver final : public Resolver {
public:
    std::map<std::string, std::vector<MappedAddress>> names;
    int calls = 0;
    Result<std::vector<MappedAddress>> resolve(const std::string& name) noexcept override
    {
        ++calls;
        if (auto it = names.find(name); it != names.end())
            return it->second;
        return fail("cannot resolve " + name);
    }
};

MappedAddress addr(std::string_view text) { return *parse_address(text); }

ConnectionOrigin dialled(std::string_view address, std::uint16_t port)
{
    ConnectionOrigin o;
    o.address = addr(address);
    o.port = port;
    o.sandbox_id = 7;
    return o;
}

http::RequestHead request(std::string method, std::string target, std::string host)
{
    http::RequestHead head;
    head.method = std::move(method);
    head.target = std::move(target);
    head.host = std::move(host);
    return head;
}

policy::CompiledPolicy compile(std::string_view yaml)
{
    auto parsed = policy::parse_policy(yaml, "test.yaml");
    REQUIRE(parsed);
    auto compiled = policy::CompiledPolicy::compile(std::move(*parsed));
    REQUIRE(compiled);
    return std::move(*compiled);
}

const char* policy_text = R"(name: gate
rules:
  - name: api
    endpoint: http://api.example/repos/*/*/issues/*
    methods: [GET]
  - name: loopback
    endpoint: http://127.0.0.1:8080/**
  - name: v6
    endpoint: http://[::1]:8080/**
)";

} // namespace

TEST_CASE("Host header parsing")
{
    CHECK(parse_host_header("Example.COM.", 80)->host == "example.com");
    CHECK(parse_host_header("example.com", 80)->port == 80);
    CHECK(parse_host_header("example.com:8080", 80)->port == 8080);
    CHECK(parse_host_header("[::1]:8080", 80)->host == "::1");
    CHECK(parse_host_header("[0:0::1]", 443)->host == "::1");
    CHECK_FALSE(parse_host_header("", 80));
    CHECK_FALSE(parse_host_header("a:", 80));
    CHECK_FALSE(parse_host_header("a:0", 80));
    CHECK_FALSE(parse_host_header("a:65536", 80));
    CHECK_FALSE(parse_host_header("a:8x", 80));
    CHECK_FALSE(parse_host_header("[::1", 80));
    CHECK_FALSE(parse_host_header("[::1]x", 80));
}

TEST_CASE("a name is allowed only when the dialled address is one of its addresses")
{
    auto policy = compile(policy_text);
    FakeResolver resolver;
    resolver.names["api.example"] = {addr("192.0.2.10"), addr("2001:db8::10")};

    auto ok = decide_request(&policy, resolver, dialled("192.0.2.10", 80),
                             request("GET", "/repos/a/b/issues/1", "api.example"), "http");
    CHECK(ok.allowed);
    CHECK(ok.rule == "api");
    CHECK(ok.upstream_target == "/repos/a/b/issues/1");

    auto v6 = decide_request(&policy, resolver, dialled("2001:db8::10", 80),
                             request("GET", "/repos/a/b/issues/1", "api.example"), "http");
    CHECK(v6.allowed);

    auto fronted = decide_request(&policy, resolver, dialled("198.51.100.1", 80),
                                  request("GET", "/repos/a/b/issues/1", "api.example"), "http");
    CHECK_FALSE(fronted.allowed);
    CHECK(fronted.reason.find("not an address of api.example") != std::string::npos);

    auto unresolvable = decide_request(&policy, resolver, dialled("192.0.2.10", 80),
                                       request("GET", "/repos/a/b/issues/1", "nowhere.example"), "http");
    CHECK_FALSE(unresolvable.allowed);
}

TEST_CASE("the Host port must equal the dialled port")
{
    auto policy = compile(policy_text);
    FakeResolver resolver;
    resolver.names["api.example"] = {addr("192.0.2.10")};
    auto d = decide_request(&policy, resolver, dialled("192.0.2.10", 8080),
                            request("GET", "/repos/a/b/issues/1", "api.example"), "http");
    CHECK_FALSE(d.allowed);
    CHECK(d.reason.find("differs from dialled port") != std::string::npos);
}

TEST_CASE("IP literal hosts must equal the dialled address, without resolving")
{
    auto policy = compile(policy_text);
    FakeResolver resolver;
    CHECK(decide_request(&policy, resolver, dialled("127.0.0.1", 8080), request("POST", "/x", "127.0.0.1:8080"),
                         "http")
              .allowed);
    CHECK(decide_request(&policy, resolver, dialled("::1", 8080), request("GET", "/x", "[::1]:8080"), "http")
              .allowed);
    auto other = decide_request(&policy, resolver, dialled("127.0.0.2", 8080),
                                request("GET", "/x", "127.0.0.1:8080"), "http");
    CHECK_FALSE(other.allowed);
    CHECK(resolver.calls == 0);
}

TEST_CASE("targets are normalised before matching and sent normalised")
{
    auto policy = compile(policy_text);
    FakeResolver resolver;
    resolver.names["api.example"] = {addr("192.0.2.10")};
    auto d = decide_request(&policy, resolver, dialled("192.0.2.10", 80),
                            request("GET", "//repos/a/./b/issues/%31?x=1", "api.example"), "http");
    CHECK(d.allowed);
    CHECK(d.path == "/repos/a/b/issues/1");
    CHECK(d.upstream_target == "/repos/a/b/issues/1?x=1");

    auto climb = decide_request(&policy, resolver, dialled("192.0.2.10", 80),
                                request("GET", "/repos/a/b/issues/1/../../../../admin", "api.example"), "http");
    CHECK_FALSE(climb.allowed);

    auto encoded_slash = decide_request(&policy, resolver, dialled("192.0.2.10", 80),
                                        request("GET", "/repos/a%2fb/c/issues/1", "api.example"), "http");
    CHECK_FALSE(encoded_slash.allowed);
    CHECK(encoded_slash.reason.find("request target refused") == 0);

    auto absolute = decide_request(&policy, resolver, dialled("192.0.2.10", 80),
                                   request("GET", "http://api.example/repos/a/b/issues/2", "api.example"), "http");
    CHECK(absolute.allowed);
    CHECK(absolute.upstream_target == "/repos/a/b/issues/2");
}

TEST_CASE("without a policy for the sandbox everything is denied")
{
    FakeResolver resolver;
    auto d = decide_request(nullptr, resolver, dialled("127.0.0.1", 8080), request("GET", "/", "127.0.0.1:8080"),
                            "http");
    CHECK_FALSE(d.allowed);
    CHECK(d.status == 403);
}

TEST_CASE("--host overrides")
{
    auto ok = parse_host_override("Allowed.Test=127.0.0.1,::1");
    REQUIRE(ok);
    CHECK(ok->first == "allowed.test");
    CHECK(ok->second.size() == 2);
    CHECK_FALSE(parse_host_override("=1.2.3.4"));
    CHECK_FALSE(parse_host_override("a="));
    CHECK_FALSE(parse_host_override("a=not-an-ip"));
    CHECK_FALSE(parse_host_override("a"));
}
