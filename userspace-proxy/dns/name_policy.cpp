#include "dns/name_policy.hpp"

#include "policy/endpoint.hpp"

namespace pinfold::dns {

NamePolicy::NamePolicy(const policy::Policy& policy)
{
    for (const auto& rule : policy.rules) {
        if (rule.action != policy::Action::allow)
            continue;
        const auto& endpoint = rule.endpoint;
        if (!endpoint.wildcard_host && policy::canonical_ip(endpoint.host))
            continue;
        (endpoint.wildcard_host ? suffixes_ : exact_).insert(endpoint.host);
    }
}

bool NamePolicy::may_resolve(std::string_view name) const
{
    // Same canonical form as the HTTP side: LDH labels, not all-digit last
    // label. Anything else (underscores, binary) is not a rule's name.
    auto canonical = policy::canonical_dns_name(name);
    if (!canonical || *canonical != name)
        return false;
    if (exact_.contains(name))
        return true;
    for (auto dot = name.find('.'); dot != std::string_view::npos; dot = name.find('.', dot + 1)) {
        if (suffixes_.contains(name.substr(dot + 1)))
            return true;
    }
    return false;
}

} // namespace pinfold::dns
