#pragma once
// The decision for one HTTP request: is the Host consistent with where
// the client actually connected, and does the sandbox's policy allow it?
// Pure apart from name resolution (an interface), so it is unit tested.
//
// The consistency rule: the proxy never connects anywhere the client did
// not dial. The request is forwarded to the dialled (address, port) and
// only if (a) the Host port equals the dialled port and (b) the Host is an
// IP literal equal to the dialled address, or a name whose resolved
// addresses include it. A client that dials A with `Host: allowed.example`
// is refused unless A is an address of allowed.example.

#include <string>

#include "connection_origin.hpp"
#include "http/parser.hpp"
#include "policy/policy.hpp"
#include "resolver.hpp"

namespace pinfold::proxy {

struct HostPort {
    std::string host;   // lowercase, no trailing dot; IPv6 without brackets
    std::uint16_t port = 0;
};

// Splits a Host header value; `default_port` when it names none.
[[nodiscard]] Result<HostPort> parse_host_header(std::string_view value, std::uint16_t default_port);

struct GateDecision {
    bool allowed = false;
    int status = 403;            // what to answer when not allowed
    std::string rule;            // matched rule, "" when none
    std::string reason;
    std::string host;
    std::string path;            // normalised path (what was matched)
    std::string upstream_target; // normalised path + query, sent upstream
};

[[nodiscard]] GateDecision decide_request(const policy::CompiledPolicy* policy, Resolver& resolver,
                                          const ConnectionOrigin& origin, const http::RequestHead& head,
                                          std::string_view scheme);

} // namespace pinfold::proxy
