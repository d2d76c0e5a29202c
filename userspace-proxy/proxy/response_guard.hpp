#pragma once
// The response to a request the proxy put a secret into. A server that
// reflects request headers (an echo endpoint, an error page quoting the
// request) would hand the sandbox the very secret the proxy exists to keep
// from it. The guard sees the head whole and the body's payload in order;
// it holds back only a tail that could be the start of a secret, so no
// byte of a reflected secret is ever delivered, and a stream is delayed
// only while its last bytes look like one. Pure: unit-tested at every
// split.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/credentials.hpp"

namespace pinfold::proxy {

class ResponseSecretGuard {
public:
    // What the response must never carry for these providers: each secret,
    // and the header value as sent (for Basic auth only that one shows it).
    ResponseSecretGuard(const policy::CredentialSet& set, const std::vector<std::string>& injected);

    // The provider whose secret is in a complete head, or nullptr.
    [[nodiscard]] const policy::Provider* head_leak(std::string_view head) const;

    // Body payload in order. Returns the bytes that may be delivered now,
    // or nullopt once a secret is complete in what was seen (`*leaked`
    // names its provider): nothing of it has been delivered.
    [[nodiscard]] std::optional<std::string> feed(std::string_view payload, const policy::Provider** leaked);

    // The body ended: what is still held back (it can no longer complete a
    // secret).
    [[nodiscard]] std::string finish();

private:
    struct Needle {
        std::string bytes;
        const policy::Provider* provider;
    };
    std::vector<Needle> needles_;
    std::string held_;
};

} // namespace pinfold::proxy
