#include <algorithm>
#include <optional>

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
    auto is_bound = [bound](const policy::Provider& p) {
        return bound != nullptr && p.service_host.empty() &&
               std::find(bound->begin(), bound->end(), p.name) != bound->end();
    };
    for (std::size_t i = 0; i < head.headers.size(); ++i) {
        const http::Header& h = head.headers[i];
        if (const policy::Provider* p = set.mentioned_in(h.name, &secret))
            return exfiltration(*p, secret, "is in a header name");
        // Basic credentials hide the placeholder in base64: look inside.
        std::optional<std::string> decoded = policy::CredentialSet::decode_basic(h.value);
        bool decoded_secret = false;
        const policy::Provider* p = set.mentioned_in(h.value, &secret);
        const policy::Provider* in_decoded = decoded ? set.mentioned_in(*decoded, &decoded_secret) : nullptr;
        if (p == nullptr && in_decoded == nullptr)
            continue;
        if (p == nullptr || (!secret && decoded_secret)) {
            p = in_decoded;
            secret = decoded_secret;
        }
        // The provider whose placeholder this header is, exactly (several
        // providers may share a token, e.g. a header and a basic one).
        const policy::Provider* exact = nullptr;
        bool exact_anywhere = false;
        for (const policy::Provider& candidate : set.providers()) {
            if (!candidate.service_host.empty() || !same_name(h.name, candidate.header))
                continue;
            bool same = h.value == candidate.placeholder;
            if (!same && candidate.type == "basic" && decoded)
                same = *decoded == policy::CredentialSet::decode_basic(candidate.placeholder);
            if (!same)
                continue;
            exact_anywhere = true;
            if (is_bound(candidate)) {
                exact = &candidate;
                break;
            }
        }
        if (secret || exact == nullptr) {
            std::string where = "is in header " + h.name;
            if (!secret && exact_anywhere)
                where = bound == nullptr ? "was sent on a request no rule allows"
                                         : "was sent on a request whose rule does not list it in credentials";
            return exfiltration(*p, secret, where);
        }
        // Two copies would reach the server as a list (or the first wins
        // somewhere): never inject twice, never leave one behind.
        for (const Replacement& r : replacements)
            if (r.provider == exact || same_name(head.headers[r.header].name, h.name))
                return exfiltration(*exact, false, "is in more than one " + exact->header + " header");
        replacements.push_back({i, exact});
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
    // The response is searched for the secret before delivery
    // (response_guard.hpp), so the sandbox may not ask for a view of it
    // that the search cannot see whole: compressed (the server is asked for
    // the body as is), or a byte range (a reflected secret fetched a few
    // bytes at a time). A server may always answer a range with the whole.
    if (!out.injected.empty()) {
        std::erase_if(head.headers, [](const http::Header& h) {
            return same_name(h.name, "Accept-Encoding") || same_name(h.name, "Range") || same_name(h.name, "If-Range");
        });
        head.headers.push_back({"Accept-Encoding", "identity"});
    }
    return out;
}

} // namespace pinfold::proxy
