#include "request_gate.hpp"

#include <algorithm>
#include <charconv>

namespace pinfold::proxy {

Result<HostPort> parse_host_header(std::string_view value, std::uint16_t default_port)
{
    HostPort out;
    std::string_view host = value;
    std::string_view port;
    if (!value.empty() && value.front() == '[') {
        auto close = value.find(']');
        if (close == std::string_view::npos)
            return fail("Host '" + std::string(value) + "': unterminated IPv6 literal");
        host = value.substr(1, close - 1);
        auto rest = value.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':')
                return fail("Host '" + std::string(value) + "': junk after IPv6 literal");
            port = rest.substr(1);
        }
        auto addr = parse_address(host);
        if (!addr)
            return fail("Host '" + std::string(value) + "': invalid IPv6 literal");
        out.host = address_text(*addr);
    } else {
        auto colon = value.rfind(':');
        if (colon != std::string_view::npos) {
            host = value.substr(0, colon);
            port = value.substr(colon + 1);
        }
        out.host.assign(host);
        std::transform(out.host.begin(), out.host.end(), out.host.begin(),
                       [](unsigned char c) { return std::tolower(c); });
        if (!out.host.empty() && out.host.back() == '.')
            out.host.pop_back();
    }
    if (out.host.empty())
        return fail("Host header names no host");
    if (port.empty()) {
        if (value.ends_with(":"))
            return fail("Host '" + std::string(value) + "': empty port");
        out.port = default_port;
        return out;
    }
    unsigned parsed = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), parsed);
    if (ec != std::errc() || ptr != port.data() + port.size() || parsed == 0 || parsed > 65535)
        return fail("Host '" + std::string(value) + "': invalid port");
    out.port = static_cast<std::uint16_t>(parsed);
    return out;
}

namespace {

GateDecision deny(GateDecision d, int status, std::string reason)
{
    d.allowed = false;
    d.status = status;
    d.reason = std::move(reason);
    return d;
}

// The path part of an origin-form or absolute-form target.
std::string_view origin_form_of(std::string_view target)
{
    for (std::string_view scheme : {"http://", "https://"}) {
        if (target.size() >= scheme.size() &&
            std::equal(scheme.begin(), scheme.end(), target.begin(),
                       [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
            auto rest = target.substr(scheme.size());
            auto slash = rest.find('/');
            return slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
        }
    }
    return target;
}

} // namespace

GateDecision decide_request(const policy::CompiledPolicy* policy, Resolver& resolver, const ConnectionOrigin& origin,
                            const http::RequestHead& head, std::string_view scheme)
{
    GateDecision d;
    std::uint16_t default_port = scheme == "https" ? 443 : 80;
    auto host = parse_host_header(head.host, default_port);
    if (!host)
        return deny(std::move(d), 400, host.error().message);
    d.host = host->host;

    auto target = policy::normalize_target(origin_form_of(head.target));
    if (!target)
        return deny(std::move(d), 403, "request target refused: " + target.error().message);
    d.path = target->path;
    d.upstream_target = target->query.empty() ? target->path : target->path + "?" + target->query;

    if (host->port != origin.port)
        return deny(std::move(d), 403,
                    "Host port " + std::to_string(host->port) + " differs from dialled port " +
                        std::to_string(origin.port));
    if (auto literal = parse_address(host->host)) {
        if (*literal != origin.address)
            return deny(std::move(d), 403,
                        "Host " + host->host + " is not the dialled address " + address_text(origin.address));
    } else {
        auto addresses = resolver.resolve_for(origin.sandbox_id, host->host);
        if (!addresses)
            return deny(std::move(d), 403, addresses.error().message);
        if (std::find(addresses->begin(), addresses->end(), origin.address) == addresses->end())
            return deny(std::move(d), 403,
                        "dialled address " + address_text(origin.address) + " is not an address of " + host->host);
    }
    if (!policy)
        return deny(std::move(d), 403, "no policy for this sandbox");

    policy::Request request{scheme, d.host, origin.port, head.method, d.path};
    request.exe = origin.exe;
    request.exe_name = origin.exe_name;
    auto decision = policy->decide(request);
    d.rule = decision.rule_name;
    d.reason = decision.reason;
    d.allowed = decision.allowed;
    d.status = decision.allowed ? 0 : 403;
    return d;
}

} // namespace pinfold::proxy
