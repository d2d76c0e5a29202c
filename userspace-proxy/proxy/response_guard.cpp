#include "response_guard.hpp"

#include <algorithm>
#include <utility>

namespace pinfold::proxy {

ResponseSecretGuard::ResponseSecretGuard(const policy::CredentialSet& set, const std::vector<std::string>& injected)
{
    for (const auto& name : injected) {
        const policy::Provider* p = set.find(name);
        if (!p)
            continue;
        for (const std::string* bytes : {&p->secret, &p->header_value}) {
            // A header value that contains the secret adds nothing.
            if (bytes->empty() || (bytes == &p->header_value && !p->secret.empty() &&
                                   bytes->find(p->secret) != std::string::npos))
                continue;
            needles_.push_back(Needle{*bytes, p});
        }
    }
}

const policy::Provider* ResponseSecretGuard::head_leak(std::string_view head) const
{
    for (const auto& n : needles_) {
        if (head.find(n.bytes) != std::string_view::npos)
            return n.provider;
    }
    return nullptr;
}

std::optional<std::string> ResponseSecretGuard::feed(std::string_view payload, const policy::Provider** leaked)
{
    held_.append(payload);
    std::string_view window = held_;
    std::size_t hold = 0;
    for (const auto& n : needles_) {
        if (window.find(n.bytes) != std::string_view::npos) {
            if (leaked)
                *leaked = n.provider;
            return std::nullopt;
        }
        // The longest tail that is a proper prefix of this needle: it may
        // become the needle with the next bytes, so it waits for them.
        std::string_view needle = n.bytes;
        for (std::size_t k = std::min(window.size(), needle.size() - 1); k > hold; --k) {
            if (window.substr(window.size() - k) == needle.substr(0, k)) {
                hold = k;
                break;
            }
        }
    }
    std::string out = held_.substr(0, held_.size() - hold);
    held_.erase(0, held_.size() - hold);
    return out;
}

std::string ResponseSecretGuard::finish()
{
    return std::exchange(held_, {});
}

} // namespace pinfold::proxy
