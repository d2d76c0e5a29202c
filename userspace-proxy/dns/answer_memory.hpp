#pragma once
// Addresses the resolver answered, per sandbox and name. The HTTP side
// checks a dialled address against the Host name with it (see
// proxy/answered_resolver.hpp): the sandbox may only dial, under a name,
// an address that name was given to it as. Thread-safe: the resolver thread
// writes, the proxy's event loop reads.

#include <cstdint>
#include <map>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "pinfold/address.hpp"

namespace pinfold::dns {

class AnswerMemory {
public:
    // Bounds so a sandbox cannot grow our memory without limit: beyond
    // them, new names are not remembered (the HTTP side then falls back to
    // its own lookup, which can only be stricter).
    static constexpr std::size_t max_names_per_sandbox = 4096;
    static constexpr std::size_t max_addresses_per_name = 64;

    // Adds (never replaces): an address once answered stays valid for the
    // run, so a short TTL cannot make a client's cached answer unusable.
    void remember(std::uint64_t sandbox, const std::string& name, const std::vector<MappedAddress>& addresses);

    // The addresses answered for `name` to `sandbox`; nullopt if none.
    [[nodiscard]] std::optional<std::vector<MappedAddress>> recall(std::uint64_t sandbox,
                                                                    const std::string& name) const;

private:
    mutable std::shared_mutex mutex_;
    std::map<std::uint64_t, std::map<std::string, std::vector<MappedAddress>, std::less<>>> by_sandbox_;
};

} // namespace pinfold::dns
