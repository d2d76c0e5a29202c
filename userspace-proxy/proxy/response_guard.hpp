#pragma once
// The response to a request the proxy put a secret into. A server that
// reflects request headers (an echo endpoint, an error page quoting the
// request) would hand the sandbox the very secret the proxy exists to keep
// from it. The guard sees the head whole and the body's payload in order;
// it holds back only a tail that could be the start of a secret, so no
// byte of a reflected secret is ever delivered, and a stream is delayed
// only while its last bytes look like one. Pure: unit-tested at every
// split.

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

    // A coding of a complete (already validated) head that the guard cannot
    // read through, as "Content-Encoding: gzip" or "Transfer-Encoding: gzip";
    // empty when the payload is the body as is. A secret echoed inside a
    // gzip body would pass any byte search, so such a response is not
    // delivered (the request asked for identity: credential_gate.hpp).
    [[nodiscard]] static std::string unreadable_coding(std::string_view head);

    // The providers guarded, for messages: "'a', 'b'".
    [[nodiscard]] const std::string& provider_names() const noexcept { return provider_names_; }

    // Body payload in order. Appends to `out` the bytes that may be
    // delivered now (held-back ones first) and returns true; or returns
    // false, `out` untouched and `*leaked` naming the provider, once a
    // secret is complete in what was seen: nothing of it was released.
    // The payload is copied once, into `out`.
    [[nodiscard]] bool feed(std::string_view payload, std::string& out, const policy::Provider** leaked);

    // The body ended: appends what is still held back (it can no longer
    // complete a secret).
    void finish(std::string& out);

private:
    struct Needle {
        std::string bytes;
        const policy::Provider* provider;
    };
    std::vector<Needle> needles_;
    std::size_t longest_ = 0;   // of the needles
    std::string held_;          // a proper prefix of some needle, never released yet
    std::string provider_names_;
};

} // namespace pinfold::proxy
