// Credentials, session 2: providers listed by an agent profile, the
// plaintext rule check, `pinfold check`'s description, the minimum secret
// length, HTTP Basic providers (git over HTTPS), and the body scan of
// chunked requests.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "credential_setup.hpp"
#include "policy/credentials.hpp"
#include "policy/policy.hpp"
#include "proxy/body_scan.hpp"
#include "proxy/credential_gate.hpp"

using namespace pinfold;
using namespace pinfold::policy;

namespace {

constexpr const char* secret = "ghp_profileSECRET0123456789abcdef";

constexpr const char* header_yaml = R"(name: github
type: header
source: env:PF_UNIT_PROFILE_TOKEN
sandbox_env: GITHUB_TOKEN
config:
  header: Authorization
  value_template: "token {{GITHUB_TOKEN}}"
  placeholder: "token __GITHUB_TOKEN__"
)";

constexpr const char* basic_yaml = R"(name: github-git
type: basic
source: env:PF_UNIT_PROFILE_TOKEN
sandbox_env: GITHUB_TOKEN
config:
  username: x-access-token
  password_template: "{{GITHUB_TOKEN}}"
  placeholder: "__GITHUB_TOKEN__"
)";

// A directory with a policy and provider files, removed at scope exit.
struct ProfileDir {
    std::filesystem::path root;
    ProfileDir()
    {
        char tmpl[] = "/tmp/pf-unit-profile-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        root = tmpl;
        std::filesystem::create_directories(root / "providers");
    }
    ~ProfileDir() { std::filesystem::remove_all(root); }
    std::string write(const std::string& name, const std::string& text) const
    {
        std::ofstream(root / name) << text;
        return (root / name).string();
    }
};

Result<Policy> load_profile(const ProfileDir& dir, const std::string& text)
{
    return load_policy_file(dir.write("policy.yaml", text));
}

Provider resolved(const char* yaml)
{
    ::setenv("PF_UNIT_PROFILE_TOKEN", secret, 1);
    auto p = parse_provider(yaml, "p.yaml");
    REQUIRE_MESSAGE(p.has_value(), p.error().what());
    REQUIRE(resolve_secret(*p));
    return *p;
}

http::RequestHead head_with(std::vector<http::Header> headers)
{
    http::RequestHead head;
    head.method = "GET";
    head.target = "/o/r.git/info/refs";
    head.host = "github.com";
    head.headers = std::move(headers);
    return head;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

} // namespace

TEST_CASE("profile: providers: paths are relative to the policy file; errors name line and field")
{
    ProfileDir dir;
    auto policy = load_profile(dir, "name: p\nproviders:\n  - providers/github.yaml\n  - /abs/git.yaml\n"
                                    "rules:\n  - endpoint: https://a.example/**\n");
    REQUIRE_MESSAGE(policy.has_value(), policy.error().what());
    REQUIRE(policy->providers.size() == 2);
    CHECK(policy->providers[0].resolved == (dir.root / "providers/github.yaml").string());
    CHECK(policy->providers[0].line == 3);
    CHECK(policy->providers[1].resolved == "/abs/git.yaml");
    // A policy parsed from text without a directory keeps the path as is.
    auto bare = parse_policy("name: p\nproviders: [x.yaml]\nrules:\n  - endpoint: https://a.example/**\n", "p.yaml");
    REQUIRE(bare);
    CHECK(bare->providers[0].resolved == "x.yaml");

    struct Case {
        const char* yaml;
        const char* expected;
    } cases[] = {
        {"name: p\nproviders: x.yaml\nrules:\n  - endpoint: https://a.example/**\n", "t.yaml:2:12: field 'providers'"},
        {"name: p\nproviders: []\nrules:\n  - endpoint: https://a.example/**\n", "field 'providers': list is empty"},
        {"name: p\nproviders: [a.yaml, ./b/, a.yaml]\nrules:\n  - endpoint: https://a.example/**\n",
         "t.yaml:2:21: field 'providers[1]'"},
        {"name: p\nproviders: [a.yaml, a.yaml]\nrules:\n  - endpoint: https://a.example/**\n",
         "field 'providers[1]': duplicate provider file"},
        {"name: p\nproviders: [{a: 1}]\nrules:\n  - endpoint: https://a.example/**\n", "field 'providers[0]'"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.yaml);
        auto p = parse_policy(c.yaml, "t.yaml");
        REQUIRE_FALSE(p);
        CHECK_MESSAGE(contains(p.error().message, c.expected), p.error().message);
    }
}

TEST_CASE("profile: the loader reads the profile's providers; errors name the policy line; nothing half-applied")
{
    ProfileDir dir;
    dir.write("providers/github.yaml", header_yaml);
    dir.write("providers/git.yaml", basic_yaml);
    auto policy = load_profile(dir, "name: p\nproviders:\n  - providers/github.yaml\n  - providers/git.yaml\n"
                                    "rules:\n  - endpoint: https://a.example/**\n    credentials: [github, github-git]\n");
    REQUIRE(policy);
    ::setenv("PF_UNIT_PROFILE_TOKEN", secret, 1);
    auto loaded = loader::load_credentials({}, {}, *policy);
    REQUIRE_MESSAGE(loaded.has_value(), loaded.error().what());
    CHECK(loaded->set.providers().size() == 2);
    // Both providers name GITHUB_TOKEN with the same token: set once.
    CHECK(loaded->sandbox_env == std::vector<std::string>{"GITHUB_TOKEN=__GITHUB_TOKEN__"});

    // The variable is missing: the error names the policy's line and field,
    // and no --service token file was written.
    ::unsetenv("PF_UNIT_PROFILE_TOKEN");
    std::string token_file = (dir.root / "svc.token").string();
    auto missing = loader::load_credentials({}, {"notes=127.0.0.1:8080,token-file=" + token_file}, *policy);
    REQUIRE_FALSE(missing);
    CHECK_MESSAGE(contains(missing.error().message, "not set in pinfold's environment"), missing.error().message);
    CHECK(contains(missing.error().message, "github.yaml"));
    CHECK_FALSE(std::filesystem::exists(token_file));

    // A file that does not parse: POLICY:LINE:COL: field 'providers[1]'.
    dir.write("providers/git.yaml", "name: github-git\ntype: basic\nconfig:\n  username: a:b\n");
    ::setenv("PF_UNIT_PROFILE_TOKEN", secret, 1);
    auto bad = loader::load_credentials({}, {}, *policy);
    REQUIRE_FALSE(bad);
    CHECK_MESSAGE(contains(bad.error().message, "policy.yaml:4:5: field 'providers[1]': "), bad.error().message);
    CHECK(contains(bad.error().message, "git.yaml:4:13: field 'config.username'"));

    // A file that does not exist.
    auto gone = load_profile(dir, "name: p\nproviders: [providers/none.yaml]\nrules:\n  - endpoint: https://a.example/**\n");
    REQUIRE(gone);
    auto absent = loader::load_credentials({}, {}, *gone);
    REQUIRE_FALSE(absent);
    CHECK(contains(absent.error().message, "policy.yaml:2:13: field 'providers[0]': cannot open provider file"));
}

TEST_CASE("profile: --provider replaces the profile's provider of the same name, never another --provider")
{
    ProfileDir dir;
    dir.write("providers/github.yaml", header_yaml);
    std::string secret_file = dir.write("token", "from-a-file-0123456789\n");
    std::string replacement = dir.write("mine.yaml", std::string(header_yaml).replace(
                                                         std::string(header_yaml).find("env:PF_UNIT_PROFILE_TOKEN"),
                                                         25, "file:" + secret_file));
    auto policy = load_profile(dir, "name: p\nproviders: [providers/github.yaml]\n"
                                    "rules:\n  - endpoint: https://a.example/**\n    credentials: [github]\n");
    REQUIRE(policy);
    ::unsetenv("PF_UNIT_PROFILE_TOKEN");   // the profile's source is never read
    auto loaded = loader::load_credentials({replacement}, {}, *policy);
    REQUIRE_MESSAGE(loaded.has_value(), loaded.error().what());
    REQUIRE(loaded->set.providers().size() == 1);
    CHECK(loaded->set.providers()[0].secret == "from-a-file-0123456789");
    auto twice = loader::load_credentials({replacement, replacement}, {}, *policy);
    REQUIRE_FALSE(twice);
    CHECK(contains(twice.error().message, "is also defined by"));
}

TEST_CASE("plaintext: credentials on http:// only for loopback addresses and --service names")
{
    Provider p = resolved(header_yaml);
    auto bindings = [&](const char* endpoint, std::vector<std::string> services = {}) {
        auto policy = parse_policy(std::string("name: t\nrules:\n  - endpoint: ") + endpoint +
                                       "\n    credentials: [github]\n",
                                   "t.yaml");
        REQUIRE(policy);
        return check_credential_bindings(*policy, {p}, services);
    };
    auto cleartext = bindings("http://api.example.com/**");
    REQUIRE_FALSE(cleartext);
    CHECK_MESSAGE(contains(cleartext.error().message, "t.yaml:3: field 'rules[0].credentials': credentials on "
                                                      "plaintext http:// would send the secret in cleartext"),
                  cleartext.error().message);
    CHECK_FALSE(bindings("http://*.example.com/**"));
    CHECK_FALSE(bindings("http://10.0.0.1/**"));
    CHECK_FALSE(bindings("http://notes:8080/**"));
    CHECK(bindings("http://notes:8080/**", {"notes"}));
    CHECK(bindings("http://127.0.0.1:8080/**"));
    CHECK(bindings("http://127.3.2.1/**"));
    CHECK(bindings("http://[::1]:8080/**"));
    CHECK(bindings("https://api.example.com/**"));
    // The loader refuses it before reading any secret.
    auto policy = parse_policy("name: t\nrules:\n  - endpoint: http://api.example.com/**\n    credentials: [g]\n", "t.yaml");
    REQUIRE(policy);
    auto loaded = loader::load_credentials({}, {}, *policy);
    REQUIRE_FALSE(loaded);
}

TEST_CASE("pinfold check: per rule what may be injected, never a secret; problems flagged")
{
    Provider header = resolved(header_yaml);
    Provider basic = resolved(basic_yaml);
    auto policy = parse_policy("name: t\nrules:\n"
                               "  - name: api\n    endpoint: https://api.example.com/**\n    credentials: [github]\n"
                               "  - name: git\n    endpoint: https://git.example.com/**\n    credentials: [github-git]\n"
                               "  - name: plain\n    endpoint: http://plain.example.com/**\n    credentials: [github]\n"
                               "  - name: lost\n    endpoint: https://lost.example.com/**\n    credentials: [nobody]\n"
                               "  - name: none\n    endpoint: https://none.example.com/**\n",
                               "t.yaml");
    REQUIRE(policy);
    std::size_t problems = 0;
    std::string text = describe_credentials(*policy, {header, basic}, problems);
    CHECK(problems == 2);
    CHECK_MESSAGE(contains(text, "1. api may inject: github (header: Authorization: token __GITHUB_TOKEN__, secret "
                                 "from env:PF_UNIT_PROFILE_TOKEN)"),
                  text);
    CHECK(contains(text, "2. git may inject: github-git (basic: Authorization: Basic base64(x-access-token:"
                         "__GITHUB_TOKEN__)"));
    CHECK(contains(text, "problem: t.yaml:9: field 'rules[2].credentials': credentials on plaintext http://"));
    CHECK(contains(text, "problem: t.yaml:12: field 'rules[3].credentials': provider 'nobody' is not listed"));
    CHECK_FALSE(contains(text, "none.example"));
    CHECK_FALSE(contains(text, secret));
    CHECK_FALSE(contains(text, header.header_value));
}

TEST_CASE("secret: shorter than the minimum is refused with a clear message")
{
    auto p = parse_provider(header_yaml, "g.yaml");
    REQUIRE(p);
    for (const char* value : {"x", "1234567"}) {
        ::setenv("PF_UNIT_PROFILE_TOKEN", value, 1);
        auto r = resolve_secret(*p);
        REQUIRE_FALSE(r);
        CHECK_MESSAGE(contains(r.error().message, "character(s) long; at least 8 are needed"), r.error().message);
        CHECK(contains(r.error().message, "g.yaml: provider 'github': source env:PF_UNIT_PROFILE_TOKEN"));
    }
    ::setenv("PF_UNIT_PROFILE_TOKEN", "12345678", 1);
    CHECK(resolve_secret(*p));
}

TEST_CASE("base64: RFC 4648 vectors both ways; malformed input refused")
{
    const std::pair<const char*, const char*> vectors[] = {
        {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (auto [plain, encoded] : vectors) {
        CHECK(base64_encode(plain) == encoded);
        auto back = base64_decode(encoded);
        REQUIRE(back);
        CHECK(*back == plain);
    }
    for (const char* bad : {"Zg=", "Zg=a", "Z===", "Zm9v!A==", "=Zm9"})
        CHECK_FALSE(base64_decode(bad));
    CHECK(CredentialSet::decode_basic("Basic Zm9vOmJhcg==") == std::optional<std::string>("foo:bar"));
    CHECK(CredentialSet::decode_basic("bAsIc   Zm9vOmJhcg==") == std::optional<std::string>("foo:bar"));
    CHECK_FALSE(CredentialSet::decode_basic("Bearer Zm9vOmJhcg=="));
    CHECK_FALSE(CredentialSet::decode_basic("Basic not-base64"));
}

TEST_CASE("basic provider: placeholder and header value are encoded user:password")
{
    Provider p = resolved(basic_yaml);
    CHECK(p.header == "Authorization");
    CHECK(p.token == "__GITHUB_TOKEN__");
    CHECK(p.placeholder == "Basic " + base64_encode("x-access-token:__GITHUB_TOKEN__"));
    CHECK(p.header_value == "Basic " + base64_encode(std::string("x-access-token:") + secret));
    auto back = CredentialSet::parse(CredentialSet({p}).serialize());
    REQUIRE(back);
    CHECK(back->providers()[0].type == "basic");
    CHECK(back->providers()[0].username == "x-access-token");
    auto no_user = parse_provider("name: g\ntype: basic\nconfig:\n  password_template: \"{{T}}\"\n"
                                  "  placeholder: \"__TOKEN_T__\"\n",
                                  "g.yaml");
    REQUIRE_FALSE(no_user);
    CHECK(contains(no_user.error().message, "field 'config.username': is required"));
    auto header_key = parse_provider("name: g\ntype: basic\nconfig:\n  username: u\n  header: X\n", "g.yaml");
    REQUIRE_FALSE(header_key);
    CHECK(contains(header_key.error().message, "g.yaml:5:3: field 'config.header': unknown key"));
}

TEST_CASE("basic binding: decoded, matched exactly, re-encoded with the secret; anything else is exfiltration")
{
    Provider basic = resolved(basic_yaml);
    Provider header = resolved(header_yaml);
    CredentialSet set({header, basic});
    std::vector<std::string> git{"github-git"};
    std::vector<std::string> api{"github"};
    std::vector<std::string> both{"github", "github-git"};
    const std::string sent = "Basic " + base64_encode("x-access-token:__GITHUB_TOKEN__");

    auto ok = head_with({{"Authorization", sent}});
    auto r = proxy::apply_credentials(set, &git, ok, "/o/r.git/info/refs");
    REQUIRE_MESSAGE(r.allowed, r.reason);
    CHECK(ok.headers[0].value == basic.header_value);
    CHECK(r.injected == std::vector<std::string>{"github-git"});

    // The scheme is case-insensitive; the credentials are decoded, not compared as text.
    auto lower = head_with({{"authorization", "basic " + base64_encode("x-access-token:__GITHUB_TOKEN__")}});
    CHECK(proxy::apply_credentials(set, &git, lower, "/").allowed);
    CHECK(lower.headers[0].value == basic.header_value);

    // A shared token: the header provider's placeholder on a git-only rule.
    auto token_header = head_with({{"Authorization", "token __GITHUB_TOKEN__"}});
    auto wrong_rule = proxy::apply_credentials(set, &git, token_header, "/");
    CHECK_FALSE(wrong_rule.allowed);
    CHECK(contains(wrong_rule.reason, "whose rule does not list it"));
    auto both_ok = head_with({{"Authorization", "token __GITHUB_TOKEN__"}});
    CHECK(proxy::apply_credentials(set, &both, both_ok, "/").allowed);
    CHECK(both_ok.headers[0].value == header.header_value);

    struct Case {
        const char* what;
        std::vector<http::Header> headers;
        const std::vector<std::string>* bound;
    } cases[] = {
        {"another user name", {{"Authorization", "Basic " + base64_encode("evil:__GITHUB_TOKEN__")}}, &git},
        {"the token in a longer password", {{"Authorization", "Basic " + base64_encode("x-access-token:__GITHUB_TOKEN__x")}}, &git},
        {"a rule without the provider", {{"Authorization", sent}}, &api},
        {"a denied request", {{"Authorization", sent}}, nullptr},
        {"another header", {{"X-Auth", sent}}, &git},
        {"Proxy-Authorization", {{"Proxy-Authorization", sent}}, &git},
        {"the encoded secret pasted", {{"X-Data", base64_encode(std::string("x-access-token:") + secret)}}, &git},
        {"the secret inside Basic", {{"Authorization", "Basic " + base64_encode(std::string("me:") + secret)}}, &git},
        {"two Authorization headers", {{"Authorization", sent}, {"Authorization", "token __GITHUB_TOKEN__"}}, &both},
    };
    for (Case& c : cases) {
        CAPTURE(c.what);
        auto head = head_with(c.headers);
        auto out = proxy::apply_credentials(set, c.bound, head, "/");
        CHECK_FALSE(out.allowed);
        CHECK(contains(out.reason, "possible credential exfiltration"));
        // Nothing was injected: the head is as the sandbox sent it.
        REQUIRE(head.headers.size() == c.headers.size());
        for (std::size_t i = 0; i < head.headers.size(); ++i)
            CHECK(head.headers[i].value == c.headers[i].value);
    }
    // Redaction covers the encoded forms.
    std::string text = "a " + basic.header_value + " b " + sent.substr(6);
    set.redact(text);
    CHECK(text == "a [redacted:github-git] b [redacted:github-git]");
}

namespace {

// A chunked body carrying `payload`, with chunk boundaries at `cuts`.
std::string chunked(const std::string& payload, std::vector<std::size_t> cuts, bool extensions = false)
{
    std::string out;
    std::size_t at = 0;
    cuts.push_back(payload.size());
    for (std::size_t cut : cuts) {
        if (cut <= at)
            continue;
        char size[32];
        std::snprintf(size, sizeof size, "%zx", cut - at);
        out += size;
        out += extensions ? ";x=\"y;z\"\r\n" : "\r\n";
        out += payload.substr(at, cut - at) + "\r\n";
        at = cut;
    }
    return out + "0\r\nX-Trailer: t\r\n\r\n";
}

} // namespace

TEST_CASE("chunked body scan: a placeholder or secret split across chunks, at every split and every feed split")
{
    Provider header = resolved(header_yaml);
    CredentialSet set({header});
    for (const std::string& needle : {std::string("__GITHUB_TOKEN__"), std::string(secret)}) {
        std::string payload = "{\"body\":\"" + needle + "\"}";
        std::size_t start = payload.find(needle);
        for (std::size_t cut = start + 1; cut < start + needle.size(); ++cut) {
            std::string wire = chunked(payload, {cut}, cut % 2 == 0);
            // The framing hides it from a plain scan of the wire.
            REQUIRE(wire.find(needle) == std::string::npos);
            for (std::size_t split = 0; split <= wire.size(); split += 3) {
                proxy::RequestBodyScan scan(set, true);
                bool seen_secret = false;
                const Provider* hit = scan.feed(std::string_view(wire).substr(0, split), &seen_secret);
                if (hit == nullptr)
                    hit = scan.feed(std::string_view(wire).substr(split), &seen_secret);
                CAPTURE(cut);
                CAPTURE(split);
                REQUIRE(hit == &set.providers()[0]);
                CHECK(seen_secret == (needle == secret));
            }
        }
    }
    // One byte at a time, one byte per chunk.
    std::string payload = "data __GITHUB_TOKEN__ end";
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < payload.size(); ++i)
        every.push_back(i);
    std::string wire = chunked(payload, every);
    proxy::RequestBodyScan scan(set, true);
    const Provider* hit = nullptr;
    for (char c : wire)
        if (!hit)
            hit = scan.feed(std::string_view(&c, 1));
    CHECK(hit != nullptr);
    // In a trailer: the wire view sees it.
    proxy::RequestBodyScan trailer(set, true);
    CHECK(trailer.feed("3\r\nabc\r\n0\r\nX-T: __GITHUB_TOKEN__\r\n\r\n") != nullptr);
    // Chunk framing alone never produces a match.
    proxy::RequestBodyScan clean(set, true);
    CHECK(clean.feed(chunked("__GITHUB_TOKEN_ and _GITHUB_TOKEN__", {5, 17, 18})) == nullptr);
    // A body that is not chunked is scanned as it is.
    proxy::RequestBodyScan plain(set, false);
    CHECK(plain.feed("5\r\n__GITH\r\n") == nullptr);
    CHECK(plain.feed("UB_TOKEN__") == nullptr);
}
