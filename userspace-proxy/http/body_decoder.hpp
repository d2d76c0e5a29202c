#pragma once
// Incremental body framing. It does not decode: the caller forwards exactly
// the bytes feed() says belong to the body, verbatim. Every byte it accepts
// has been checked against the grammar at its position, so what was forwarded
// is always a valid prefix of a body even if a later byte fails.

#include "http/message.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <string_view>

namespace pinfold::http {

class BodyDecoder {
public:
    // content_length is used only with BodyKind::content_length.
    BodyDecoder(BodyKind kind, std::uint64_t content_length, const Limits& limits = {}) noexcept;

    // Returns how many leading bytes of data belong to this body (fewer than
    // data.size() only once the body is complete: the rest is the next message).
    // Errors carry status 400, or 431 for an oversize trailer section; a caller
    // decoding a response body should answer 502 instead. After an error the
    // decoder stays failed and returns the same error.
    [[nodiscard]] std::expected<std::size_t, ParseError> feed(std::string_view data) noexcept;

    // True once the whole body has been consumed. Never for until_close.
    [[nodiscard]] bool done() const noexcept;

    // Body bytes still to come of a Content-Length body (0 for the other
    // kinds, and once done): what a caller may move past the decoder.
    [[nodiscard]] std::uint64_t length_left() const noexcept { return state_ == State::length ? remaining_ : 0; }

private:
    enum class State : std::uint8_t {
        done,
        failed,
        length,
        until_close,
        chunk_size,
        chunk_ext_name_start,
        chunk_ext_name,
        chunk_ext_value_start,
        chunk_ext_token,
        chunk_ext_quoted,
        chunk_ext_quoted_pair,
        chunk_ext_after_quoted,
        chunk_size_lf,
        chunk_data,
        chunk_data_cr,
        chunk_data_lf,
        trailer_start,
        trailer_name,
        trailer_value,
        trailer_lf,
        final_lf,
    };

    std::expected<std::size_t, ParseError> fail(int status, const char* reason) noexcept;
    std::expected<std::size_t, ParseError> feed_chunked(std::string_view data) noexcept;

    Limits limits_;
    State state_;
    std::uint64_t remaining_ = 0;       // bytes left in the body (length) or current chunk
    bool saw_size_digit_ = false;
    std::size_t line_bytes_ = 0;        // of the current chunk line
    std::size_t trailer_bytes_ = 0;
    std::size_t trailer_fields_ = 0;
    // Enough of the current trailer field name, lowercased, to check it
    // against the names forbidden in trailers; longer names are none of them.
    std::array<char, 24> trailer_name_{};
    std::size_t trailer_name_len_ = 0;
    int error_status_ = 0;
    const char* error_reason_ = nullptr;
};

} // namespace pinfold::http
