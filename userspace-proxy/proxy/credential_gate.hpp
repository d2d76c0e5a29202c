#pragma once
// Credential injection for one request head: the placeholder of a provider
// becomes the real header value only in that provider's header, only on a
// request an allow rule bound to it; a placeholder token or secret anywhere
// else in the head denies the request (possible exfiltration). Pure, so it
// is unit-tested.

#include <string>
#include <string_view>
#include <vector>

#include "http/message.hpp"
#include "policy/credentials.hpp"

namespace pinfold::proxy {

struct CredentialOutcome {
    bool allowed = true;
    std::string reason;                 // why not (redacted: names the provider, never a value)
    std::vector<std::string> injected;  // provider names put into the head
};

// `bound`: the credentials of the allow rule that matched, or nullptr when
// the request was not allowed (then nothing is injected, only checked).
// `head` is changed only when the outcome allows. `host` (the decided Host,
// lowercase) selects host-side services: an allowed request to one gets its
// header from the proxy, whatever the sandbox sent in that header. A request
// that got a secret asks for `Accept-Encoding: identity` and loses any
// `Range`, so that the response guard reads what comes back whole.
[[nodiscard]] CredentialOutcome apply_credentials(const policy::CredentialSet& set,
                                                  const std::vector<std::string>* bound, http::RequestHead& head,
                                                  std::string_view upstream_target, std::string_view host = {});

} // namespace pinfold::proxy
