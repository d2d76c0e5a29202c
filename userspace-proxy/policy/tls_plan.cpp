#include <algorithm>

#include "policy/policy.hpp"

namespace pinfold::policy {

namespace {

bool applies_to(const Endpoint& endpoint, std::string_view host, bool wildcard_pattern)
{
    if (!endpoint.wildcard_host)
        return !wildcard_pattern && endpoint.host == host;
    // "*.example.com" covers "a.example.com" and the pattern "*.a.example.com".
    if (wildcard_pattern && endpoint.host == host)
        return true;
    return host.size() > endpoint.host.size() + 1 && host.ends_with(endpoint.host) &&
           host[host.size() - endpoint.host.size() - 1] == '.';
}

// A rule with binaries is decided per request against the connecting
// executable, and one with credentials injects into each request's head,
// so neither is ever a reason to stop looking.
bool sees_nothing(const Rule& rule)
{
    return rule.action == Action::allow && rule.methods.empty() && rule.endpoint.path_glob == "/**" &&
           rule.binaries.empty() && rule.credentials.empty();
}

} // namespace

TlsPlan plan_tls(const Policy& policy, std::string_view host, std::uint16_t port, bool wildcard_pattern)
{
    for (std::size_t i = 0; i < policy.rules.size(); ++i) {
        const Rule& rule = policy.rules[i];
        if (rule.endpoint.scheme != "https" || rule.endpoint.port != port ||
            !applies_to(rule.endpoint, host, wildcard_pattern))
            continue;
        int index = static_cast<int>(i);
        if (rule.tls == TlsMode::intercept)
            return TlsPlan{true, index, "rule '" + rule.name + "' asks for interception"};
        if (rule.action == Action::deny)
            return TlsPlan{true, index, "rule '" + rule.name + "' denies some requests"};
        if (sees_nothing(rule))
            return TlsPlan{false, index, "rule '" + rule.name + "' allows every request"};
        // A narrower allow denies nothing by itself; keep looking.
    }
    return TlsPlan{true, -1, "no rule allows every request; each one is decided inside TLS"};
}

} // namespace pinfold::policy

namespace pinfold::policy {

std::string describe_tls(const Policy& policy)
{
    // One line per https host and port, in the order rules first name them.
    std::string out;
    std::vector<std::pair<std::string, std::uint16_t>> listed;
    for (const Rule& rule : policy.rules) {
        const Endpoint& e = rule.endpoint;
        std::string host = e.wildcard_host ? "*." + e.host : e.host;
        if (e.scheme != "https" || std::find(listed.begin(), listed.end(), std::pair{host, e.port}) != listed.end())
            continue;
        listed.emplace_back(host, e.port);
        TlsPlan plan = plan_tls(policy, e.host, e.port, e.wildcard_host);
        std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
        out += "  tls " + shown + ":" + std::to_string(e.port) + ": " + (plan.intercept ? "intercept" : "passthrough") +
               " (" + plan.reason + ")\n";
    }
    return out;
}

} // namespace pinfold::policy
