#include "pinfold/address.hpp"

#include <arpa/inet.h>
#include <cstring>

#include <fmt/format.h>

namespace pinfold {

bool is_ipv4_mapped(const MappedAddress& a) noexcept
{
    static constexpr std::uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(a.data(), prefix, sizeof prefix) == 0;
}

std::string address_text(const MappedAddress& a)
{
    char buf[INET6_ADDRSTRLEN] = {};
    if (is_ipv4_mapped(a))
        ::inet_ntop(AF_INET, a.data() + 12, buf, sizeof buf);
    else
        ::inet_ntop(AF_INET6, a.data(), buf, sizeof buf);
    return buf;
}

std::string endpoint_text(const MappedAddress& a, std::uint16_t port)
{
    // Every audit record carries one: inet_ntop's sprintf was a tenth of
    // the proxy's user-space time per keep-alive request.
    if (is_ipv4_mapped(a))
        return fmt::format("{}.{}.{}.{}:{}", a[12], a[13], a[14], a[15], port);
    return "[" + address_text(a) + "]:" + std::to_string(port);
}

} // namespace pinfold
