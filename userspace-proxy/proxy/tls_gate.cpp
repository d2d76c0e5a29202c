#include "tls_gate.hpp"

#include <algorithm>

namespace pinfold::proxy {

namespace {

TlsVerdict deny(std::string identity, std::string reason)
{
    return TlsVerdict{TlsAction::deny, std::move(identity), "", std::move(reason)};
}

TlsVerdict planned(const policy::CompiledPolicy& policy, const std::string& identity, std::uint16_t port)
{
    policy::TlsPlan plan = policy::plan_tls(policy.policy(), identity, port);
    std::string rule = plan.rule_index >= 0 ? policy.policy().rules[static_cast<std::size_t>(plan.rule_index)].name : "";
    return TlsVerdict{plan.intercept ? TlsAction::intercept : TlsAction::passthrough, identity, rule, plan.reason};
}

} // namespace

TlsVerdict decide_tls(const policy::CompiledPolicy* policy, Resolver& resolver, const ConnectionOrigin& origin,
                      const tls::ClientHello& hello)
{
    // ECH hides the real server name behind a public one: the name the
    // policy would see is not the one the server acts on.
    if (hello.encrypted_client_hello)
        return deny(hello.server_name.value_or(""), "Encrypted Client Hello hides the server name");
    std::string dialled = address_text(origin.address);
    if (!hello.server_name) {
        // Only a rule naming the dialled IP can vouch for a nameless hello.
        auto ip = policy::canonical_ip(dialled);
        bool named = false;
        if (policy && ip) {
            for (const policy::Rule& rule : policy->policy().rules)
                named = named || (rule.endpoint.scheme == "https" && !rule.endpoint.wildcard_host &&
                                  rule.endpoint.host == *ip && rule.endpoint.port == origin.port);
        }
        if (!named)
            return deny("", "no server name (SNI) and no https rule names the dialled address " + dialled);
        return planned(*policy, *ip, origin.port);
    }
    const std::string& sni = *hello.server_name;
    if (policy::canonical_ip(sni) || parse_address(sni))
        return deny(sni, "server name (SNI) is an IP literal");
    auto name = policy::canonical_dns_name(sni);
    if (!name)
        return deny(sni, "server name (SNI) is not a valid DNS name: " + name.error().message);
    // As for a Host header: per sandbox, so names bound by its DNS answers count.
    auto addresses = resolver.resolve_for(origin.sandbox_id, *name);
    if (!addresses)
        return deny(*name, addresses.error().message);
    if (std::find(addresses->begin(), addresses->end(), origin.address) == addresses->end())
        return deny(*name, "dialled address " + dialled + " is not an address of " + *name);
    if (!policy)
        return deny(*name, "no policy for this sandbox");
    return planned(*policy, *name, origin.port);
}

} // namespace pinfold::proxy
