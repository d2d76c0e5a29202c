// Policy parsing: the happy path, then every kind of error with the exact
// location and field it must name.

#include <doctest/doctest.h>

#include <string>

#include "policy/policy.hpp"

using namespace pinfold::policy;

namespace {

std::string error_of(std::string_view yaml)
{
    auto result = parse_policy(yaml, "p.yaml");
    REQUIRE_FALSE(result.has_value());
    return result.error().message;
}

// A minimal valid policy with one extra line in the first rule.
std::string with_rule_line(std::string_view line)
{
    return "name: p\n"
           "rules:\n"
           "  - endpoint: https://h.example/x\n"
           "    " + std::string(line) + "\n";
}

} // namespace

TEST_CASE("parse_policy: happy path")
{
    constexpr std::string_view yaml = R"(# comment
name: github-read
description: Read GitHub issues
rules:
  - name: read-issues
    endpoint: https://API.GitHub.com./repos/*/*/issues/*
    methods: [GET, HEAD]
    binaries: [gh, /usr/bin/curl, "**/git"]
    action: allow
  - endpoint: http://[0:0::1]:8080/a/%7e%3a/**
    action: deny
  - endpoint: https://*.example.com/
)";
    auto result = parse_policy(yaml, "p.yaml");
    REQUIRE_MESSAGE(result.has_value(), result.error().message);
    const Policy& policy = *result;
    CHECK(policy.name == "github-read");
    CHECK(policy.description == "Read GitHub issues");
    CHECK(policy.source == "p.yaml");
    REQUIRE(policy.rules.size() == 3);

    const Rule& first = policy.rules[0];
    CHECK(first.name == "read-issues");
    CHECK(first.line == 5);
    CHECK(first.endpoint.scheme == "https");
    CHECK(first.endpoint.host == "api.github.com");
    CHECK_FALSE(first.endpoint.wildcard_host);
    CHECK(first.endpoint.port == 443);
    CHECK(first.endpoint.path_glob == "/repos/*/*/issues/*");
    CHECK(first.endpoint.text == "https://API.GitHub.com./repos/*/*/issues/*");
    CHECK(first.methods == std::vector<std::string>{"GET", "HEAD"});
    CHECK(first.binaries == std::vector<std::string>{"gh", "/usr/bin/curl", "**/git"});
    CHECK(first.action == Action::allow);

    const Rule& second = policy.rules[1];
    CHECK(second.name == "rules[1]");
    CHECK(second.line == 10);
    CHECK(second.endpoint.scheme == "http");
    CHECK(second.endpoint.host == "::1");
    CHECK(second.endpoint.port == 8080);
    CHECK(second.endpoint.path_glob == "/a/~%3A/**");
    CHECK(second.methods.empty());
    CHECK(second.binaries.empty());
    CHECK(second.action == Action::deny);

    const Rule& third = policy.rules[2];
    CHECK(third.name == "rules[2]");
    CHECK(third.endpoint.host == "example.com");
    CHECK(third.endpoint.wildcard_host);
    CHECK(third.endpoint.path_glob == "/");
    CHECK(third.action == Action::allow);

    // binaries are enforced (resolved when compiled): no warning at parse.
    CHECK(policy.warnings.empty());
}

TEST_CASE("parse_policy: no warning without binaries, description optional")
{
    auto result = parse_policy("name: a.b_c-1\nrules:\n  - endpoint: http://1.2.3.4/\n", "p.yaml");
    REQUIRE(result.has_value());
    CHECK(result->warnings.empty());
    CHECK(result->description.empty());
    CHECK(result->rules[0].endpoint.host == "1.2.3.4");
    CHECK(result->rules[0].endpoint.port == 80);
}

TEST_CASE("parse_policy: document-level errors")
{
    CHECK(error_of("") == "p.yaml:1:1: policy is empty");
    CHECK(error_of("# nothing\n") == "p.yaml:1:1: policy is empty");
    CHECK(error_of("- a\n- b\n") ==
          "p.yaml:1:1: policy must be a mapping with 'name' and 'rules', got a list");
    CHECK(error_of("name: a\nrules: [\n") == "p.yaml:3:1: YAML syntax error: end of sequence flow not found");
    CHECK(error_of("name: a\n  rules: x\n").starts_with("p.yaml:2:8: YAML syntax error: "));
    CHECK(error_of("name: a\nrules:\n  - endpoint: http://h.example/\n---\nname: b\n") ==
          "p.yaml:5:1: only one YAML document is allowed per policy file");
    CHECK(error_of(std::string_view("name: a\nru\0les: x\n", 18)) == "p.yaml:2:3: NUL byte in policy");
}

TEST_CASE("parse_policy: top-level field errors")
{
    constexpr std::string_view rules = "rules:\n  - endpoint: http://h.example/\n";
    CHECK(error_of(std::string(rules)) == "p.yaml:1:1: field 'name': is required");
    CHECK(error_of("name: a\n") == "p.yaml:1:1: field 'rules': is required");
    CHECK(error_of("name: a\nrule: []\n" + std::string(rules)) ==
          "p.yaml:2:1: field 'rule': unknown key (expected one of: name, description, limits, providers, rules)");
    CHECK(error_of("name: a\nname: b\n" + std::string(rules)) ==
          "p.yaml:2:1: field 'name': duplicate key (first at line 1)");
    CHECK(error_of("name: [a]\n" + std::string(rules)) ==
          "p.yaml:1:7: field 'name': expected a string, got a list");
    CHECK(error_of("name:\n" + std::string(rules)) == "p.yaml:1:1: field 'name': expected a string, got null");
    CHECK(error_of("name: !!int 5\n" + std::string(rules)) ==
          "p.yaml:1:7: field 'name': expected a string, got a value tagged 'tag:yaml.org,2002:int'");
    CHECK(error_of("name: Upper\n" + std::string(rules)) ==
          "p.yaml:1:7: field 'name': 'Upper' is not 1 to 128 of [a-z0-9._-]");
    CHECK(error_of("name: \"\"\n" + std::string(rules)) ==
          "p.yaml:1:7: field 'name': '' is not 1 to 128 of [a-z0-9._-]");
    CHECK(error_of("name: a\ndescription: {x: 1}\n" + std::string(rules)) ==
          "p.yaml:2:14: field 'description': expected a string, got a mapping");
    CHECK(error_of("name: a\ndescription: \"bell\\a\"\n" + std::string(rules)) ==
          "p.yaml:2:14: field 'description': contains a control character");
    CHECK(error_of("name: a\nrules: x\n") == "p.yaml:2:8: field 'rules': expected a list of rules, got a scalar");
    CHECK(error_of("name: a\nrules: []\n") == "p.yaml:2:8: field 'rules': needs at least one rule");
    CHECK(error_of("name: a\nrules:\n") == "p.yaml:2:1: field 'rules': expected a list of rules, got null");
    CHECK(error_of("{? [a] : b, name: a}\n") ==
          "p.yaml:1:4: keys must be plain strings, not a list");
}

TEST_CASE("parse_policy: rule errors")
{
    CHECK(error_of("name: a\nrules:\n  - x\n") == "p.yaml:3:5: field 'rules[0]': expected a mapping, got a scalar");
    CHECK(error_of("name: a\nrules:\n  - endpoint: http://h.example/\n  - methods: [GET]\n") ==
          "p.yaml:4:5: field 'rules[1].endpoint': is required");
    CHECK(error_of(with_rule_line("acton: deny")) ==
          "p.yaml:4:5: field 'rules[0].acton': unknown key (expected one of: name, endpoint, methods, "
          "binaries, credentials, action, tls)");
    CHECK(error_of(with_rule_line("endpoint: http://h.example/y")) ==
          "p.yaml:4:5: field 'rules[0].endpoint': duplicate key (first at line 3)");
    CHECK(error_of(with_rule_line("name: has space")) ==
          "p.yaml:4:11: field 'rules[0].name': 'has space' is not 1 to 128 of [A-Za-z0-9._-]");
    CHECK(error_of("name: a\nrules:\n  - name: x\n    endpoint: http://h.example/\n"
                   "  - name: x\n    endpoint: http://h.example/\n") ==
          "p.yaml:5:11: field 'rules[1].name': duplicate rule name 'x' (first used by the rule at line 3)");
    CHECK(error_of(with_rule_line("action: permit")) ==
          "p.yaml:4:13: field 'rules[0].action': 'permit' is not 'allow' or 'deny'");
    CHECK(error_of(with_rule_line("action:")) == "p.yaml:4:5: field 'rules[0].action': expected a string, got null");
}

TEST_CASE("parse_policy: methods errors")
{
    CHECK(error_of(with_rule_line("methods: GET")) ==
          "p.yaml:4:14: field 'rules[0].methods': expected a list of strings, got a scalar");
    CHECK(error_of(with_rule_line("methods: []")) ==
          "p.yaml:4:14: field 'rules[0].methods': list is empty (leave the key out instead)");
    CHECK(error_of(with_rule_line("methods: [GET, get]")) ==
          "p.yaml:4:20: field 'rules[0].methods[1]': method 'get' must be uppercase ('GET')");
    CHECK(error_of(with_rule_line("methods: [TRACE]")) ==
          "p.yaml:4:15: field 'rules[0].methods[0]': unknown method 'TRACE' (expected one of GET HEAD POST "
          "PUT DELETE PATCH OPTIONS)");
    CHECK(error_of(with_rule_line("methods: [GET, POST, GET]")) ==
          "p.yaml:4:26: field 'rules[0].methods[2]': duplicate method 'GET'");
    CHECK(error_of(with_rule_line("methods: [[GET]]")) ==
          "p.yaml:4:15: field 'rules[0].methods[0]': expected a string, got a list");
    CHECK(error_of(with_rule_line("methods:\n      - GET\n      - {a: b}")) ==
          "p.yaml:6:9: field 'rules[0].methods[1]': expected a string, got a mapping");
}

TEST_CASE("parse_policy: binaries errors")
{
    CHECK(error_of(with_rule_line("binaries: [bin/gh]")) ==
          "p.yaml:4:16: field 'rules[0].binaries[0]': 'bin/gh' must be an absolute path, a bare program "
          "name, or a glob starting with '**/'");
    CHECK(error_of(with_rule_line("binaries: [gh, \"\"]")) == "p.yaml:4:20: field 'rules[0].binaries[1]': is empty");
    CHECK(error_of(with_rule_line("binaries: []")) ==
          "p.yaml:4:15: field 'rules[0].binaries': list is empty (leave the key out instead)");
    CHECK(error_of(with_rule_line("binaries: gh")) ==
          "p.yaml:4:15: field 'rules[0].binaries': expected a list of strings, got a scalar");
}

TEST_CASE("parse_policy: endpoint errors name the endpoint field and its column")
{
    auto endpoint_error = [](std::string_view endpoint) {
        std::string yaml = "name: p\nrules:\n  - endpoint: " + std::string(endpoint) + "\n";
        std::string message = error_of(yaml);
        const std::string prefix = "p.yaml:3:15: field 'rules[0].endpoint': ";
        CHECK_MESSAGE(message.starts_with(prefix), message);
        return message.substr(std::min(prefix.size(), message.size()));
    };
    CHECK(endpoint_error("api.github.com/x") == "endpoint must look like scheme://host[:port]/path");
    CHECK(endpoint_error("ftp://h.example/") == "scheme 'ftp' is not 'http' or 'https'");
    CHECK(endpoint_error("HTTPS://h.example/") == "scheme 'HTTPS' is not 'http' or 'https'");
    CHECK(endpoint_error("https://h.example") == "endpoint has no path (write '/' or '/**' after the host)");
    CHECK(endpoint_error("https://h.example/a?x=1") == "endpoint must not contain a query ('?')");
    CHECK(endpoint_error("\"https://h.example/a#x\"") == "endpoint must not contain a fragment ('#')");
    CHECK(endpoint_error("https://u@h.example/") == "endpoint must not contain user info ('@')");
    CHECK(endpoint_error("https:///x") == "host is empty");
    CHECK(endpoint_error("https://:443/x") == "host is empty");
    CHECK(endpoint_error("https://h.example:0/") == "port '0' is not a number from 1 to 65535");
    CHECK(endpoint_error("https://h.example:65536/") == "port '65536' is not a number from 1 to 65535");
    CHECK(endpoint_error("https://h.example:+1/") == "port '+1' is not a number from 1 to 65535");
    CHECK(endpoint_error("https://h.example:/") == "port is empty");
    CHECK(endpoint_error("https://h_x.example/") ==
          "host name 'h_x.example' contains '_' (only letters, digits, '-' and '.')");
    CHECK(endpoint_error("https://a..example/") == "host name 'a..example' has an empty label");
    CHECK(endpoint_error("https://-a.example/") == "host name '-a.example' has a label starting or ending with '-'");
    CHECK(endpoint_error("https://127.1/") ==
          "host '127.1' is neither a valid IPv4 address nor a DNS name (last label is numeric)");
    CHECK(endpoint_error("https://01.2.3.4/") ==
          "host '01.2.3.4' is neither a valid IPv4 address nor a DNS name (last label is numeric)");
    CHECK(endpoint_error("\"https://*/x\"") ==
          "'*' is allowed only as the whole first label of a host ('*.example.com')");
    CHECK(endpoint_error("https://a.*.example/") ==
          "'*' is allowed only as the whole first label of a host ('*.example.com')");
    CHECK(endpoint_error("https://*.*.example/") == "'*' is allowed only as the whole first label of a host");
    CHECK(endpoint_error("https://[::1/") == "'[' without ']' around an IPv6 address");
    CHECK(endpoint_error("https://[::g]/") == "'[::g]' is not a valid IPv6 address");
    CHECK(endpoint_error("https://[1.2.3.4]/") == "'[1.2.3.4]' is not an IPv6 address");
    CHECK(endpoint_error("https://[::1]x/") == "unexpected text after ']': 'x'");
    CHECK(endpoint_error("https://::1/") == "IPv6 address must be in brackets ('[::1]')");
    CHECK(endpoint_error("https://h.example/a**/b") == "'**' must be a whole path segment, in 'a**'");
    CHECK(endpoint_error("https://h.example/a//b") == "path has an empty segment ('//'); normalised paths never do");
    CHECK(endpoint_error("https://h.example/a/../b") == "path has a dot segment ('..')");
    CHECK(endpoint_error("https://h.example/a/%2e/b") == "path has a dot segment ('.')");
    CHECK(endpoint_error("https://h.example/a%2Fb") == "path: encoded slash (%2F) at offset 2");
    CHECK(endpoint_error("https://h.example/a%zz") == "path: malformed percent-escape at offset 2");
    CHECK(endpoint_error("\"https://h.example/a\\\\b\"") == "path: backslash at offset 2");
    CHECK(endpoint_error("\"https://h.example/a b\"") ==
          "endpoint contains whitespace or a byte that is not printable ASCII");
}
