#include "policy/endpoint.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>

#include "policy/path_glob.hpp"

namespace pinfold::policy {

namespace {

char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

Result<std::uint16_t> parse_port(std::string_view text)
{
    if (text.empty())
        return fail("port is empty");
    if (!std::all_of(text.begin(), text.end(), is_digit) || text.size() > 5)
        return fail("port '" + std::string(text) + "' is not a number from 1 to 65535");
    unsigned value = 0;
    std::from_chars(text.data(), text.data() + text.size(), value);
    if (value == 0 || value > 65535)
        return fail("port '" + std::string(text) + "' is not a number from 1 to 65535");
    return static_cast<std::uint16_t>(value);
}

} // namespace

Result<std::string> canonical_dns_name(std::string_view name)
{
    if (name.ends_with('.'))
        name.remove_suffix(1);
    if (name.empty())
        return fail("host name is empty");
    if (name.size() > 253)
        return fail("host name is longer than 253 bytes");

    std::string out;
    out.reserve(name.size());
    std::size_t pos = 0;
    std::string_view label;
    for (;;) {
        std::size_t dot = name.find('.', pos);
        label = name.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos);
        if (label.empty())
            return fail("host name '" + std::string(name) + "' has an empty label");
        if (label.size() > 63)
            return fail("host name '" + std::string(name) + "' has a label longer than 63 bytes");
        if (label.front() == '-' || label.back() == '-')
            return fail("host name '" + std::string(name) + "' has a label starting or ending with '-'");
        for (char c : label) {
            char l = lower(c);
            if (!((l >= 'a' && l <= 'z') || is_digit(l) || l == '-'))
                return fail("host name '" + std::string(name) + "' contains '" + std::string(1, c) +
                            "' (only letters, digits, '-' and '.')");
            out += l;
        }
        if (dot == std::string_view::npos)
            break;
        out += '.';
        pos = dot + 1;
    }
    if (std::all_of(label.begin(), label.end(), is_digit))
        return fail("host '" + std::string(name) +
                    "' is neither a valid IPv4 address nor a DNS name (last label is numeric)");
    return out;
}

std::optional<std::string> canonical_ip(std::string_view text)
{
    // A NUL would end inet_pton's view of the text early while the text
    // returned below goes on: "1.2.3.4\0x" must not pass as 1.2.3.4.
    if (text.empty() || text.size() >= INET6_ADDRSTRLEN || text.find('\0') != std::string_view::npos)
        return std::nullopt;
    char input[INET6_ADDRSTRLEN];
    std::copy(text.begin(), text.end(), input);
    input[text.size()] = '\0';

    unsigned char address[sizeof(in6_addr)];
    char output[INET6_ADDRSTRLEN];
    int family = text.find(':') == std::string_view::npos ? AF_INET : AF_INET6;
    if (inet_pton(family, input, address) != 1)
        return std::nullopt;
    // glibc's inet_pton takes IPv4 only as a dotted quad of decimal octets
    // without leading zeros, which is exactly what inet_ntop writes: the
    // text is canonical already (and inet_ntop's sprintf was a hot spot of
    // every request's decision).
    if (family == AF_INET)
        return std::string(text);
    if (inet_ntop(family, address, output, sizeof output) == nullptr)
        return std::nullopt;
    return std::string(output);
}

std::optional<std::string> canonical_request_host(std::string_view host)
{
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
        if (host.find(':') == std::string_view::npos)
            return std::nullopt;
        return canonical_ip(host);
    }
    if (auto ip = canonical_ip(host))
        return ip;
    if (host.find(':') != std::string_view::npos)
        return std::nullopt;
    auto name = canonical_dns_name(host);
    if (!name)
        return std::nullopt;
    return std::move(*name);
}

Result<Endpoint> parse_endpoint(std::string_view text)
{
    for (char c : text) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f)
            return fail("endpoint contains whitespace or a byte that is not printable ASCII");
    }

    Endpoint endpoint;
    endpoint.text = std::string(text);

    std::size_t separator = text.find("://");
    if (separator == std::string_view::npos)
        return fail("endpoint must look like scheme://host[:port]/path");
    std::string_view scheme = text.substr(0, separator);
    if (scheme == "https")
        endpoint.port = 443;
    else if (scheme == "http")
        endpoint.port = 80;
    else
        return fail("scheme '" + std::string(scheme) + "' is not 'http' or 'https'");
    endpoint.scheme = std::string(scheme);

    std::string_view rest = text.substr(separator + 3);
    if (rest.find('?') != std::string_view::npos)
        return fail("endpoint must not contain a query ('?')");
    if (rest.find('#') != std::string_view::npos)
        return fail("endpoint must not contain a fragment ('#')");
    std::size_t slash = rest.find('/');
    if (slash == std::string_view::npos)
        return fail("endpoint has no path (write '/' or '/**' after the host)");
    std::string_view authority = rest.substr(0, slash);
    std::string_view path = rest.substr(slash);
    if (authority.find('@') != std::string_view::npos)
        return fail("endpoint must not contain user info ('@')");
    if (authority.empty())
        return fail("host is empty");

    std::string_view host;
    std::optional<std::string_view> port_text;
    if (authority.front() == '[') {
        std::size_t close = authority.find(']');
        if (close == std::string_view::npos)
            return fail("'[' without ']' around an IPv6 address");
        host = authority.substr(1, close - 1);
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':')
                return fail("unexpected text after ']': '" + std::string(after) + "'");
            port_text = after.substr(1);
        }
        if (host.find(':') == std::string_view::npos)
            return fail("'[" + std::string(host) + "]' is not an IPv6 address");
        auto ip = canonical_ip(host);
        if (!ip)
            return fail("'[" + std::string(host) + "]' is not a valid IPv6 address");
        endpoint.host = std::move(*ip);
    } else {
        std::size_t colon = authority.find(':');
        if (colon != authority.rfind(':'))
            return fail("IPv6 address must be in brackets ('[::1]')");
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos)
            port_text = authority.substr(colon + 1);
        if (host.empty())
            return fail("host is empty");
        if (host.starts_with("*.")) {
            host.remove_prefix(2);
            if (host.find('*') != std::string_view::npos)
                return fail("'*' is allowed only as the whole first label of a host");
            auto name = canonical_dns_name(host);
            if (!name)
                return std::unexpected(name.error());
            endpoint.host = std::move(*name);
            endpoint.wildcard_host = true;
        } else if (host.find('*') != std::string_view::npos) {
            return fail("'*' is allowed only as the whole first label of a host ('*.example.com')");
        } else if (auto ip = canonical_ip(host)) {
            endpoint.host = std::move(*ip);
        } else {
            auto name = canonical_dns_name(host);
            if (!name)
                return std::unexpected(name.error());
            endpoint.host = std::move(*name);
        }
    }
    if (port_text) {
        auto port = parse_port(*port_text);
        if (!port)
            return std::unexpected(port.error());
        endpoint.port = *port;
    }

    auto glob = normalize_glob(path);
    if (!glob)
        return std::unexpected(glob.error());
    endpoint.path_glob = std::move(*glob);
    return endpoint;
}

} // namespace pinfold::policy
