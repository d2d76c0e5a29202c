#include "dns/resolution.hpp"

namespace pinfold::dns {

namespace {

constexpr int max_chain = 8;
constexpr std::uint32_t local_ttl = 60;

bool address_type(std::uint16_t type) { return type == type_a || type == type_aaaa; }

} // namespace

QueryPlan plan_query(const Query& query, const NamePolicy& names,
                     const std::map<std::string, std::vector<MappedAddress>>& overrides)
{
    const Question& q = query.question;
    if (q.klass != class_in)
        return Refuse{Rcode::refused, "class " + std::to_string(q.klass) + " is not IN"};
    if (q.type != type_a && q.type != type_aaaa && q.type != type_cname)
        return Refuse{Rcode::refused, "query type " + type_name(q.type) + " is not A, AAAA or CNAME"};
    if (!names.may_resolve(q.name))
        return Refuse{Rcode::refused, "no allow rule of the policy names this host"};
    if (auto it = overrides.find(q.name); it != overrides.end()) {
        AnswerLocally local;
        for (const auto& addr : it->second) {
            bool v4 = is_ipv4_mapped(addr);
            if ((q.type == type_a && v4) || (q.type == type_aaaa && !v4)) {
                Record r;
                r.name = q.name;
                r.type = q.type;
                r.ttl = local_ttl;
                r.address = addr;
                local.answers.push_back(r);
            }
        }
        local.reason = "answered from --host";
        return local;
    }
    return Forward{};
}

UpstreamAnswer select_answers(const Query& query, const Response& response)
{
    UpstreamAnswer out;
    out.rcode = response.rcode;
    if (response.rcode != Rcode::noerror)
        return out;
    std::string owner = query.question.name;
    for (int link = 0; link <= max_chain; ++link) {
        const Record* cname = nullptr;
        for (const auto& rec : response.answers) {
            if (rec.name != owner)
                continue;
            if (rec.type == type_cname && !cname) {
                cname = &rec;
            } else if (address_type(rec.type) && rec.type == query.question.type) {
                out.answers.push_back(rec);
                out.addresses.push_back(rec.address);
            }
        }
        if (!out.addresses.empty() || !cname)
            break;
        out.answers.push_back(*cname);
        if (query.question.type == type_cname)
            break;
        owner = cname->target;
    }
    return out;
}

} // namespace pinfold::dns
