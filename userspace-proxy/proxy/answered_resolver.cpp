#include "answered_resolver.hpp"

namespace pinfold::proxy {

Result<std::vector<MappedAddress>> AnsweredResolver::resolve(const std::string& name) noexcept
{
    return fallback_.resolve(name);
}

Result<std::vector<MappedAddress>> AnsweredResolver::resolve_for(std::uint64_t sandbox,
                                                                 const std::string& name) noexcept
{
    try {
        if (auto answered = memory_.recall(sandbox, name))
            return *answered;
    } catch (const std::exception& e) {
        return fail("recall DNS answers for " + name + ": " + e.what());
    }
    return fallback_.resolve_for(sandbox, name);
}

} // namespace pinfold::proxy
