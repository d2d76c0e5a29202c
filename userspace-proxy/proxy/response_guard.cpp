#include "response_guard.hpp"

#include <algorithm>

#include "http/syntax.hpp"

namespace pinfold::proxy {

ResponseSecretGuard::ResponseSecretGuard(const policy::CredentialSet& set, const std::vector<std::string>& injected)
{
    for (const auto& name : injected) {
        const policy::Provider* p = set.find(name);
        if (!p)
            continue;
        provider_names_ += (provider_names_.empty() ? "'" : ", '") + p->name + "'";
        for (const std::string* bytes : {&p->secret, &p->header_value}) {
            // A header value that contains the secret adds nothing.
            if (bytes->empty() || (bytes == &p->header_value && !p->secret.empty() &&
                                   bytes->find(p->secret) != std::string::npos))
                continue;
            needles_.push_back(Needle{*bytes, p});
            longest_ = std::max(longest_, bytes->size());
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

std::string ResponseSecretGuard::unreadable_coding(std::string_view head)
{
    std::string found;
    std::size_t eol = head.find('\n');   // the status line
    while (found.empty() && eol != std::string_view::npos && eol + 1 < head.size()) {
        std::size_t start = eol + 1;
        eol = head.find('\n', start);
        std::string_view line = head.substr(start, eol == std::string_view::npos ? std::string_view::npos : eol - start);
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        std::size_t colon = line.find(':');
        if (colon == std::string_view::npos)
            continue;
        std::string_view name = line.substr(0, colon);
        bool content = http::syntax::iequals(name, "content-encoding");
        if (!content && !http::syntax::iequals(name, "transfer-encoding"))
            continue;
        http::syntax::for_each_list_element(line.substr(colon + 1), [&](std::string_view coding) {
            if (coding.empty() || http::syntax::iequals(coding, "identity") ||
                (!content && http::syntax::iequals(coding, "chunked")))
                return true;
            found = std::string(content ? "Content-Encoding: " : "Transfer-Encoding: ") + std::string(coding);
            return false;
        });
    }
    return found;
}

bool ResponseSecretGuard::feed(std::string_view payload, std::string& out, const policy::Provider** leaked)
{
    if (needles_.empty()) {
        out.append(payload);
        return true;
    }
    // A needle lies inside the payload, or across the held tail and the
    // payload's first longest_-1 bytes (the seam); nowhere else is new.
    std::string seam = held_;
    seam.append(payload.substr(0, std::min(payload.size(), longest_ - 1)));
    for (const auto& n : needles_) {
        if (payload.find(n.bytes) != std::string_view::npos || seam.find(n.bytes) != std::string::npos) {
            if (leaked)
                *leaked = n.provider;
            return false;
        }
    }
    // The longest tail of everything seen that is a proper prefix of a
    // needle: it may become the needle with the next bytes, so it waits.
    std::string_view tail = payload.size() >= longest_ - 1 ? payload.substr(payload.size() - (longest_ - 1))
                                                           : std::string_view(seam);
    std::size_t hold = 0;
    for (const auto& n : needles_) {
        std::string_view needle = n.bytes;
        for (std::size_t k = std::min(tail.size(), needle.size() - 1); k > hold; --k) {
            if (tail.substr(tail.size() - k) == needle.substr(0, k)) {
                hold = k;
                break;
            }
        }
    }
    if (hold <= payload.size()) {
        out.append(held_);
        out.append(payload.substr(0, payload.size() - hold));
        held_.assign(payload.substr(payload.size() - hold));
    } else {
        // The held tail grows: only what falls off its front goes out.
        std::size_t keep_of_held = hold - payload.size();
        out.append(held_, 0, held_.size() - keep_of_held);
        held_.erase(0, held_.size() - keep_of_held);
        held_.append(payload);
    }
    return true;
}

void ResponseSecretGuard::finish(std::string& out)
{
    out.append(held_);
    held_.clear();
}

} // namespace pinfold::proxy
