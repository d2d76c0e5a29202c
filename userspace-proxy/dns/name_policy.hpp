#pragma once
// Which names the resolver may look up at all: those an allow rule of the
// policy could match. Everything else is answered REFUSED locally and never
// leaves the machine, so a query cannot carry data out (DNS exfiltration).

#include <set>
#include <string>
#include <string_view>

#include "policy/policy.hpp"

namespace pinfold::dns {

class NamePolicy {
public:
    // Host names of the policy's allow rules: exact names, and "*.suffix"
    // wildcards (proper subdomains only, as the HTTP matcher reads them).
    // IP-literal endpoints add nothing. Deny rules add nothing either: a
    // name some allow rule mentions may be resolved even if a deny rule
    // covers part of its paths.
    explicit NamePolicy(const policy::Policy& policy);
    NamePolicy() = default;

    // `name`: lowercase, no trailing dot (dns::Question::name).
    [[nodiscard]] bool may_resolve(std::string_view name) const;

private:
    std::set<std::string, std::less<>> exact_;
    std::set<std::string, std::less<>> suffixes_;
};

} // namespace pinfold::dns
