#pragma once
// The decision for one TLS connection, from its ClientHello alone: deny,
// pass through without decrypting, or intercept. Pure apart from name
// resolution (an interface), so it is unit tested.
//
// The consistency rule for TLS: the server name (SNI) plays the part of the
// Host header - it must be a DNS name whose addresses include the dialled
// one. Without SNI the connection is refused unless a rule names the
// dialled IP itself (clients send no SNI for https://10.0.0.5/). Inside an
// intercepted session every request's Host must also equal the SNI, so
// SNI, Host and dialled address all agree (no domain fronting).

#include <string>

#include "connection_origin.hpp"
#include "policy/policy.hpp"
#include "resolver.hpp"
#include "tls/client_hello.hpp"

namespace pinfold::proxy {

enum class TlsAction { deny, passthrough, intercept };

struct TlsVerdict {
    TlsAction action = TlsAction::deny;
    std::string identity;   // the SNI name, or the dialled IP without SNI
    std::string rule;       // the rule that decided pass-through/intercept
    std::string reason;
};

[[nodiscard]] TlsVerdict decide_tls(const policy::CompiledPolicy* policy, Resolver& resolver,
                                    const ConnectionOrigin& origin, const tls::ClientHello& hello);

} // namespace pinfold::proxy
