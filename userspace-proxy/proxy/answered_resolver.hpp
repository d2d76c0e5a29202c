#pragma once
// The Host consistency rule with pinfold's DNS resolver in the loop (no DNS
// rebinding): when the resolver answered `name` to a sandbox, the addresses
// it answered are the only ones that sandbox may dial under that name. A
// name it never asked pinfold about (a --host entry, a client with a
// hard-coded address, a name resolved before the run) falls back to the
// proxy's own lookup, which is what the rule used before DNS was steered.
//
// So a sandbox that resolves allowed.example (answer A) and then dials B
// with Host: allowed.example is refused, even if B became an address of
// allowed.example in the meantime (rebinding in either direction), and a
// round-robin upstream cannot make the proxy's view and the sandbox's
// disagree.

#include "dns/answer_memory.hpp"
#include "resolver.hpp"

namespace pinfold::proxy {

class AnsweredResolver final : public Resolver {
public:
    AnsweredResolver(const dns::AnswerMemory& memory, Resolver& fallback) noexcept
        : memory_(memory), fallback_(fallback) {}
    [[nodiscard]] Result<std::vector<MappedAddress>> resolve(const std::string& name) noexcept override;
    [[nodiscard]] Result<std::vector<MappedAddress>> resolve_for(std::uint64_t sandbox,
                                                                 const std::string& name) noexcept override;

private:
    const dns::AnswerMemory& memory_;
    Resolver& fallback_;
};

} // namespace pinfold::proxy
