#include "dns/message.hpp"

#include <algorithm>
#include <cstring>

namespace pinfold::dns {

namespace {

constexpr std::size_t header_size = 12;
constexpr std::uint16_t flag_qr = 0x8000;
constexpr std::uint16_t flag_tc = 0x0200;
constexpr std::uint16_t flag_rd = 0x0100;
constexpr std::uint16_t flag_ra = 0x0080;
constexpr std::uint16_t type_opt = 41;
constexpr std::size_t max_label = 63;
// A name has at most 127 labels; pointers only go backwards, so this also
// bounds the work of a hostile response.
constexpr int max_name_steps = 128;

std::uint16_t get16(std::span<const std::uint8_t> m, std::size_t at)
{
    return static_cast<std::uint16_t>((m[at] << 8) | m[at + 1]);
}

std::uint32_t get32(std::span<const std::uint8_t> m, std::size_t at)
{
    return (std::uint32_t{m[at]} << 24) | (std::uint32_t{m[at + 1]} << 16) | (std::uint32_t{m[at + 2]} << 8) |
           std::uint32_t{m[at + 3]};
}

void put16(std::vector<std::uint8_t>& out, std::uint16_t v)
{
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}

void put32(std::vector<std::uint8_t>& out, std::uint32_t v)
{
    put16(out, static_cast<std::uint16_t>(v >> 16));
    put16(out, static_cast<std::uint16_t>(v));
}

bool name_byte_ok(std::uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

std::unexpected<ParseError> bad(std::optional<std::uint16_t> id, std::string reason, Rcode rcode = Rcode::formerr)
{
    return std::unexpected(ParseError{id, rcode, std::move(reason)});
}

// Reads the name at `pos`; on success `pos` is just past it (past the first
// pointer when there is one). Labels are lowercased; a byte outside
// [A-Za-z0-9_-] makes the name unacceptable.
std::expected<std::string, std::string> read_name(std::span<const std::uint8_t> m, std::size_t& pos,
                                                  bool allow_pointers)
{
    std::string name;
    std::size_t at = pos;
    std::optional<std::size_t> after_pointer;
    for (int step = 0; step < max_name_steps; ++step) {
        if (at >= m.size())
            return std::unexpected("name runs past the end of the message");
        std::uint8_t len = m[at];
        if ((len & 0xc0) == 0xc0) {
            if (!allow_pointers)
                return std::unexpected("compression pointer in a query name");
            if (at + 1 >= m.size())
                return std::unexpected("truncated compression pointer");
            std::size_t target = static_cast<std::size_t>(((len & 0x3f) << 8) | m[at + 1]);
            if (target >= at)
                return std::unexpected("compression pointer does not point backwards");
            if (!after_pointer)
                after_pointer = at + 2;
            at = target;
            continue;
        }
        if ((len & 0xc0) != 0)
            return std::unexpected("reserved label type");
        if (len == 0) {
            pos = after_pointer ? *after_pointer : at + 1;
            return name;
        }
        if (len > max_label)
            return std::unexpected("label longer than 63 bytes");
        if (at + 1 + len > m.size())
            return std::unexpected("label runs past the end of the message");
        if (!name.empty())
            name += '.';
        for (std::size_t i = 0; i < len; ++i) {
            std::uint8_t c = m[at + 1 + i];
            if (!name_byte_ok(c))
                return std::unexpected("name contains a byte that is not a letter, digit, '-' or '_'");
            name += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        if (name.size() > max_name_length)
            return std::unexpected("name longer than 253 characters");
        at += 1 + len;
    }
    return std::unexpected("name has too many labels or pointers");
}

void write_name(std::vector<std::uint8_t>& out, std::string_view name)
{
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
}

void write_header(std::vector<std::uint8_t>& out, std::uint16_t id, std::uint16_t flags, std::uint16_t qd,
                  std::uint16_t an)
{
    put16(out, id);
    put16(out, flags);
    put16(out, qd);
    put16(out, an);
    put16(out, 0);
    put16(out, 0);
}

std::expected<Question, std::string> read_question(std::span<const std::uint8_t> m, std::size_t& pos,
                                                   bool allow_pointers)
{
    auto name = read_name(m, pos, allow_pointers);
    if (!name)
        return std::unexpected(name.error());
    if (pos + 4 > m.size())
        return std::unexpected("question runs past the end of the message");
    Question q{*name, get16(m, pos), get16(m, pos + 2)};
    pos += 4;
    return q;
}

} // namespace

ParseResult<Query> parse_query(std::span<const std::uint8_t> m)
{
    if (m.size() < header_size)
        return bad(std::nullopt, "message shorter than a DNS header");
    std::uint16_t id = get16(m, 0);
    std::uint16_t flags = get16(m, 2);
    if (flags & flag_qr)
        return bad(id, "not a query (QR set)");
    if (((flags >> 11) & 0xf) != 0)
        return bad(id, "opcode " + std::to_string((flags >> 11) & 0xf) + " is not a standard query",
                   Rcode::notimp);
    if (get16(m, 4) != 1)
        return bad(id, "query must have exactly one question");
    if (get16(m, 6) != 0 || get16(m, 8) != 0)
        return bad(id, "query carries answer or authority records");
    std::uint16_t additional = get16(m, 10);
    if (additional > 1)
        return bad(id, "query carries more than one additional record");
    std::size_t pos = header_size;
    auto question = read_question(m, pos, false);
    if (!question)
        return bad(id, question.error());
    if (additional == 1) {
        // Only an EDNS OPT record (root owner, type 41) is tolerated; it is
        // dropped, never forwarded.
        if (pos + 11 > m.size() || m[pos] != 0 || get16(m, pos + 1) != type_opt)
            return bad(id, "additional record is not an EDNS OPT record");
        std::size_t rdlen = get16(m, pos + 9);
        pos += 11 + rdlen;
        if (pos > m.size())
            return bad(id, "EDNS OPT record runs past the end of the message");
    }
    if (pos != m.size())
        return bad(id, "trailing bytes after the query");
    return Query{id, (flags & flag_rd) != 0, std::move(*question)};
}

ParseResult<Response> parse_response(std::span<const std::uint8_t> m, std::uint16_t expected_id,
                                     const Question& expected)
{
    if (m.size() < header_size)
        return bad(std::nullopt, "response shorter than a DNS header");
    Response r;
    r.id = get16(m, 0);
    std::uint16_t flags = get16(m, 2);
    if (r.id != expected_id)
        return bad(r.id, "response id does not match the query");
    if (!(flags & flag_qr))
        return bad(r.id, "not a response (QR clear)");
    r.truncated = (flags & flag_tc) != 0;
    std::uint8_t rcode = flags & 0xf;
    if (rcode > 5)
        return bad(r.id, "unexpected rcode " + std::to_string(rcode));
    r.rcode = static_cast<Rcode>(rcode);
    if (get16(m, 4) != 1)
        return bad(r.id, "response must repeat exactly one question");
    std::uint16_t answers = get16(m, 6);
    std::size_t pos = header_size;
    auto question = read_question(m, pos, true);
    if (!question)
        return bad(r.id, question.error());
    if (*question != expected)
        return bad(r.id, "response question differs from the query");
    r.question = std::move(*question);
    for (std::uint16_t i = 0; i < answers; ++i) {
        auto owner = read_name(m, pos, true);
        if (!owner)
            return bad(r.id, "answer " + std::to_string(i) + ": " + owner.error());
        if (pos + 10 > m.size())
            return bad(r.id, "answer " + std::to_string(i) + " runs past the end of the message");
        std::uint16_t type = get16(m, pos);
        std::uint16_t klass = get16(m, pos + 2);
        std::uint32_t ttl = get32(m, pos + 4);
        std::size_t rdlen = get16(m, pos + 8);
        pos += 10;
        if (pos + rdlen > m.size())
            return bad(r.id, "answer " + std::to_string(i) + " data runs past the end of the message");
        std::size_t rdata = pos;
        pos += rdlen;
        if (klass != class_in)
            continue;
        Record rec;
        rec.name = std::move(*owner);
        rec.type = type;
        rec.ttl = ttl;
        if (type == type_a) {
            if (rdlen != 4)
                return bad(r.id, "A record with " + std::to_string(rdlen) + " bytes of data");
            rec.address[10] = 0xff;
            rec.address[11] = 0xff;
            std::memcpy(rec.address.data() + 12, m.data() + rdata, 4);
        } else if (type == type_aaaa) {
            if (rdlen != 16)
                return bad(r.id, "AAAA record with " + std::to_string(rdlen) + " bytes of data");
            std::memcpy(rec.address.data(), m.data() + rdata, 16);
        } else if (type == type_cname) {
            std::size_t at = rdata;
            auto target = read_name(m.first(rdata + rdlen), at, true);
            if (!target)
                return bad(r.id, "CNAME target: " + target.error());
            if (at != rdata + rdlen)
                return bad(r.id, "CNAME data longer than its name");
            rec.target = std::move(*target);
        } else {
            continue;
        }
        r.answers.push_back(std::move(rec));
    }
    // Authority and additional sections are never passed on: not read.
    return r;
}

std::vector<std::uint8_t> build_query(std::uint16_t id, const Question& question)
{
    std::vector<std::uint8_t> out;
    write_header(out, id, flag_rd, 1, 0);
    write_name(out, question.name);
    put16(out, question.type);
    put16(out, question.klass);
    return out;
}

std::vector<std::uint8_t> build_response(const Query& query, Rcode rcode, std::span<const Record> answers,
                                         std::size_t max_size)
{
    std::uint16_t flags = flag_qr | flag_ra | static_cast<std::uint16_t>(rcode);
    if (query.recursion_desired)
        flags |= flag_rd;
    std::vector<std::uint8_t> out;
    write_header(out, query.id, flags, 1, 0);
    write_name(out, query.question.name);
    put16(out, query.question.type);
    put16(out, query.question.klass);
    std::uint16_t count = 0;
    for (const auto& rec : answers) {
        std::vector<std::uint8_t> rr;
        write_name(rr, rec.name);
        put16(rr, rec.type);
        put16(rr, class_in);
        put32(rr, rec.ttl);
        if (rec.type == type_a) {
            put16(rr, 4);
            rr.insert(rr.end(), rec.address.begin() + 12, rec.address.end());
        } else if (rec.type == type_aaaa) {
            put16(rr, 16);
            rr.insert(rr.end(), rec.address.begin(), rec.address.end());
        } else if (rec.type == type_cname) {
            std::vector<std::uint8_t> target;
            write_name(target, rec.target);
            put16(rr, static_cast<std::uint16_t>(target.size()));
            rr.insert(rr.end(), target.begin(), target.end());
        } else {
            continue;
        }
        if (out.size() + rr.size() > max_size) {
            out[2] |= static_cast<std::uint8_t>(flag_tc >> 8);
            break;
        }
        out.insert(out.end(), rr.begin(), rr.end());
        ++count;
    }
    out[6] = static_cast<std::uint8_t>(count >> 8);
    out[7] = static_cast<std::uint8_t>(count);
    return out;
}

std::vector<std::uint8_t> build_error(std::uint16_t id, Rcode rcode)
{
    std::vector<std::uint8_t> out;
    write_header(out, id, flag_qr | flag_ra | static_cast<std::uint16_t>(rcode), 0, 0);
    return out;
}

const char* rcode_name(Rcode rcode) noexcept
{
    switch (rcode) {
    case Rcode::noerror: return "NOERROR";
    case Rcode::formerr: return "FORMERR";
    case Rcode::servfail: return "SERVFAIL";
    case Rcode::nxdomain: return "NXDOMAIN";
    case Rcode::notimp: return "NOTIMP";
    case Rcode::refused: return "REFUSED";
    }
    return "RCODE?";
}

std::string type_name(std::uint16_t type)
{
    switch (type) {
    case type_a: return "A";
    case 2: return "NS";
    case type_cname: return "CNAME";
    case 6: return "SOA";
    case 12: return "PTR";
    case 15: return "MX";
    case 16: return "TXT";
    case type_aaaa: return "AAAA";
    case 33: return "SRV";
    case 64: return "SVCB";
    case 65: return "HTTPS";
    case 255: return "ANY";
    default: return "TYPE" + std::to_string(type);
    }
}

void StreamFramer::feed(std::span<const std::uint8_t> bytes)
{
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

std::optional<std::vector<std::uint8_t>> StreamFramer::next()
{
    if (failed_ || buffer_.size() < 2)
        return std::nullopt;
    std::size_t len = (std::size_t{buffer_[0]} << 8) | buffer_[1];
    if (len == 0) {
        failed_ = true;
        return std::nullopt;
    }
    if (buffer_.size() < 2 + len)
        return std::nullopt;
    std::vector<std::uint8_t> message(buffer_.begin() + 2, buffer_.begin() + 2 + static_cast<std::ptrdiff_t>(len));
    buffer_.erase(buffer_.begin(), buffer_.begin() + 2 + static_cast<std::ptrdiff_t>(len));
    return message;
}

std::vector<std::uint8_t> frame(std::span<const std::uint8_t> message)
{
    std::vector<std::uint8_t> out;
    put16(out, static_cast<std::uint16_t>(message.size()));
    out.insert(out.end(), message.begin(), message.end());
    return out;
}

} // namespace pinfold::dns
