#pragma once
// What the resolver does with one query, decided without sockets so it is
// unit tested: refuse it here, answer it from --host entries, or forward
// it upstream; and what of an upstream answer is passed on and remembered.

#include <map>
#include <string>
#include <variant>
#include <vector>

#include "dns/message.hpp"
#include "dns/name_policy.hpp"
#include "pinfold/address.hpp"

namespace pinfold::dns {

struct Refuse {
    Rcode rcode = Rcode::refused;
    std::string reason;
};

struct AnswerLocally {
    std::vector<Record> answers;   // may be empty (name known, no address of that family)
    std::string reason;
};

struct Forward {};

using QueryPlan = std::variant<Refuse, AnswerLocally, Forward>;

// `overrides`: name -> addresses given with --host; they answer without
// asking upstream (and, like the HTTP side, win over it).
[[nodiscard]] QueryPlan plan_query(const Query& query, const NamePolicy& names,
                                   const std::map<std::string, std::vector<MappedAddress>>& overrides);

struct UpstreamAnswer {
    Rcode rcode = Rcode::noerror;
    std::vector<Record> answers;          // what the client gets
    std::vector<MappedAddress> addresses; // of the queried type, for AnswerMemory
};

// Keeps the CNAME chain from the question's name and the A/AAAA records of
// the asked type at its end; drops everything else (records about other
// names are how caches get poisoned). Chains are followed for at most 8
// links.
[[nodiscard]] UpstreamAnswer select_answers(const Query& query, const Response& response);

} // namespace pinfold::dns
