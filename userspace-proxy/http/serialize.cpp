#include "http/parser.hpp"

#include "http/syntax.hpp"

#include <algorithm>
#include <array>
#include <vector>

namespace pinfold::http {

namespace {

constexpr std::array<std::string_view, 7> hop_by_hop = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authorization",
};

bool in_list(const auto& names, std::string_view name) noexcept
{
    return std::any_of(names.begin(), names.end(), [&](std::string_view n) { return syntax::iequals(n, name); });
}

} // namespace

std::string serialize_request_head(const RequestHead& head, std::string_view target)
{
    if (target.empty() ||
        !std::all_of(target.begin(), target.end(), [](char c) { return syntax::is_vchar(static_cast<unsigned char>(c)); }))
        return {};

    std::vector<std::string_view> connection_named;
    for (const auto& header : head.headers)
        if (syntax::iequals(header.name, "connection"))
            (void)syntax::for_each_list_element(header.value, [&](std::string_view name) {
                connection_named.push_back(name);
                return true;
            });

    const auto dropped = [&](std::string_view name) {
        // Host decides routing and policy; a client naming it in Connection
        // must not make upstream see a request without it.
        if (syntax::iequals(name, "host"))
            return false;
        // Framing is re-emitted from what we parsed, so upstream frames the
        // body exactly as we validated it.
        if (syntax::iequals(name, "content-length") || syntax::iequals(name, "transfer-encoding"))
            return true;
        // We speak 1.1 upstream; a 1.0 client's 100-continue was ignored
        // (RFC 9110 10.1.1) and must not bring it an interim response.
        if (head.minor_version == 0 && syntax::iequals(name, "expect"))
            return true;
        return in_list(hop_by_hop, name) || in_list(connection_named, name);
    };

    std::string out;
    out.reserve(256);
    out.append(head.method).append(" ").append(target).append(" HTTP/1.1\r\n");
    // HTTP/1.1 requires Host; a 1.0 client with an absolute-form target may
    // have given it only there.
    if (!head.find("host") && !head.host.empty())
        out.append("Host: ").append(head.host).append("\r\n");
    for (const auto& header : head.headers) {
        if (dropped(header.name))
            continue;
        out.append(header.name).append(": ").append(header.value).append("\r\n");
    }
    if (head.body == BodyKind::content_length)
        out.append("Content-Length: ").append(std::to_string(head.content_length)).append("\r\n");
    else if (head.body == BodyKind::chunked)
        out.append("Transfer-Encoding: chunked\r\n");
    out.append("\r\n");
    return out;
}

} // namespace pinfold::http
