#pragma once
// The parsed form of an HTTP/1 message head. Everything in here was
// validated by parser.hpp; consumers may rely on the invariants noted below.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pinfold::http {

// Bounds on what a peer can make us buffer or scan. Heads are parsed from a
// contiguous buffer, so max_head_bytes is also the most the caller needs to hold.
struct Limits {
    std::size_t max_head_bytes = 32 * 1024;   // request/status line + fields + final CRLF
    std::size_t max_headers = 100;            // field lines in a head, and in a trailer section
    std::size_t max_chunk_line = 1024;        // chunk-size + extensions, without the CRLF
    std::size_t max_trailer_bytes = 8 * 1024; // whole trailer section including CRLFs
};

// name is a token; value has OWS trimmed and contains no CR, LF, NUL or other
// control other than HTAB, so it can be re-emitted without injection.
struct Header {
    std::string name;
    std::string value;
};

enum class BodyKind { none, content_length, chunked, until_close };

// status: what to answer the client with (400, 417, 431, 501, 505), or 502
// for anything wrong in an upstream response.
struct ParseError {
    int status = 400;
    std::string reason;
};

struct RequestHead {
    std::string method;       // one of GET HEAD POST PUT DELETE PATCH OPTIONS
    std::string target;       // origin-form, absolute-form (http://...), or "*" with OPTIONS; as received
    int minor_version = 1;    // 0 or 1
    std::vector<Header> headers;
    std::string host;         // the Host value as received; empty only for HTTP/1.0 without Host
    BodyKind body = BodyKind::none;   // never until_close for a request
    std::uint64_t content_length = 0; // meaningful when body == content_length
    bool keep_alive = false;
    bool expect_continue = false;     // only ever true for HTTP/1.1
    bool upgrade = false;             // an Upgrade header or a Connection "upgrade" token

    // First header with this name, compared case-insensitively; nullptr if none.
    [[nodiscard]] const Header* find(std::string_view name) const noexcept;
};

struct ResponseHead {
    int status = 0;           // 100..599
    int minor_version = 1;
    std::vector<Header> headers;
    BodyKind body = BodyKind::none;
    std::uint64_t content_length = 0;
    bool keep_alive = false;  // always false when body == until_close

    [[nodiscard]] const Header* find(std::string_view name) const noexcept;
};

} // namespace pinfold::http
