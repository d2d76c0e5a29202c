// pinfold's resolver without sockets: DNS message parsing and building
// (every byte split, every truncation, every single-byte corruption), the
// name policy, the query plan, answer selection, the answer memory and its
// use by the Host check.
#include <doctest/doctest.h>

#include <cstring>

#include "dns/answer_memory.hpp"
#include "dns/dns_server.hpp"
#include "dns/message.hpp"
#include "dns/name_policy.hpp"
#include "dns/resolution.hpp"
#include "proxy/answered_resolver.hpp"
#include "proxy/resolver.hpp"

using namespace pinfold;
using namespace pinfold::dns;
using Bytes = std::vector<std::uint8_t>;

namespace {

MappedAddress addr(std::string_view text) { return *proxy::parse_address(text); }

Bytes bytes(std::initializer_list<int> list)
{
    Bytes out;
    for (int b : list)
        out.push_back(static_cast<std::uint8_t>(b));
    return out;
}

void append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }

Bytes encoded_name(std::string_view name)
{
    Bytes out;
    while (!name.empty()) {
        auto dot = name.find('.');
        auto label = name.substr(0, dot);
        out.push_back(static_cast<std::uint8_t>(label.size()));
        out.insert(out.end(), label.begin(), label.end());
        if (dot == std::string_view::npos)
            break;
        name.remove_prefix(dot + 1);
    }
    out.push_back(0);
    return out;
}

// A query as a stub resolver sends it: id 0x1234, RD.
Bytes query_bytes(std::string_view name, std::uint16_t type = type_a)
{
    Bytes out = bytes({0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0});
    append(out, encoded_name(name));
    append(out, bytes({type >> 8, type & 0xff, 0, 1}));
    return out;
}

policy::Policy parse(std::string_view yaml)
{
    auto parsed = policy::parse_policy(yaml, "test.yaml");
    REQUIRE(parsed);
    return std::move(*parsed);
}

const char* policy_text = R"(name: dns
rules:
  - name: api
    endpoint: http://api.example/**
  - name: wild
    endpoint: https://*.cdn.example/**
  - name: ip
    endpoint: http://10.0.0.1/**
  - name: closed
    endpoint: http://denied.example/**
    action: deny
)";

// An upstream answer for `name`/`type` with the given records appended
// raw; answer count `count`. The question sits at offset 12.
Bytes response_bytes(std::uint16_t id, std::string_view name, std::uint16_t type, int count, const Bytes& records,
                     int rcode = 0)
{
    Bytes out = bytes({id >> 8, id & 0xff, 0x81, 0x80 | rcode, 0, 1, 0, count, 0, 0, 0, 0});
    append(out, encoded_name(name));
    append(out, bytes({type >> 8, type & 0xff, 0, 1}));
    append(out, records);
    return out;
}

} // namespace

TEST_CASE("a standard query parses")
{
    auto q = parse_query(query_bytes("API.Example"));
    REQUIRE(q);
    CHECK(q->id == 0x1234);
    CHECK(q->recursion_desired);
    CHECK(q->question.name == "api.example");
    CHECK(q->question.type == type_a);
    CHECK(q->question.klass == class_in);
}

TEST_CASE("a query with an EDNS OPT record parses; the OPT is dropped")
{
    Bytes m = query_bytes("api.example", type_aaaa);
    m[11] = 1;
    append(m, bytes({0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0}));
    auto q = parse_query(m);
    REQUIRE(q);
    CHECK(q->question.type == type_aaaa);
}

TEST_CASE("every truncation of a query is refused, never read past")
{
    Bytes m = query_bytes("api.example");
    for (std::size_t n = 0; n < m.size(); ++n) {
        auto q = parse_query(std::span(m.data(), n));
        CHECK_FALSE(q);
        if (n >= 12)
            CHECK(q.error().id == 0x1234);
    }
}

TEST_CASE("every single-byte corruption of a query parses or fails cleanly")
{
    Bytes good = query_bytes("a.example");
    for (std::size_t i = 0; i < good.size(); ++i) {
        for (int v = 0; v < 256; ++v) {
            Bytes m = good;
            m[i] = static_cast<std::uint8_t>(v);
            auto q = parse_query(m);
            if (q)
                CHECK(q->question.name.size() <= max_name_length);
        }
    }
}

TEST_CASE("queries pinfold will not forward are refused at parse time")
{
    SUBCASE("compression pointer")
    {
        Bytes m = bytes({0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1});
        CHECK(parse_query(m).error().reason.find("compression") != std::string::npos);
    }
    SUBCASE("label longer than 63")
    {
        CHECK_FALSE(parse_query(query_bytes(std::string(64, 'a') + ".example")));
        CHECK(parse_query(query_bytes(std::string(63, 'a') + ".example")));
    }
    SUBCASE("name longer than 253")
    {
        std::string name;
        while (name.size() < 250)
            name += std::string(40, 'x') + ".";
        name += "example";
        CHECK_FALSE(parse_query(query_bytes(name)));
    }
    SUBCASE("binary bytes in a label (exfiltration encoding)")
    {
        Bytes m = query_bytes("abc.example");
        m[13] = 0x01;
        CHECK_FALSE(parse_query(m));
        m[13] = '.';
        CHECK_FALSE(parse_query(m));
    }
    SUBCASE("response bit, other opcodes, counts, trailing bytes")
    {
        Bytes m = query_bytes("a.example");
        m[2] |= 0x80;
        CHECK_FALSE(parse_query(m));
        m = query_bytes("a.example");
        m[2] |= 0x10;   // opcode 2 (STATUS)
        CHECK(parse_query(m).error().rcode == Rcode::notimp);
        m = query_bytes("a.example");
        m[5] = 2;
        CHECK_FALSE(parse_query(m));
        m = query_bytes("a.example");
        m[7] = 1;
        CHECK_FALSE(parse_query(m));
        m = query_bytes("a.example");
        m.push_back(0);
        CHECK_FALSE(parse_query(m));
        m = query_bytes("a.example");
        m[11] = 1;   // additional record that is not OPT
        append(m, bytes({1, 'x', 0, 0, 16, 0, 1, 0, 0, 0, 0, 0, 0}));
        CHECK_FALSE(parse_query(m));
    }
}

TEST_CASE("TCP framing: every byte split of two queries yields both")
{
    Bytes stream = frame(query_bytes("api.example"));
    append(stream, frame(query_bytes("x.cdn.example", type_aaaa)));
    for (std::size_t a = 0; a <= stream.size(); ++a) {
        for (std::size_t b = a; b <= stream.size(); b += 3) {
            StreamFramer framer;
            std::vector<Bytes> got;
            for (auto [from, to] : {std::pair{std::size_t{0}, a}, {a, b}, {b, stream.size()}}) {
                framer.feed(std::span(stream.data() + from, to - from));
                while (auto m = framer.next())
                    got.push_back(*m);
            }
            REQUIRE(got.size() == 2);
            CHECK(parse_query(got[0])->question.name == "api.example");
            CHECK(parse_query(got[1])->question.type == type_aaaa);
            CHECK(framer.buffered() == 0);
        }
    }
}

TEST_CASE("TCP framing: a zero length fails the stream")
{
    StreamFramer framer;
    framer.feed(bytes({0, 0, 0, 5}));
    CHECK_FALSE(framer.next());
    CHECK(framer.failed());
}

TEST_CASE("responses: A, AAAA and a compressed CNAME chain")
{
    Question q{"www.api.example", type_a, class_in};
    Bytes rr;
    // www.api.example CNAME edge.example (owner by pointer to the question)
    append(rr, bytes({0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 14}));
    append(rr, encoded_name("edge.example"));
    std::size_t edge_at = 12 + encoded_name(q.name).size() + 4 + 12;
    append(rr, bytes({0xc0, static_cast<int>(edge_at), 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 7}));
    append(rr, bytes({0xc0, static_cast<int>(edge_at), 0, 28, 0, 1, 0, 0, 0, 30, 0, 16}));
    append(rr, bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
    Bytes m = response_bytes(77, q.name, type_a, 3, rr);
    auto r = parse_response(m, 77, q);
    REQUIRE(r);
    REQUIRE(r->answers.size() == 3);
    CHECK(r->answers[0].type == type_cname);
    CHECK(r->answers[0].target == "edge.example");
    CHECK(r->answers[1].name == "edge.example");
    CHECK(r->answers[1].address == addr("192.0.2.7"));
    CHECK(r->answers[2].address == addr("2001:db8::1"));

    Query query{5, true, q};
    auto selected = select_answers(query, *r);
    CHECK(selected.rcode == Rcode::noerror);
    REQUIRE(selected.addresses.size() == 1);
    CHECK(selected.addresses[0] == addr("192.0.2.7"));
    CHECK(selected.answers.size() == 2);   // the CNAME and the A at its end

    for (std::size_t n = 0; n < m.size(); ++n)
        CHECK_FALSE(parse_response(std::span(m.data(), n), 77, q));
    for (std::size_t i = 0; i < m.size(); ++i) {
        for (int v : {0, 1, 0x3f, 0x40, 0xc0, 0xff}) {
            Bytes c = m;
            c[i] = static_cast<std::uint8_t>(v);
            (void)parse_response(c, 77, q);   // no crash, no read past the end
        }
    }
}

TEST_CASE("responses: pointers that do not go backwards are refused")
{
    Question q{"a.example", type_a, class_in};
    std::size_t self = 12 + encoded_name(q.name).size() + 4;
    Bytes rr = bytes({0xc0, static_cast<int>(self), 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4});
    auto r = parse_response(response_bytes(1, q.name, type_a, 1, rr), 1, q);
    CHECK_FALSE(r);
}

TEST_CASE("responses: wrong id or question are not ours")
{
    Question q{"a.example", type_a, class_in};
    Bytes m = response_bytes(9, q.name, type_a, 0, {});
    CHECK(parse_response(m, 9, q));
    CHECK_FALSE(parse_response(m, 10, q));
    CHECK_FALSE(parse_response(m, 9, Question{"b.example", type_a, class_in}));
    CHECK_FALSE(parse_response(m, 9, Question{"a.example", type_aaaa, class_in}));
}

TEST_CASE("answer selection drops records about other names (cache poisoning)")
{
    Query query{1, true, {"api.example", type_a, class_in}};
    Response r;
    Record other;
    other.name = "bank.example";
    other.type = type_a;
    other.address = addr("203.0.113.9");
    Record mine = other;
    mine.name = "api.example";
    mine.address = addr("192.0.2.1");
    r.answers = {other, mine};
    auto s = select_answers(query, r);
    REQUIRE(s.addresses.size() == 1);
    CHECK(s.addresses[0] == addr("192.0.2.1"));
    r.rcode = Rcode::nxdomain;
    CHECK(select_answers(query, r).rcode == Rcode::nxdomain);
    CHECK(select_answers(query, r).answers.empty());
}

TEST_CASE("built responses parse back")
{
    Query query{0xbeef, true, {"api.example", type_aaaa, class_in}};
    Record rec;
    rec.name = "api.example";
    rec.type = type_aaaa;
    rec.ttl = 60;
    rec.address = addr("2001:db8::5");
    std::vector<Record> answers{rec};
    auto m = build_response(query, Rcode::noerror, answers);
    auto r = parse_response(m, 0xbeef, query.question);
    REQUIRE(r);
    REQUIRE(r->answers.size() == 1);
    CHECK(r->answers[0].address == rec.address);

    auto refused = parse_response(build_response(query, Rcode::refused, {}), 0xbeef, query.question);
    REQUIRE(refused);
    CHECK(refused->rcode == Rcode::refused);
    CHECK(refused->answers.empty());

    auto upstream = parse_query(build_query(3, query.question));
    REQUIRE(upstream);
    CHECK(upstream->question == query.question);
    CHECK(build_error(7, Rcode::formerr).size() == 12);
}

TEST_CASE("built responses stay within the UDP size and set TC")
{
    Query query{1, true, {"api.example", type_a, class_in}};
    std::vector<Record> many(100);
    for (auto& r : many) {
        r.name = query.question.name;
        r.type = type_a;
        r.address = addr("192.0.2.1");
    }
    auto m = build_response(query, Rcode::noerror, many);
    CHECK(m.size() <= max_udp_message);
    CHECK((m[2] & 0x02) != 0);
    auto r = parse_response(m, 1, query.question);
    REQUIRE(r);
    CHECK(r->truncated);
}

TEST_CASE("name policy: only names an allow rule could match")
{
    NamePolicy names(parse(policy_text));
    CHECK(names.may_resolve("api.example"));
    CHECK(names.may_resolve("a.cdn.example"));
    CHECK(names.may_resolve("a.b.cdn.example"));
    CHECK_FALSE(names.may_resolve("cdn.example"));        // wildcards are proper subdomains
    CHECK_FALSE(names.may_resolve("denied.example"));     // deny rules add nothing
    CHECK_FALSE(names.may_resolve("x.api.example"));
    CHECK_FALSE(names.may_resolve("10.0.0.1"));
    CHECK_FALSE(names.may_resolve("_dmarc.api.example"));
    CHECK_FALSE(names.may_resolve("API.example"));        // callers lowercase first
    CHECK_FALSE(names.may_resolve(""));
}

TEST_CASE("query plan: types, names, --host entries")
{
    NamePolicy names(parse(policy_text));
    std::map<std::string, std::vector<MappedAddress>> overrides{
        {"api.example", {addr("127.0.0.1"), addr("::1")}}};
    auto plan = [&](std::string name, std::uint16_t type) {
        return plan_query(Query{1, true, {std::move(name), type, class_in}}, names, overrides);
    };
    CHECK(std::get<Refuse>(plan("api.example", 16)).reason.find("TXT") != std::string::npos);
    CHECK(std::holds_alternative<Refuse>(plan("api.example", 255)));
    CHECK(std::holds_alternative<Refuse>(plan("exfil-6162636465.evil.example", type_a)));
    CHECK(std::holds_alternative<Forward>(plan("x.cdn.example", type_a)));
    CHECK(std::holds_alternative<Forward>(plan("x.cdn.example", type_cname)));
    auto a = std::get<AnswerLocally>(plan("api.example", type_a));
    REQUIRE(a.answers.size() == 1);
    CHECK(a.answers[0].address == addr("127.0.0.1"));
    auto aaaa = std::get<AnswerLocally>(plan("api.example", type_aaaa));
    REQUIRE(aaaa.answers.size() == 1);
    CHECK(aaaa.answers[0].address == addr("::1"));
    CHECK(std::holds_alternative<Refuse>(
        plan_query(Query{1, true, {"api.example", type_a, 3}}, names, overrides)));
}

namespace {

class CountingResolver final : public proxy::Resolver {
public:
    int calls = 0;
    Result<std::vector<MappedAddress>> resolve(const std::string&) noexcept override
    {
        ++calls;
        return std::vector<MappedAddress>{addr("198.51.100.1")};
    }
};

} // namespace

TEST_CASE("answered names bind the Host check to what the sandbox was told")
{
    AnswerMemory memory;
    CountingResolver system;
    proxy::AnsweredResolver resolver(memory, system);
    memory.remember(7, "api.example", {addr("192.0.2.1")});
    memory.remember(7, "api.example", {addr("192.0.2.2"), addr("192.0.2.1")});
    auto got = resolver.resolve_for(7, "api.example");
    REQUIRE(got);
    CHECK(*got == std::vector<MappedAddress>{addr("192.0.2.1"), addr("192.0.2.2")});
    CHECK(system.calls == 0);
    // Another sandbox, or a name never asked: the proxy's own lookup.
    CHECK(resolver.resolve_for(8, "api.example")->front() == addr("198.51.100.1"));
    CHECK(resolver.resolve_for(7, "other.example")->front() == addr("198.51.100.1"));
    CHECK(system.calls == 2);
}

TEST_CASE("answer memory is bounded")
{
    AnswerMemory memory;
    std::vector<MappedAddress> many;
    for (int i = 0; i < 100; ++i) {
        MappedAddress a = addr("192.0.2.0");
        a[15] = static_cast<std::uint8_t>(i);
        many.push_back(a);
    }
    memory.remember(1, "n.example", many);
    CHECK(memory.recall(1, "n.example")->size() == AnswerMemory::max_addresses_per_name);
    for (std::size_t i = 0; i < AnswerMemory::max_names_per_sandbox + 10; ++i)
        memory.remember(1, "n" + std::to_string(i) + ".example", {many[0]});
    CHECK_FALSE(memory.recall(1, "n" + std::to_string(AnswerMemory::max_names_per_sandbox + 5) + ".example"));
}

TEST_CASE("upstream addresses and resolv.conf")
{
    CHECK(parse_upstream("127.0.0.1:53"));
    CHECK(parse_upstream("[::1]:5353"));
    CHECK_FALSE(parse_upstream("::1:53"));
    CHECK_FALSE(parse_upstream("127.0.0.1"));
    CHECK_FALSE(parse_upstream("127.0.0.1:0"));
    CHECK_FALSE(parse_upstream("localhost:53"));
    CHECK(*first_nameserver("# c\nsearch x\n  nameserver 10.0.0.2 # x\nnameserver 10.0.0.3\n") == "10.0.0.2:53");
    CHECK(*first_nameserver("nameserver fe80::1%eth0\nnameserver 2001:db8::53\n") == "[2001:db8::53]:53");
    CHECK_FALSE(first_nameserver("search example\n"));
    CHECK_FALSE(first_nameserver("nameservers 1.2.3.4\n"));
}
