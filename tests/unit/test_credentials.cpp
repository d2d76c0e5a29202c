// Credential providers: template parsing, binding checks, the body
// scanner across splits, redaction, and the loader's all-or-nothing load.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "credential_setup.hpp"
#include "http/syntax.hpp"
#include "policy/credentials.hpp"
#include "policy/policy.hpp"
#include "proxy/credential_gate.hpp"

using namespace pinfold;
using namespace pinfold::policy;

namespace {

constexpr const char* github_yaml = R"(name: github
type: header
source: env:PF_UNIT_GITHUB_TOKEN
sandbox_env: GITHUB_TOKEN
config:
  header: Authorization
  value_template: "Bearer {{GITHUB_TOKEN}}"
  placeholder: "Bearer __GITHUB_TOKEN__"
)";

constexpr const char* secret = "ghp_realSECRETvalue0123456789";

CredentialSet github_set()
{
    ::setenv("PF_UNIT_GITHUB_TOKEN", secret, 1);
    auto p = parse_provider(github_yaml, "github.yaml");
    REQUIRE(p);
    REQUIRE(resolve_secret(*p));
    return CredentialSet({*p});
}

http::RequestHead head_with(std::vector<http::Header> headers, std::string target = "/repos")
{
    http::RequestHead head;
    head.method = "GET";
    head.target = std::move(target);
    head.host = "api.github.com";
    head.headers = std::move(headers);
    return head;
}

} // namespace

TEST_CASE("provider: the seed format parses; token, variable and default source follow from the template")
{
    auto p = parse_provider(R"(name: github
type: header
config:
  header: Authorization
  value_template: "Bearer {{GITHUB_TOKEN}}"
  placeholder: "Bearer __GITHUB_TOKEN__"
)",
                            "p.yaml");
    REQUIRE(p);
    CHECK(p->variable == "GITHUB_TOKEN");
    CHECK(p->token == "__GITHUB_TOKEN__");
    CHECK(p->source == "env:GITHUB_TOKEN");
    CHECK(p->sandbox_env.empty());
}

TEST_CASE("provider: errors name file, line, column and field")
{
    struct Case {
        const char* yaml;
        const char* expected;
    };
    const Case cases[] = {
        {"name: g\ntype: cookie\nconfig: {header: A, value_template: \"{{X}}\", placeholder: \"__XXXXXX__\"}\n",
         "p.yaml:2:7: field 'type'"},
        {"name: g\ntype: header\nconfig: {header: A, value_template: \"Bearer X\", placeholder: \"Bearer __XXXXXX__\"}\n",
         "field 'config.value_template': needs exactly one {{NAME}}"},
        {"name: g\ntype: header\nconfig: {header: A, value_template: \"{{X}} {{Y}}\", placeholder: \"__XXXXXX__\"}\n",
         "field 'config.value_template'"},
        {"name: g\ntype: header\nconfig: {header: A, value_template: \"Bearer {{X}}\", placeholder: \"token __XXXXXX__\"}\n",
         "field 'config.placeholder': must be the value_template"},
        {"name: g\ntype: header\nconfig: {header: A, value_template: \"Bearer {{X}}\", placeholder: \"Bearer __X__\"}\n",
         "at least 8 characters"},
        {"name: g\ntype: header\nconfig: {header: \"A B\", value_template: \"{{X}}\", placeholder: \"__XXXXXX__\"}\n",
         "field 'config.header'"},
        {"name: g\ntype: header\nsource: vault:x\nconfig: {header: A, value_template: \"{{X}}\", placeholder: \"__XXXXXX__\"}\n",
         "p.yaml:3:9: field 'source'"},
        {"name: g\ntype: header\nsource: file:relative\nconfig: {header: A, value_template: \"{{X}}\", placeholder: \"__XXXXXX__\"}\n",
         "absolute path"},
        {"name: g\ntype: header\nextra: 1\nconfig: {header: A, value_template: \"{{X}}\", placeholder: \"__XXXXXX__\"}\n",
         "p.yaml:3:1: field 'extra': unknown key"},
        {"name: G!\ntype: header\nconfig: {header: A, value_template: \"{{X}}\", placeholder: \"__XXXXXX__\"}\n",
         "field 'name'"},
        {"name: g\ntype: header\n", "field 'config': is required"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.yaml);
        auto p = parse_provider(c.yaml, "p.yaml");
        REQUIRE_FALSE(p);
        CHECK(p.error().message.find(c.expected) != std::string::npos);
    }
}

TEST_CASE("provider: secrets from env and file; missing or empty sources are errors")
{
    auto p = parse_provider(github_yaml, "g.yaml");
    REQUIRE(p);
    ::unsetenv("PF_UNIT_GITHUB_TOKEN");
    auto missing = resolve_secret(*p);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().message.find("not set") != std::string::npos);
    CHECK(p->secret.empty());

    char path[] = "/tmp/pf-unit-secret-XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, "s3cr3t-from-file\n", 17) == 17);
    ::close(fd);
    p->source = std::string("file:") + path;
    REQUIRE(resolve_secret(*p));
    CHECK(p->secret == "s3cr3t-from-file");
    CHECK(p->header_value == "Bearer s3cr3t-from-file");
    ::unlink(path);
    CHECK_FALSE(resolve_secret(*p));
}

TEST_CASE("credential set: serialises to the proxy and back")
{
    CredentialSet set = github_set();
    auto back = CredentialSet::parse(set.serialize());
    REQUIRE(back);
    REQUIRE(back->providers().size() == 1);
    CHECK(back->providers()[0].header_value == std::string("Bearer ") + secret);
    CHECK(back->providers()[0].token == "__GITHUB_TOKEN__");
    CHECK_FALSE(CredentialSet::parse("5:abc\n"));
}

TEST_CASE("binding: a request that gets the secret asks for the whole response, uncompressed; others are left alone")
{
    CredentialSet set = github_set();
    std::vector<std::string> bound{"github"};
    auto count = [](const http::RequestHead& h, std::string_view value) {
        std::size_t n = 0;
        for (const auto& header : h.headers)
            if (http::syntax::iequals(header.name, "accept-encoding")) {
                CHECK(header.value == value);
                ++n;
            }
        return n;
    };
    auto has = [](const http::RequestHead& h, std::string_view name) {
        return std::any_of(h.headers.begin(), h.headers.end(),
                           [&](const http::Header& header) { return http::syntax::iequals(header.name, name); });
    };
    auto injected = head_with({{"Authorization", "Bearer __GITHUB_TOKEN__"}, {"accept-encoding", "gzip, br"},
                               {"Accept-Encoding", "zstd"}, {"range", "bytes=10-19"}, {"If-Range", "\"v1\""}});
    REQUIRE(proxy::apply_credentials(set, &bound, injected, "/repos").injected.size() == 1);
    CHECK(count(injected, "identity") == 1);
    CHECK_FALSE(has(injected, "range"));
    CHECK_FALSE(has(injected, "if-range"));

    auto plain = head_with({{"Accept-Encoding", "gzip"}, {"Range", "bytes=10-19"}});
    CHECK(proxy::apply_credentials(set, &bound, plain, "/repos").injected.empty());
    CHECK(count(plain, "gzip") == 1);
    CHECK(has(plain, "range"));
}

TEST_CASE("binding: the placeholder is replaced only in the bound header of an allowed request")
{
    CredentialSet set = github_set();
    std::vector<std::string> bound{"github"};
    std::vector<std::string> unbound{"other"};

    auto head = head_with({{"authorization", "Bearer __GITHUB_TOKEN__"}, {"Accept", "*/*"}});
    auto ok = proxy::apply_credentials(set, &bound, head, "/repos");
    CHECK(ok.allowed);
    CHECK(head.headers[0].value == std::string("Bearer ") + secret);
    CHECK(ok.injected == std::vector<std::string>{"github"});

    SUBCASE("a rule that does not list the provider")
    {
        auto h = head_with({{"Authorization", "Bearer __GITHUB_TOKEN__"}});
        auto r = proxy::apply_credentials(set, &unbound, h, "/repos");
        CHECK_FALSE(r.allowed);
        CHECK(r.reason.find("possible credential exfiltration") != std::string::npos);
        CHECK(h.headers[0].value == "Bearer __GITHUB_TOKEN__");
    }
    SUBCASE("a denied request")
    {
        auto h = head_with({{"Authorization", "Bearer __GITHUB_TOKEN__"}});
        CHECK_FALSE(proxy::apply_credentials(set, nullptr, h, "/repos").allowed);
    }
    SUBCASE("another header")
    {
        auto h = head_with({{"X-Leak", "__GITHUB_TOKEN__"}});
        auto r = proxy::apply_credentials(set, &bound, h, "/repos");
        CHECK_FALSE(r.allowed);
        CHECK(r.reason.find("X-Leak") != std::string::npos);
    }
    SUBCASE("the value differs in case or wording")
    {
        auto h = head_with({{"Authorization", "bearer __GITHUB_TOKEN__"}});
        CHECK_FALSE(proxy::apply_credentials(set, &bound, h, "/repos").allowed);
        auto h2 = head_with({{"Authorization", "Bearer __GITHUB_TOKEN__ x"}});
        CHECK_FALSE(proxy::apply_credentials(set, &bound, h2, "/repos").allowed);
    }
    SUBCASE("in the target")
    {
        auto h = head_with({}, "/x?t=__GITHUB_TOKEN__");
        CHECK_FALSE(proxy::apply_credentials(set, &bound, h, "/x?t=__GITHUB_TOKEN__").allowed);
    }
    SUBCASE("two headers of the same name")
    {
        auto h = head_with({{"Authorization", "Bearer __GITHUB_TOKEN__"}, {"AUTHORIZATION", "Bearer __GITHUB_TOKEN__"}});
        auto r = proxy::apply_credentials(set, &bound, h, "/repos");
        CHECK_FALSE(r.allowed);
        CHECK(h.headers[0].value == "Bearer __GITHUB_TOKEN__");
    }
    SUBCASE("the real secret, anywhere")
    {
        auto h = head_with({{"Authorization", std::string("Bearer ") + secret}});
        auto r = proxy::apply_credentials(set, &bound, h, "/repos");
        CHECK_FALSE(r.allowed);
        CHECK(r.reason.find("secret") != std::string::npos);
        CHECK(r.reason.find(secret) == std::string::npos);
    }
    SUBCASE("no placeholder: nothing changes")
    {
        auto h = head_with({{"Authorization", "Bearer other"}});
        auto r = proxy::apply_credentials(set, &bound, h, "/repos");
        CHECK(r.allowed);
        CHECK(r.injected.empty());
        CHECK(h.headers[0].value == "Bearer other");
    }
}

TEST_CASE("body scanner: a needle split at every byte is caught")
{
    CredentialSet set = github_set();
    for (std::string needle : {std::string("__GITHUB_TOKEN__"), std::string(secret)}) {
        std::string body = "{\"a\":\"" + needle + "\"}";
        for (std::size_t cut = 0; cut <= body.size(); ++cut) {
            LeakScanner scan(set);
            const Provider* first = scan.feed(std::string_view(body).substr(0, cut));
            const Provider* second = scan.feed(std::string_view(body).substr(cut));
            CHECK((first != nullptr || second != nullptr));
        }
        // One byte at a time.
        LeakScanner scan(set);
        bool seen = false;
        for (char c : body)
            seen = scan.feed(std::string_view(&c, 1)) != nullptr || seen;
        CHECK(seen);
    }
    LeakScanner clean(set);
    CHECK(clean.feed("__GITHUB_TOKEN_") == nullptr);
    CHECK(clean.feed("x__") == nullptr);
}

TEST_CASE("redaction: secrets, header values and tokens never survive")
{
    CredentialSet set = github_set();
    std::string text = std::string("path /a/") + secret + " header Bearer " + secret + " token __GITHUB_TOKEN__";
    set.redact(text);
    CHECK(text.find(secret) == std::string::npos);
    CHECK(text.find("__GITHUB_TOKEN__") == std::string::npos);
    CHECK(text.find("[redacted:github]") != std::string::npos);
}

TEST_CASE("tls plan: a rule with credentials is always intercepted")
{
    auto policy = parse_policy(R"(name: t
rules:
  - endpoint: https://api.github.com/**
    credentials: [github]
)",
                               "t.yaml");
    REQUIRE(policy);
    REQUIRE(policy->rules[0].credentials == std::vector<std::string>{"github"});
    CHECK(plan_tls(*policy, "api.github.com", 443).intercept);

    auto deny = parse_policy("name: t\nrules:\n  - endpoint: https://a.example/**\n    action: deny\n    credentials: [g]\n",
                             "t.yaml");
    REQUIRE_FALSE(deny);
    CHECK(deny.error().message.find("rules[0].credentials") != std::string::npos);
    auto pass = parse_policy(
        "name: t\nrules:\n  - endpoint: https://a.example/**\n    tls: passthrough\n    credentials: [g]\n", "t.yaml");
    REQUIRE_FALSE(pass);
}

TEST_CASE("loader: a rule naming an unloaded provider is an error naming the rule")
{
    auto policy = parse_policy("name: t\nrules:\n  - endpoint: https://a.example/**\n    credentials: [github]\n", "t.yaml");
    REQUIRE(policy);
    auto loaded = loader::load_credentials({}, {}, *policy);
    REQUIRE_FALSE(loaded);
    CHECK(loaded.error().message.find("t.yaml:3: field 'rules[0].credentials[0]'") != std::string::npos);

    CredentialSet set = github_set();
    CHECK_FALSE(loader::check_sandbox_environment(set, {std::string("GITHUB_TOKEN=") + secret}));
    CHECK(loader::check_sandbox_environment(set, {"GITHUB_TOKEN=__GITHUB_TOKEN__"}));
}

TEST_CASE("the shipped provider example parses")
{
    auto p = load_provider_file(std::string(PINFOLD_SOURCE_DIR) + "/policies/providers/github.yaml");
    REQUIRE_MESSAGE(p.has_value(), p.error().what());
    CHECK(p->token == "__GITHUB_TOKEN__");
    CHECK(p->sandbox_env == "GITHUB_TOKEN");
    CHECK(p->source == "env:GITHUB_TOKEN");
}

TEST_CASE("host-side service: the proxy adds its token to allowed requests for its name only")
{
    Provider service;
    service.name = "service-notes";
    service.header = "Authorization";
    service.secret = "0123456789abcdef0123456789abcdef";
    service.header_value = "Bearer 0123456789abcdef0123456789abcdef";
    service.service_host = "notes";
    CredentialSet set({service});
    auto back = CredentialSet::parse(set.serialize());
    REQUIRE(back);
    CHECK(back->providers()[0].service_host == "notes");

    std::vector<std::string> none;
    auto head = head_with({{"authorization", "Bearer forged"}, {"Accept", "*/*"}});
    auto r = proxy::apply_credentials(set, &none, head, "/notes", "notes");
    CHECK(r.allowed);
    REQUIRE(head.headers.size() == 3);
    CHECK(head.headers[1].value == service.header_value);
    CHECK(head.headers[0].name == "Accept");
    CHECK(head.headers[2].value == "identity");   // its answer is guarded like any other

    auto other = head_with({});
    CHECK(proxy::apply_credentials(set, &none, other, "/notes", "elsewhere").allowed);
    CHECK(other.headers.empty());
    auto denied = head_with({});
    CHECK(proxy::apply_credentials(set, nullptr, denied, "/notes", "notes").allowed);
    CHECK(denied.headers.empty());
    // The token itself is a secret like any other.
    auto leak = head_with({{"X", service.secret}});
    CHECK_FALSE(proxy::apply_credentials(set, &none, leak, "/x", "elsewhere").allowed);
}
