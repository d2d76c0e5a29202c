#include "resolver.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cstring>

namespace pinfold::proxy {

Result<MappedAddress> parse_address(std::string_view text)
{
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
        text = text.substr(1, text.size() - 2);
    std::string s(text);
    MappedAddress out{};
    in_addr v4{};
    if (::inet_pton(AF_INET, s.c_str(), &v4) == 1) {
        out[10] = 0xff;
        out[11] = 0xff;
        std::memcpy(out.data() + 12, &v4, 4);
        return out;
    }
    if (::inet_pton(AF_INET6, s.c_str(), out.data()) == 1)
        return out;
    return fail("'" + s + "' is not an IP address");
}

Result<std::vector<MappedAddress>> SystemResolver::resolve(const std::string& name) noexcept
{
    try {
        if (auto it = overrides_.find(name); it != overrides_.end())
            return it->second;
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* result = nullptr;
        int rc = ::getaddrinfo(name.c_str(), nullptr, &hints, &result);
        if (rc != 0)
            return fail("cannot resolve " + name + ": " + ::gai_strerror(rc));
        std::vector<MappedAddress> addresses;
        for (auto* ai = result; ai; ai = ai->ai_next) {
            MappedAddress a{};
            if (ai->ai_family == AF_INET) {
                a[10] = 0xff;
                a[11] = 0xff;
                std::memcpy(a.data() + 12, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, 4);
            } else if (ai->ai_family == AF_INET6) {
                std::memcpy(a.data(), &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, 16);
            } else {
                continue;
            }
            if (std::find(addresses.begin(), addresses.end(), a) == addresses.end())
                addresses.push_back(a);
        }
        ::freeaddrinfo(result);
        return addresses;
    } catch (const std::exception& e) {
        return fail(std::string("resolve ") + name + ": " + e.what());
    }
}

Result<std::pair<std::string, std::vector<MappedAddress>>> parse_host_override(std::string_view text)
{
    auto eq = text.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size())
        return fail("--host '" + std::string(text) + "': expected NAME=ADDR[,ADDR...]");
    std::string name(text.substr(0, eq));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    std::vector<MappedAddress> addresses;
    std::string_view rest = text.substr(eq + 1);
    while (!rest.empty()) {
        auto comma = rest.find(',');
        auto item = rest.substr(0, comma);
        auto addr = parse_address(item);
        if (!addr)
            return fail("--host '" + std::string(text) + "': " + addr.error().message);
        addresses.push_back(*addr);
        if (comma == std::string_view::npos)
            break;
        rest = rest.substr(comma + 1);
    }
    return std::pair{name, addresses};
}

} // namespace pinfold::proxy
