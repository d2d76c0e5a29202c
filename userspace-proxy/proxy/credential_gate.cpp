#include <algorithm>

#include "credential_gate.hpp"

namespace pinfold::proxy {

namespace {

bool same_name(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
               return lower(x) == lower(y);
           });
}

CredentialOutcome exfiltration(const policy::Provider& p, bool secret, const std::string& where)
{
    CredentialOutcome out;
    out.allowed = false;
    out.reason = std::string("possible credential exfiltration: the ") + (secret ? "secret" : "placeholder") +
                 " of provider '" + p.name + "' " + where;
    return out;
}

} // namespace

CredentialOutcome apply_credentials(const policy::CredentialSet& set, const std::vector<std::string>* bound,
                                    http::RequestHead& head, std::string_view upstream_target, std::string_view host)
{
    if (set.empty())
        return {};
    bool secret = false;
    if (const policy::Provider* p = set.mentioned_in(head.target, &secret))
        return exfiltration(*p, secret, "is in the request target");
    if (const policy::Provider* p = set.mentioned_in(upstream_target, &secret))
        return exfiltration(*p, secret, "is in the request target");

    struct Replacement {
        std::size_t header;
        const policy::Provider* provider;
    };
    std::vector<Replacement> replacements;
    for (std::size_t i = 0; i < head.headers.size(); ++i) {
        const http::Header& h = head.headers[i];
        if (const policy::Provider* p = set.mentioned_in(h.name, &secret))
            return exfiltration(*p, secret, "is in a header name");
        const policy::Provider* p = set.mentioned_in(h.value, &secret);
        if (p == nullptr)
            continue;
        bool is_bound = bound != nullptr && std::find(bound->begin(), bound->end(), p->name) != bound->end();
        if (secret || !is_bound || !same_name(h.name, p->header) || h.value != p->placeholder) {
            std::string where = "is in header " + h.name;
            if (!secret && h.value == p->placeholder && same_name(h.name, p->header))
                where = bound == nullptr ? "was sent on a request no rule allows"
                                         : "was sent on a request whose rule does not list it in credentials";
            return exfiltration(*p, secret, where);
        }
        // Two copies would reach the server as a list (or the first wins
        // somewhere): never inject twice, never leave one behind.
        for (const Replacement& r : replacements)
            if (r.provider == p)
                return exfiltration(*p, false, "is in more than one " + p->header + " header");
        replacements.push_back({i, p});
    }
    CredentialOutcome out;
    for (const Replacement& r : replacements) {
        head.headers[r.header].value = r.provider->header_value;
        out.injected.push_back(r.provider->name);
    }
    if (bound == nullptr)
        return out;
    for (const policy::Provider& p : set.providers()) {
        if (p.service_host.empty() || p.service_host != host)
            continue;
        std::erase_if(head.headers, [&](const http::Header& h) { return same_name(h.name, p.header); });
        head.headers.push_back({p.header, p.header_value});
        out.injected.push_back(p.name);
    }
    return out;
}

} // namespace pinfold::proxy
