// Which rules may inject which credentials, checked against the loaded
// providers (pinfold run) or described (pinfold check).

#include <algorithm>
#include <cstdlib>

#include "policy/credentials.hpp"

namespace pinfold::policy {

namespace {

bool is_loopback_literal(std::string_view host)
{
    auto ip = canonical_ip(host);
    return ip && (*ip == "::1" || ip->starts_with("127.") || ip->starts_with("::ffff:127."));
}

std::string rule_field(const Policy& policy, std::size_t i)
{
    return policy.source + ":" + std::to_string(policy.rules[i].line) + ": field 'rules[" + std::to_string(i) +
           "].credentials";
}

const Provider* find_provider(const std::vector<Provider>& providers, std::string_view name)
{
    for (const Provider& p : providers)
        if (p.name == name)
            return &p;
    return nullptr;
}

// Empty when the rule may carry a secret in plaintext, else why not.
std::string plaintext_problem(const Rule& rule, const std::vector<std::string>& service_names)
{
    if (rule.endpoint.scheme != "http")
        return {};
    if (!rule.endpoint.wildcard_host &&
        (is_loopback_literal(rule.endpoint.host) ||
         std::find(service_names.begin(), service_names.end(), rule.endpoint.host) != service_names.end()))
        return {};
    return "credentials on plaintext http:// would send the secret in cleartext to " +
           std::string(rule.endpoint.wildcard_host ? "*." : "") + rule.endpoint.host +
           "; use https://, a loopback address, or a host-side service (--service " + rule.endpoint.host +
           "=127.0.0.1:PORT,...)";
}

} // namespace

Result<void> check_credential_bindings(const Policy& policy, const std::vector<Provider>& providers,
                                       const std::vector<std::string>& service_names)
{
    for (std::size_t i = 0; i < policy.rules.size(); ++i) {
        const Rule& rule = policy.rules[i];
        for (std::size_t j = 0; j < rule.credentials.size(); ++j) {
            const std::string& name = rule.credentials[j];
            if (find_provider(providers, name) == nullptr)
                return fail(rule_field(policy, i) + "[" + std::to_string(j) + "]': no provider '" + name +
                            "' is loaded (list its file under providers: in the policy, or give it with "
                            "--provider)");
        }
        if (!rule.credentials.empty())
            if (std::string why = plaintext_problem(rule, service_names); !why.empty())
                return fail(rule_field(policy, i) + "': " + why);
    }
    return {};
}

std::string describe_credentials(const Policy& policy, const std::vector<Provider>& providers,
                                 std::size_t& problems)
{
    std::string out;
    std::string trouble;
    for (std::size_t i = 0; i < policy.rules.size(); ++i) {
        const Rule& rule = policy.rules[i];
        if (rule.credentials.empty())
            continue;
        out += "  " + std::to_string(i + 1) + ". " + rule.name + " may inject:";
        for (const std::string& name : rule.credentials) {
            const Provider* p = find_provider(providers, name);
            if (p == nullptr) {
                out += " " + name + " (not loaded)";
                trouble += "problem: " + rule_field(policy, i) + "': provider '" + name +
                           "' is not listed under providers: (pinfold run needs --provider for it)\n";
                ++problems;
                continue;
            }
            out += " " + p->name + " (" + p->type + ": " + p->header + ": ";
            if (p->type == "basic")
                out += "Basic base64(" + p->username + ":" + p->token + ")";
            else
                out += p->placeholder;
            out += ", secret from " + p->source + ")";
        }
        out += '\n';
        if (std::string why = plaintext_problem(rule, {}); !why.empty()) {
            trouble += "problem: " + rule_field(policy, i) + "': " + why + "\n";
            ++problems;
        }
    }
    for (const Provider& p : providers) {
        // Only whether it is there: pinfold check never reads a secret.
        if (p.source.starts_with("env:")) {
            const char* value = std::getenv(p.source.c_str() + 4);
            if (value == nullptr || *value == '\0') {
                trouble += "note: " + p.origin + ": provider '" + p.name + "': " + p.source.substr(4) +
                           " is not set in this environment (pinfold run needs it)\n";
            }
        }
        bool used = std::any_of(policy.rules.begin(), policy.rules.end(), [&](const Rule& r) {
            return std::find(r.credentials.begin(), r.credentials.end(), p.name) != r.credentials.end();
        });
        if (!used)
            trouble += "note: provider '" + p.name + "' (" + p.origin + ") is bound to no rule\n";
    }
    if (out.empty() && trouble.empty())
        return {};
    return "credentials (what the proxy may inject; never the secret):\n" + out + trouble;
}

} // namespace pinfold::policy
