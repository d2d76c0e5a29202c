#pragma once
// Policies: which HTTP requests a sandbox may make. parse_policy turns YAML
// into a Policy (all or nothing, every error located as FILE:LINE:COL);
// CompiledPolicy indexes it by host so a decision costs the same with 10 or
// 10 000 rules. First matching rule wins; no match denies.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pinfold/error.hpp"
#include "policy/endpoint.hpp"
#include "policy/normalize.hpp"

namespace pinfold::policy {

enum class Action { allow, deny };

// Methods a rule can name. A rule without methods: matches exactly these, so
// CONNECT, TRACE and extension methods never match any rule and are denied.
inline constexpr std::string_view known_methods[] = {"GET",    "HEAD",  "POST",   "PUT",
                                                     "DELETE", "PATCH", "OPTIONS"};

struct Rule {
    std::string name;                   // "rules[<i>]" when the file gives none
    Endpoint endpoint;
    std::vector<std::string> methods;   // empty: every known method
    std::vector<std::string> binaries;  // parsed and validated, not enforced yet
    Action action = Action::allow;
    int line = 0;                       // 1-based line of the rule in the file
};

struct Policy {
    std::string name;
    std::string description;
    std::vector<Rule> rules;
    std::vector<std::string> warnings;  // for the caller to print loudly
    std::string source;                 // file name given to the parser
};

// source_name only labels error messages and Policy::source.
[[nodiscard]] Result<Policy> parse_policy(std::string_view yaml_text, std::string_view source_name);
[[nodiscard]] Result<Policy> load_policy_file(const std::string& path);

struct Request {
    std::string_view scheme;   // "http" or "https"
    std::string_view host;     // lowercase, no port; IPv6 without brackets
    std::uint16_t port = 0;
    std::string_view method;   // as on the request line (case-sensitive)
    std::string_view path;     // normalize_target(...).path
};

struct Decision {
    bool allowed = false;
    int rule_index = -1;       // index into Policy::rules, -1 when none matched
    std::string rule_name;     // "" when none matched
    std::string reason;        // for logs and the audit record
};

class CompiledPolicy {
public:
    // Re-validates what parse_policy checks about each endpoint and method,
    // so a hand-built Policy cannot smuggle in something unmatchable.
    [[nodiscard]] static Result<CompiledPolicy> compile(Policy policy);

    // Never throws (short of allocation failure). A request that is not in
    // the form documented on Request (unknown scheme, invalid host, path not
    // normalised) is denied with a reason saying so.
    [[nodiscard]] Decision decide(const Request& request) const;

    [[nodiscard]] const Policy& policy() const;

private:
    struct Index;

    explicit CompiledPolicy(std::shared_ptr<const Index> index);

    // Immutable once built: copies share it, so handing a policy to several
    // threads costs nothing.
    std::shared_ptr<const Index> index_;
};

// For `pinfold check`: one line per rule (name, endpoint, methods, action),
// then the warnings.
[[nodiscard]] std::string describe(const Policy& policy);

} // namespace pinfold::policy
