#pragma once
// Text forms of the 16-byte (IPv4-mapped) addresses of the BPF ABI.

#include <array>
#include <cstdint>
#include <string>

namespace pinfold {

using MappedAddress = std::array<std::uint8_t, 16>;

[[nodiscard]] bool is_ipv4_mapped(const MappedAddress& addr) noexcept;
// "1.2.3.4" for mapped addresses, "::1" otherwise.
[[nodiscard]] std::string address_text(const MappedAddress& addr);
// "1.2.3.4:80" or "[::1]:80".
[[nodiscard]] std::string endpoint_text(const MappedAddress& addr, std::uint16_t port);

} // namespace pinfold
