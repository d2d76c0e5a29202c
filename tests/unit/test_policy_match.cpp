// Matching: globs, hosts, ports, methods, and first-match-wins across the
// per-host candidate lists of the compiled index.

#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "policy/path_glob.hpp"
#include "policy/policy.hpp"

using namespace pinfold::policy;

namespace {

CompiledPolicy compile_yaml(std::string_view yaml)
{
    auto policy = parse_policy(yaml, "t.yaml");
    REQUIRE_MESSAGE(policy.has_value(), policy.error().message);
    auto compiled = CompiledPolicy::compile(std::move(*policy));
    REQUIRE_MESSAGE(compiled.has_value(), compiled.error().message);
    return std::move(*compiled);
}

// A policy whose rules are these endpoints, in order, all allowing unless
// the endpoint is prefixed with "deny ".
CompiledPolicy compile_endpoints(const std::vector<std::string>& endpoints)
{
    std::string yaml = "name: t\nrules:\n";
    for (std::size_t i = 0; i < endpoints.size(); ++i) {
        std::string_view endpoint = endpoints[i];
        bool deny = endpoint.starts_with("deny ");
        if (deny)
            endpoint.remove_prefix(5);
        yaml += "  - name: r" + std::to_string(i) + "\n    endpoint: \"" + std::string(endpoint) + "\"\n";
        if (deny)
            yaml += "    action: deny\n";
    }
    return compile_yaml(yaml);
}

Decision decide(const CompiledPolicy& policy, std::string_view method, std::string_view scheme,
                std::string_view host, std::uint16_t port, std::string_view target)
{
    auto normal = normalize_target(target);
    REQUIRE_MESSAGE(normal.has_value(), normal.error().message);
    return policy.decide(Request{scheme, host, port, method, normal->path});
}

Decision get(const CompiledPolicy& policy, std::string_view host, std::string_view target)
{
    return decide(policy, "GET", "https", host, 443, target);
}

bool glob_matches(std::string_view glob, std::string_view path)
{
    auto compiled = PathGlob::compile(glob);
    REQUIRE_MESSAGE(compiled.has_value(), compiled.error().message);
    std::vector<std::string_view> segments;
    PathGlob::split_segments(path, segments);
    return compiled->matches(segments);
}

} // namespace

TEST_CASE("path globs: '*' within a segment, '**' over whole segments")
{
    struct Case {
        std::string_view glob, path;
        bool matches;
    };
    const Case cases[] = {
        {"/", "/", true},
        {"/", "/a", false},
        {"/a", "/a", true},
        {"/a", "/a/", false},
        {"/a", "/A", false},
        {"/a/", "/a/", true},
        {"/a/", "/a", false},
        {"/a/*", "/a/b", true},
        {"/a/*", "/a/", true},  // '*' may match nothing, even a whole segment
        {"/a/*", "/a", false},
        {"/a/*", "/a/b/c", false},
        {"/a/*.git", "/a/x.git", true},
        {"/a/*.git", "/a/.git", true},
        {"/a/*.git", "/a/x.gitx", false},
        {"/a/*.git", "/a/x/y.git", false},
        {"/a/b*c*d", "/a/bxcyd", true},
        {"/a/b*c*d", "/a/bcd", true},
        {"/a/b*c*d", "/a/bdc", false},
        {"/a/b*c*d", "/a/bc", false},
        {"/a*a", "/a", false},  // prefix and suffix may not overlap
        {"/a*a", "/aa", true},
        {"/*x*", "/x", true},
        {"/*x*", "/y", false},
        {"/**", "/", true},
        {"/**", "/a/b/c", true},
        {"/a/**", "/a", true},  // zero segments
        {"/a/**", "/a/", true},
        {"/a/**", "/a/b/c", true},
        {"/a/**", "/ab", false},
        {"/a/**", "/b/a", false},
        {"/**/x", "/x", true},
        {"/**/x", "/a/b/x", true},
        {"/**/x", "/a/x/y", false},
        {"/a/**/b/**/c", "/a/b/c", true},
        {"/a/**/b/**/c", "/a/x/b/y/z/c", true},
        {"/a/**/b/**/c", "/a/b/b/c/c", true},
        {"/a/**/b/**/c", "/a/c", false},
        {"/a/**/b/**/c", "/a/b/x", false},
        {"/a/**/", "/a/", true},
        {"/a/**/", "/a/b/", true},
        {"/a/**/", "/a/b", false},
        {"/**/*.diff", "/o/r/pull/1.diff", true},
        {"/repos/*/*/issues/*", "/repos/o/r/issues/1", true},
        {"/repos/*/*/issues/*", "/repos/o/r/issues/1/comments", false},
        {"/repos/*/*/issues/*", "/repos/o/issues/1", false},
        {"/a%3A", "/a%3A", true},
        {"/a%3A", "/a:", false},  // reserved characters keep their escapes
    };
    for (const Case& c : cases) {
        CAPTURE(c.glob);
        CAPTURE(c.path);
        CHECK(glob_matches(c.glob, c.path) == c.matches);
    }
}

TEST_CASE("PathGlob::compile refuses globs that are not normalised")
{
    CHECK_FALSE(PathGlob::compile("").has_value());
    CHECK_FALSE(PathGlob::compile("a").has_value());
    CHECK_FALSE(PathGlob::compile("/%41").has_value());
    CHECK_FALSE(PathGlob::compile("/a%3a").has_value());
    CHECK_FALSE(PathGlob::compile("/a//b").has_value());
    CHECK_FALSE(PathGlob::compile("/a/./b").has_value());
    CHECK_FALSE(PathGlob::compile("/a**").has_value());
    CHECK_FALSE(PathGlob::compile("/a?b").has_value());
    CHECK(PathGlob::compile("/a%3A/*/**").has_value());
}

TEST_CASE("hosts: exact, wildcard, IP literals")
{
    auto policy = compile_endpoints({
        "https://api.example.com/**",
        "https://*.wild.example/**",
        "https://192.0.2.1/**",
        "https://[2001:db8::1]/**",
    });
    CHECK(get(policy, "api.example.com", "/x").rule_index == 0);
    CHECK(get(policy, "API.Example.COM.", "/x").rule_index == 0);  // canonicalised defensively
    CHECK_FALSE(get(policy, "example.com", "/x").allowed);
    CHECK_FALSE(get(policy, "x.api.example.com", "/x").allowed);

    CHECK_FALSE(get(policy, "wild.example", "/x").allowed);  // the apex is not covered
    CHECK(get(policy, "a.wild.example", "/x").rule_index == 1);
    CHECK(get(policy, "a.b.c.wild.example", "/x").rule_index == 1);
    CHECK_FALSE(get(policy, "awild.example", "/x").allowed);
    CHECK_FALSE(get(policy, "a.wild.example.evil", "/x").allowed);

    CHECK(get(policy, "192.0.2.1", "/x").rule_index == 2);
    CHECK_FALSE(get(policy, "192.0.2.10", "/x").allowed);
    CHECK_FALSE(get(policy, "0300.0.2.1", "/x").allowed);
    CHECK(get(policy, "2001:db8::1", "/x").rule_index == 3);
    CHECK(get(policy, "2001:DB8:0::1", "/x").rule_index == 3);
    CHECK(get(policy, "[2001:db8::1]", "/x").rule_index == 3);
    CHECK_FALSE(get(policy, "2001:db8::2", "/x").allowed);

    auto bad = get(policy, "bad_host", "/x");
    CHECK_FALSE(bad.allowed);
    CHECK(bad.reason == "host is neither a valid DNS name nor an IP address");
}

TEST_CASE("ports and schemes must match; default ports apply")
{
    auto policy = compile_endpoints({
        "https://h.example/a",
        "http://h.example/b",
        "https://h.example:8443/c",
        "http://h.example:443/d",
    });
    CHECK(decide(policy, "GET", "https", "h.example", 443, "/a").allowed);
    CHECK_FALSE(decide(policy, "GET", "https", "h.example", 80, "/a").allowed);
    CHECK_FALSE(decide(policy, "GET", "http", "h.example", 443, "/a").allowed);
    CHECK(decide(policy, "GET", "http", "h.example", 80, "/b").allowed);
    CHECK_FALSE(decide(policy, "GET", "https", "h.example", 443, "/b").allowed);
    CHECK(decide(policy, "GET", "https", "h.example", 8443, "/c").allowed);
    CHECK_FALSE(decide(policy, "GET", "https", "h.example", 443, "/c").allowed);
    CHECK(decide(policy, "GET", "http", "h.example", 443, "/d").allowed);
    CHECK_FALSE(decide(policy, "GET", "https", "h.example", 443, "/d").allowed);
    CHECK(decide(policy, "GET", "ftp", "h.example", 443, "/a").reason == "scheme is not http or https");
}

TEST_CASE("methods: listed ones only; default is every known method")
{
    auto policy = compile_yaml(R"(name: t
rules:
  - endpoint: https://h.example/ro
    methods: [GET, HEAD]
  - endpoint: https://h.example/any
)");
    CHECK(decide(policy, "GET", "https", "h.example", 443, "/ro").allowed);
    CHECK(decide(policy, "HEAD", "https", "h.example", 443, "/ro").allowed);
    CHECK_FALSE(decide(policy, "POST", "https", "h.example", 443, "/ro").allowed);
    CHECK_FALSE(decide(policy, "get", "https", "h.example", 443, "/ro").allowed);
    for (std::string_view method : known_methods)
        CHECK(decide(policy, method, "https", "h.example", 443, "/any").allowed);
    CHECK_FALSE(decide(policy, "TRACE", "https", "h.example", 443, "/any").allowed);
    CHECK_FALSE(decide(policy, "CONNECT", "https", "h.example", 443, "/any").allowed);
    CHECK_FALSE(decide(policy, "PROPFIND", "https", "h.example", 443, "/any").allowed);
}

TEST_CASE("decisions: reasons, rule names, no match")
{
    auto policy = compile_yaml(R"(name: t
rules:
  - name: read-issues
    endpoint: https://api.github.com/repos/*/*/issues/*
    methods: [GET]
  - name: no-admin
    endpoint: http://h.example:8080/admin/**
    action: deny
  - endpoint: https://[::1]/x
)");
    auto allowed = get(policy, "api.github.com", "/repos/o/r/issues/1");
    CHECK(allowed.allowed);
    CHECK(allowed.rule_index == 0);
    CHECK(allowed.rule_name == "read-issues");
    CHECK(allowed.reason == "rule 'read-issues' allows GET https://api.github.com/repos/o/r/issues/1");

    auto denied = decide(policy, "POST", "http", "h.example", 8080, "/admin/../admin/x");
    CHECK_FALSE(denied.allowed);
    CHECK(denied.rule_index == 1);
    CHECK(denied.rule_name == "no-admin");
    CHECK(denied.reason == "rule 'no-admin' denies POST http://h.example:8080/admin/x");

    auto ipv6 = get(policy, "::1", "/x");
    CHECK(ipv6.rule_name == "rules[2]");
    CHECK(ipv6.reason == "rule 'rules[2]' allows GET https://[::1]/x");

    auto none = get(policy, "api.github.com", "/repos/o/r/pulls/1");
    CHECK_FALSE(none.allowed);
    CHECK(none.rule_index == -1);
    CHECK(none.rule_name.empty());
    CHECK(none.reason == "no rule matched");

    // Paths must arrive normalised; anything else is refused, not guessed.
    auto raw = policy.decide(Request{"https", "api.github.com", 443, "GET", "/repos/o/r/issues/x/../1"});
    CHECK_FALSE(raw.allowed);
    CHECK(raw.reason == "path is not normalised");
    CHECK_FALSE(policy.decide(Request{"https", "api.github.com", 443, "GET", ""}).allowed);
}

TEST_CASE("first match wins across exact and wildcard lists")
{
    SUBCASE("wildcard deny before exact allow")
    {
        auto policy = compile_endpoints({"deny https://*.example.com/secret/**", "https://api.example.com/**"});
        auto secret = get(policy, "api.example.com", "/secret/x");
        CHECK_FALSE(secret.allowed);
        CHECK(secret.rule_index == 0);
        CHECK(get(policy, "api.example.com", "/public").rule_index == 1);
    }
    SUBCASE("exact allow before wildcard deny")
    {
        auto policy = compile_endpoints({"https://api.example.com/**", "deny https://*.example.com/**"});
        CHECK(get(policy, "api.example.com", "/secret/x").allowed);
        auto other = get(policy, "www.example.com", "/");
        CHECK_FALSE(other.allowed);
        CHECK(other.rule_index == 1);
    }
    SUBCASE("between two wildcard suffixes")
    {
        auto policy = compile_endpoints({"deny https://*.example.com/**", "https://*.b.example.com/**"});
        CHECK(get(policy, "a.b.example.com", "/").rule_index == 0);
        auto reversed = compile_endpoints({"https://*.b.example.com/**", "deny https://*.example.com/**"});
        CHECK(get(reversed, "a.b.example.com", "/").rule_index == 0);
        CHECK(get(reversed, "b.example.com", "/").rule_index == 1);
    }
    SUBCASE("a later rule for the same host does not override an earlier one")
    {
        auto policy = compile_endpoints({"https://h.example/a/*", "deny https://h.example/**", "https://h.example/b"});
        CHECK(get(policy, "h.example", "/a/1").allowed);
        CHECK(get(policy, "h.example", "/b").rule_index == 1);
    }
}

TEST_CASE("the index agrees with a rule-by-rule scan")
{
    // Reference: a single-rule policy per rule says whether that rule alone
    // matches; the first that does must be what the full index picks.
    const std::vector<std::string> endpoints = {
        "https://*.example.com/a/**",     "deny https://x.y.example.com/a/b", "https://*.y.example.com/**",
        "http://example.com/**",          "https://example.com/*",            "deny https://*.com/**",
        "https://x.y.example.com/**",     "https://10.0.0.1/**",              "https://[::1]:8443/**",
        "https://*.y.example.com/a/*/c",
    };
    auto policy = compile_endpoints(endpoints);
    std::vector<CompiledPolicy> singles;
    for (const std::string& endpoint : endpoints)
        singles.push_back(compile_endpoints({endpoint}));

    const std::string_view hosts[] = {"example.com", "y.example.com", "x.y.example.com", "z.x.y.example.com",
                                      "other.com",   "10.0.0.1",      "::1",             "example.org"};
    const std::string_view paths[] = {"/", "/a", "/a/b", "/a/b/c", "/b"};
    const std::string_view schemes[] = {"http", "https"};
    const std::uint16_t ports[] = {80, 443, 8443};
    int checked = 0;
    std::set<int> seen;
    for (auto host : hosts)
        for (auto path : paths)
            for (auto scheme : schemes)
                for (auto port : ports) {
                    int expected = -1;
                    for (std::size_t i = 0; i < singles.size() && expected < 0; ++i)
                        if (decide(singles[i], "GET", scheme, host, port, path).rule_index == 0)
                            expected = static_cast<int>(i);
                    CAPTURE(host);
                    CAPTURE(path);
                    CAPTURE(scheme);
                    CAPTURE(port);
                    CHECK(decide(policy, "GET", scheme, host, port, path).rule_index == expected);
                    seen.insert(expected);
                    ++checked;
                }
    CHECK(checked == 240);
    CHECK(seen.size() >= 8);  // the matrix really exercises most rules
}

TEST_CASE("10 000 rules compile and decide correctly")
{
    constexpr int count = 10000;
    std::string yaml = "name: big\nrules:\n";
    yaml.reserve(count * 80);
    for (int i = 0; i < count; ++i)
        yaml += "  - name: r" + std::to_string(i) + "\n    endpoint: https://h" + std::to_string(i) +
                ".example.com/r/*\n    methods: [GET]\n";
    yaml += "  - name: catch-all\n    endpoint: https://*.example.com/**\n    action: deny\n";
    auto policy = compile_yaml(yaml);
    REQUIRE(policy.policy().rules.size() == count + 1);

    for (int i : {0, 1, 4999, 9999}) {
        std::string host = "h" + std::to_string(i) + ".example.com";
        auto decision = get(policy, host, "/r/x");
        CHECK(decision.allowed);
        CHECK(decision.rule_index == i);
        CHECK(decision.rule_name == "r" + std::to_string(i));
    }
    auto deep = get(policy, "h5.example.com", "/r/x/y");
    CHECK_FALSE(deep.allowed);
    CHECK(deep.rule_name == "catch-all");
    CHECK(get(policy, "h10000.example.com", "/r/x").rule_name == "catch-all");
    CHECK(get(policy, "h1.example.org", "/r/x").reason == "no rule matched");
}

TEST_CASE("CompiledPolicy::compile re-validates hand-built policies")
{
    auto base = parse_policy("name: t\nrules:\n  - endpoint: https://h.example/a/*\n", "t.yaml");
    REQUIRE(base.has_value());
    CHECK(CompiledPolicy::compile(*base).has_value());

    auto broken = [&](auto&& mutate) {
        Policy policy = *base;
        mutate(policy.rules[0]);
        auto compiled = CompiledPolicy::compile(std::move(policy));
        REQUIRE_FALSE(compiled.has_value());
        return compiled.error().message;
    };
    CHECK(broken([](Rule& r) { r.endpoint.path_glob = "/a/../b"; }).starts_with("t.yaml:3: rule 'rules[0]': "));
    CHECK(broken([](Rule& r) { r.endpoint.host = "H.example"; }) ==
          "t.yaml:3: rule 'rules[0]': host 'H.example' is not in canonical form");
    CHECK(broken([](Rule& r) { r.endpoint.host = "0:0::1"; }) ==
          "t.yaml:3: rule 'rules[0]': host '0:0::1' is not in canonical form");
    CHECK(broken([](Rule& r) { r.methods = {"get"}; }) == "t.yaml:3: rule 'rules[0]': unknown method 'get'");
    CHECK(broken([](Rule& r) { r.endpoint.scheme = "ftp"; }) ==
          "t.yaml:3: rule 'rules[0]': scheme 'ftp' is not 'http' or 'https'");
    CHECK(broken([](Rule& r) { r.endpoint.port = 0; }) == "t.yaml:3: rule 'rules[0]': port 0");

    // An empty policy is legal once compiled: it denies everything.
    Policy empty;
    auto compiled = CompiledPolicy::compile(empty);
    REQUIRE(compiled.has_value());
    CHECK(compiled->decide(Request{"https", "h.example", 443, "GET", "/"}).reason == "no rule matched");
}

TEST_CASE("describe lists every rule and the warnings")
{
    auto policy = parse_policy(R"(name: t
description: Two rules
rules:
  - name: read
    endpoint: https://h.example/a/*
    methods: [GET, HEAD]
    binaries: [gh]
  - endpoint: https://*.example.com/**
    action: deny
)",
                               "t.yaml");
    REQUIRE(policy.has_value());
    CHECK(describe(*policy) ==
          "policy 't' from t.yaml\n"
          "  Two rules\n"
          "  1. read: allow GET,HEAD https://h.example/a/* [binaries: gh]\n"
          "  2. rules[1]: deny ANY https://*.example.com/**\n"
          "  otherwise: deny\n");
}
