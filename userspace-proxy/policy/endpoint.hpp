#pragma once
// Endpoints of rules: "scheme://host[:port]/path-glob", and the host
// canonicalisation shared by rules and requests so both compare equal.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "pinfold/error.hpp"

namespace pinfold::policy {

struct Endpoint {
    std::string scheme;      // "http" or "https"
    // Lowercase DNS name without trailing dot, canonical IPv4, or canonical
    // IPv6 without brackets. For a wildcard ("*.example.com") this is the
    // suffix ("example.com") and wildcard_host is true.
    std::string host;
    bool wildcard_host = false;
    std::uint16_t port = 0;  // explicit or 80/443
    std::string path_glob;   // normalised (see normalize_glob)
    std::string text;        // as written in the policy
};

// Error messages say what is wrong without location; the caller adds it.
[[nodiscard]] Result<Endpoint> parse_endpoint(std::string_view text);

// Lowercase, one trailing dot dropped, LDH labels of 1..63 bytes, at most
// 253 bytes. A name whose last label is all digits is refused: resolvers
// read "127.1" or "0x7f.1" as addresses, so it is neither a name nor an IP.
[[nodiscard]] Result<std::string> canonical_dns_name(std::string_view name);

// Canonical text of an IPv4 (dotted quad, no leading zeros) or IPv6 literal
// (no brackets, no zone), or nullopt when text is neither.
[[nodiscard]] std::optional<std::string> canonical_ip(std::string_view text);

// The form a request's host must take to be looked up: IP literals in
// canonical form (brackets dropped), names lowercase without trailing dot.
// nullopt when the host is not valid in either form; such a request can only
// be denied.
[[nodiscard]] std::optional<std::string> canonical_request_host(std::string_view host);

} // namespace pinfold::policy
