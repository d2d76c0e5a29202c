#pragma once
// The credential scan of a request body, on what the server will read: the
// bytes on the wire (covering bodies that are not chunked and chunked
// trailers) and, for a chunked body, the payload with the chunk framing
// removed, so a placeholder or secret split across chunks ("__GITHUB_" in
// one chunk, "TOKEN__" in the next) is whole again. Each view keeps its own
// carry-over window (LeakScanner), so splits across reads, TCP segments and
// TLS records are caught too. Pure: unit-tested at every split.

#include <cstdint>
#include <string>
#include <string_view>

#include "policy/credentials.hpp"

namespace pinfold::proxy {

// The payload of a chunked body, framing removed. Precondition: the bytes
// were accepted by the body's http::BodyDecoder (valid framing), in order;
// only where data starts and ends matters here. Trailer fields are not
// payload.
class ChunkedPayload {
public:
    // This feed's payload bytes (valid until the next feed).
    [[nodiscard]] std::string_view feed(std::string_view wire);

private:
    enum class Framing : std::uint8_t { size, extension, data, data_end, trailers };

    Framing state_ = Framing::size;
    std::uint64_t remaining_ = 0;   // of the current chunk (its size while in `size`)
    std::string data_;
};

class RequestBodyScan {
public:
    RequestBodyScan(const policy::CredentialSet& set, bool chunked) : wire_(set), payload_(set), chunked_(chunked) {}

    // Precondition: `bytes` were accepted by the body's http::BodyDecoder
    // (valid chunked framing), in order. The provider mentioned, or nullptr.
    [[nodiscard]] const policy::Provider* feed(std::string_view bytes, bool* secret_seen = nullptr);

private:
    policy::LeakScanner wire_;
    policy::LeakScanner payload_;
    bool chunked_;
    ChunkedPayload chunks_;
};

} // namespace pinfold::proxy
