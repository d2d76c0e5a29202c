#pragma once
// Strict HTTP/1.0 and 1.1 head parsing for a policing proxy. The input is
// hostile: anything two implementations could read differently (CL+TE,
// duplicate Content-Length, obs-fold, bare CR/LF, odd Host syntax) is
// rejected rather than interpreted. Pure functions over a byte buffer.

#include "http/body_decoder.hpp"
#include "http/message.hpp"

#include <cstddef>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace pinfold::http {

// A complete head and the bytes it occupied; nullopt when the buffer holds only
// a prefix of a head that is valid so far and within limits (read more and
// call again with the whole buffer).
using RequestParse = std::expected<std::optional<std::pair<RequestHead, std::size_t>>, ParseError>;
using ResponseParse = std::expected<std::optional<std::pair<ResponseHead, std::size_t>>, ParseError>;

// Where the search for the end of a head stopped in a buffer that so far
// held only a prefix of one. Passed back with the same buffer grown at its
// end, the scan resumes there instead of rescanning every byte on every
// read; the result is the same as parsing the whole buffer afresh. Reset it
// (= {}) whenever the buffer loses bytes at its front or is replaced; a
// buffer shorter than what was scanned is scanned from its start.
struct HeadScan {
    std::size_t checked = 0;
};

// Statuses: 400 malformed, 417 Expect other than 100-continue, 431 head too
// large or too many fields, 501 method or transfer-coding not supported,
// 505 HTTP version other than 1.0/1.1.
[[nodiscard]] RequestParse parse_request_head(std::string_view buffer, const Limits& limits = {},
                                              HeadScan* scan = nullptr);

// request_method decides whether the response can have a body (HEAD cannot).
// Every error has status 502.
[[nodiscard]] ResponseParse parse_response_head(std::string_view buffer, std::string_view request_method,
                                                const Limits& limits = {}, HeadScan* scan = nullptr);

// parse_response_head with the same checks and the same answer, except that
// the fields are not copied out (headers stays empty): for a caller that
// forwards the head's bytes as received and needs only status and framing.
[[nodiscard]] ResponseParse parse_response_framing(std::string_view buffer, std::string_view request_method,
                                                   const Limits& limits = {}, HeadScan* scan = nullptr);

// Canonical HTTP/1.1 head to send upstream: request line with `target`, the
// client's fields in order minus hop-by-hop ones (Connection, Keep-Alive,
// Proxy-Connection, TE, Trailer, Upgrade, Proxy-Authorization, any field named
// in Connection), minus Content-Length/Transfer-Encoding, which are re-emitted
// from head.body. Precondition: head came from parse_request_head. Returns an
// empty string if target is empty or has a byte outside printable ASCII, so a
// bad target cannot inject a line.
[[nodiscard]] std::string serialize_request_head(const RequestHead& head, std::string_view target);

} // namespace pinfold::http
