#pragma once
// Policies: which HTTP requests a sandbox may make. parse_policy turns YAML
// into a Policy (all or nothing, every error located as FILE:LINE:COL);
// CompiledPolicy indexes it by host so a decision costs the same with 10 or
// 10 000 rules. First matching rule wins; no match denies.

#include <chrono>
#include <cstdint>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pinfold/error.hpp"
#include "policy/binaries.hpp"
#include "policy/endpoint.hpp"
#include "policy/normalize.hpp"

namespace pinfold::policy {

enum class Action { allow, deny };

// How the proxy treats a TLS connection to a rule's host (https:// only).
// auto_select: pass-through when no request to the host needs to be seen
// (see plan_tls), interception otherwise.
enum class TlsMode { auto_select, passthrough, intercept };

// Methods a rule can name. A rule without methods: matches exactly these, so
// CONNECT, TRACE and extension methods never match any rule and are denied.
inline constexpr std::string_view known_methods[] = {"GET",    "HEAD",  "POST",   "PUT",
                                                     "DELETE", "PATCH", "OPTIONS"};

struct Rule {
    std::string name;                   // "rules[<i>]" when the file gives none
    Endpoint endpoint;
    std::vector<std::string> methods;   // empty: every known method
    std::vector<std::string> binaries;  // empty: any executable (see binaries.hpp)
    std::vector<std::string> credentials; // providers whose header this rule injects (credentials.hpp)
    Action action = Action::allow;
    TlsMode tls = TlsMode::auto_select;
    int line = 0;                       // 1-based line of the rule in the file
};

// The `limits:` of an agent profile: the sandbox's resource limits.
struct PolicyLimits {
    std::optional<double> cpus;
    std::optional<std::uint64_t> memory_bytes;
    std::optional<std::uint64_t> pids;
    std::optional<std::chrono::milliseconds> timeout;
};

// A provider file an agent profile lists (`providers: [providers/x.yaml]`):
// the loader reads it as if given with --provider (credentials.hpp).
struct ProviderFileRef {
    std::string path;       // as written in the policy
    std::string resolved;   // relative paths taken from the policy file's directory
    int line = 0;
    int column = 0;
};

struct Policy {
    std::string name;
    std::string description;
    PolicyLimits limits;
    std::vector<ProviderFileRef> providers;
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
    // Kernel-captured identity of the connecting executable; 0:0 when not
    // captured, which no rule with binaries matches. exe_name only labels
    // the reason of a mismatch.
    ExeIdentity exe{};
    std::string_view exe_name{};
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
    // Rules with binaries match only the identities `binaries` resolved
    // their entries to (an entry missing from the table is an error).
    [[nodiscard]] static Result<CompiledPolicy> compile(Policy policy, BinaryTable binaries);
    // Resolves binaries against this process's PATH first (pinfold check,
    // tests); resolution warnings are appended to policy().warnings.
    [[nodiscard]] static Result<CompiledPolicy> compile(Policy policy);

    // Never throws (short of allocation failure). A request that is not in
    // the form documented on Request (unknown scheme, invalid host, path not
    // normalised) is denied with a reason saying so.
    [[nodiscard]] Decision decide(const Request& request) const;

    [[nodiscard]] const Policy& policy() const;

    // The resolved binaries (for the proxy's audit: which file an identity
    // is, when a policy names it).
    [[nodiscard]] const BinaryTable& binaries() const;
    [[nodiscard]] const ResolvedBinary* binary_of(ExeIdentity id) const;

private:
    struct Index;

    explicit CompiledPolicy(std::shared_ptr<const Index> index);

    // Immutable once built: copies share it, so handing a policy to several
    // threads costs nothing.
    std::shared_ptr<const Index> index_;
};

// What the proxy does with a TLS connection to `host`:`port`.
struct TlsPlan {
    bool intercept = true;
    int rule_index = -1;     // the rule that decided, -1 when none did
    std::string reason;
};

// Pass-through only when every request to the host is allowed without
// looking at it: walking the https rules that apply to host and port in
// order, an allow rule for all methods and "/**" comes before any deny rule
// and any rule that asks for interception. `host` is canonical
// (canonical_request_host); with `wildcard_pattern` it is the suffix of a
// "*.suffix" pattern (for `pinfold check`).
[[nodiscard]] TlsPlan plan_tls(const Policy& policy, std::string_view host, std::uint16_t port,
                               bool wildcard_pattern = false);

// For `pinfold check`: which TLS mode each https host and port gets, and why.
[[nodiscard]] std::string describe_tls(const Policy& policy);

// For `pinfold check`: one line per rule (name, endpoint, methods, action),
// then the warnings.
[[nodiscard]] std::string describe(const Policy& policy);

} // namespace pinfold::policy
