#pragma once
// DNS messages (RFC 1035), as much as pinfold's resolver needs: parse one
// query, parse an upstream response down to its A/AAAA/CNAME answers, and
// build both. Pure: bytes in, structs out, no sockets. Strict on purpose:
// anything unusual in a query is refused rather than forwarded, because
// every byte the sandbox puts in a query could be data leaving the machine.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pinfold/address.hpp"
#include "pinfold/error.hpp"

namespace pinfold::dns {

enum class Rcode : std::uint8_t { noerror = 0, formerr = 1, servfail = 2, nxdomain = 3, notimp = 4, refused = 5 };

inline constexpr std::uint16_t type_a = 1;
inline constexpr std::uint16_t type_cname = 5;
inline constexpr std::uint16_t type_aaaa = 28;
inline constexpr std::uint16_t class_in = 1;
inline constexpr std::size_t max_udp_message = 512;   // without EDNS, which we do not offer
inline constexpr std::size_t max_name_length = 253;   // text form, without the trailing dot

struct Question {
    std::string name;            // lowercase text, no trailing dot; "" is the root
    std::uint16_t type = 0;
    std::uint16_t klass = 0;
    friend bool operator==(const Question&, const Question&) = default;
};

struct Query {
    std::uint16_t id = 0;
    bool recursion_desired = false;
    Question question;
};

// One answer record of the kinds we pass on.
struct Record {
    std::string name;            // owner, as Question::name
    std::uint16_t type = 0;      // type_a, type_aaaa or type_cname
    std::uint32_t ttl = 0;
    MappedAddress address{};     // A (IPv4 mapped) or AAAA
    std::string target;          // CNAME target, as Question::name
};

struct Response {
    std::uint16_t id = 0;
    bool truncated = false;
    Rcode rcode = Rcode::noerror;
    Question question;
    std::vector<Record> answers;  // A/AAAA/CNAME of class IN; others skipped
};

// Why a message could not be parsed; `id` is set when the header was
// readable, so the caller can still send FORMERR/REFUSED for that id.
struct ParseError {
    std::optional<std::uint16_t> id;
    Rcode rcode = Rcode::formerr;
    std::string reason;
};

template <typename T>
using ParseResult = std::expected<T, ParseError>;

// A standard query (QR=0, OPCODE=0) with exactly one question, no answers,
// no authority records, at most one additional record (EDNS OPT, ignored),
// no compression pointers and names made of letters, digits, '-' and '_'.
[[nodiscard]] ParseResult<Query> parse_query(std::span<const std::uint8_t> message);

// A response to `expected` (same id and question). Compression pointers are
// followed only backwards, so every name decodes in bounded steps.
[[nodiscard]] ParseResult<Response> parse_response(std::span<const std::uint8_t> message,
                                                   std::uint16_t expected_id, const Question& expected);

[[nodiscard]] std::vector<std::uint8_t> build_query(std::uint16_t id, const Question& question);

// An answer to `query` with `rcode` and `answers` (no authority, no
// additional section; names uncompressed). Answers that would make the
// message longer than `max_size` are dropped and TC is set.
[[nodiscard]] std::vector<std::uint8_t> build_response(const Query& query, Rcode rcode,
                                                       std::span<const Record> answers,
                                                       std::size_t max_size = max_udp_message);

// A header-only answer for a message that could not be parsed as a query.
[[nodiscard]] std::vector<std::uint8_t> build_error(std::uint16_t id, Rcode rcode);

[[nodiscard]] const char* rcode_name(Rcode rcode) noexcept;
// "A", "AAAA", "TXT", ... or "TYPE<n>".
[[nodiscard]] std::string type_name(std::uint16_t type);

// DNS over TCP: each message is preceded by its 16-bit length. Feed bytes
// as they arrive, in any split; take complete messages out.
class StreamFramer {
public:
    void feed(std::span<const std::uint8_t> bytes);
    // The next complete message, or nullopt until more bytes arrive.
    [[nodiscard]] std::optional<std::vector<std::uint8_t>> next();
    // A zero-length message was announced: the stream is unusable.
    [[nodiscard]] bool failed() const noexcept { return failed_; }
    [[nodiscard]] std::size_t buffered() const noexcept { return buffer_.size(); }

private:
    std::vector<std::uint8_t> buffer_;
    bool failed_ = false;
};

// `message` with its 16-bit length prefix, for TCP.
[[nodiscard]] std::vector<std::uint8_t> frame(std::span<const std::uint8_t> message);

} // namespace pinfold::dns
