#include "dns/answer_memory.hpp"

#include <algorithm>
#include <mutex>

namespace pinfold::dns {

void AnswerMemory::remember(std::uint64_t sandbox, const std::string& name,
                            const std::vector<MappedAddress>& addresses)
{
    if (addresses.empty())
        return;
    std::unique_lock lock(mutex_);
    auto& names = by_sandbox_[sandbox];
    auto it = names.find(name);
    if (it == names.end()) {
        if (names.size() >= max_names_per_sandbox)
            return;
        it = names.emplace(name, std::vector<MappedAddress>{}).first;
    }
    for (const auto& a : addresses) {
        if (it->second.size() >= max_addresses_per_name)
            break;
        if (std::find(it->second.begin(), it->second.end(), a) == it->second.end())
            it->second.push_back(a);
    }
}

std::optional<std::vector<MappedAddress>> AnswerMemory::recall(std::uint64_t sandbox, const std::string& name) const
{
    std::shared_lock lock(mutex_);
    auto s = by_sandbox_.find(sandbox);
    if (s == by_sandbox_.end())
        return std::nullopt;
    auto n = s->second.find(name);
    if (n == s->second.end())
        return std::nullopt;
    return n->second;
}

} // namespace pinfold::dns
