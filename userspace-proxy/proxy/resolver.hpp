#pragma once
// Name resolution for the Host consistency check: which addresses does
// a name have? Static entries (--host NAME=ADDR) win over the system
// resolver.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "pinfold/address.hpp"
#include "pinfold/error.hpp"

namespace pinfold::proxy {

class Resolver {
public:
    virtual ~Resolver() = default;
    [[nodiscard]] virtual Result<std::vector<MappedAddress>> resolve(const std::string& name) noexcept = 0;
    // The addresses of `name` as far as `sandbox` may dial them under that
    // name. By default the same for every sandbox; AnsweredResolver narrows
    // it to what pinfold's DNS resolver told that sandbox.
    [[nodiscard]] virtual Result<std::vector<MappedAddress>> resolve_for(std::uint64_t sandbox,
                                                                         const std::string& name) noexcept
    {
        (void)sandbox;
        return resolve(name);
    }
};

// Parses an address literal ("1.2.3.4", "::1", "[::1]") into mapped form.
[[nodiscard]] Result<MappedAddress> parse_address(std::string_view text);

class SystemResolver final : public Resolver {
public:
    // `overrides`: name -> addresses, consulted first.
    explicit SystemResolver(std::map<std::string, std::vector<MappedAddress>> overrides)
        : overrides_(std::move(overrides)) {}
    // Blocking getaddrinfo for names without an override.
    [[nodiscard]] Result<std::vector<MappedAddress>> resolve(const std::string& name) noexcept override;

private:
    std::map<std::string, std::vector<MappedAddress>> overrides_;
};

// "NAME=ADDR[,ADDR...]" as given to --host.
[[nodiscard]] Result<std::pair<std::string, std::vector<MappedAddress>>> parse_host_override(std::string_view text);

} // namespace pinfold::proxy
