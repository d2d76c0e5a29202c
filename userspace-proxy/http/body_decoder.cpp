#include "http/body_decoder.hpp"

#include "http/syntax.hpp"

#include <algorithm>

namespace pinfold::http {

namespace {

// Same bound as Content-Length: a chunk can never claim more.
constexpr std::uint64_t max_chunk_size = std::uint64_t{1} << 62;

// Fields RFC 9110 6.5.1 says must not be trusted in a trailer: framing,
// routing, connection control and credentials. Some servers merge trailers
// into the header section, so letting these through would bypass policy
// decided on the head.
constexpr std::string_view forbidden_trailers[] = {
    "content-length", "transfer-encoding", "host",  "connection",        "keep-alive",
    "proxy-connection", "upgrade",         "te",    "trailer",           "expect",
    "authorization",  "proxy-authorization", "cookie", "set-cookie",     "content-type",
    "content-encoding", "content-range",
};

} // namespace

BodyDecoder::BodyDecoder(BodyKind kind, std::uint64_t content_length, const Limits& limits) noexcept
    : limits_(limits)
    , state_(State::done)
{
    switch (kind) {
    case BodyKind::none:
        state_ = State::done;
        break;
    case BodyKind::content_length:
        remaining_ = content_length;
        state_ = content_length == 0 ? State::done : State::length;
        break;
    case BodyKind::chunked:
        state_ = State::chunk_size;
        break;
    case BodyKind::until_close:
        state_ = State::until_close;
        break;
    }
}

bool BodyDecoder::done() const noexcept { return state_ == State::done; }

std::expected<std::size_t, ParseError> BodyDecoder::fail(int status, const char* reason) noexcept
{
    state_ = State::failed;
    error_status_ = status;
    error_reason_ = reason;
    // Only allocation failure could throw here, and then terminating is all
    // that is left to do.
    return std::unexpected(ParseError{status, reason});
}

std::expected<std::size_t, ParseError> BodyDecoder::feed(std::string_view data) noexcept
{
    switch (state_) {
    case State::done:
        return 0;
    case State::failed:
        return std::unexpected(ParseError{error_status_, error_reason_});
    case State::until_close:
        return data.size();
    case State::length: {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, data.size()));
        remaining_ -= n;
        if (remaining_ == 0)
            state_ = State::done;
        return n;
    }
    default:
        return feed_chunked(data);
    }
}

std::expected<std::size_t, ParseError> BodyDecoder::feed_chunked(std::string_view data) noexcept
{
    std::size_t i = 0;
    while (i < data.size() && state_ != State::done) {
        if (state_ == State::chunk_data) {
            const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, data.size() - i));
            remaining_ -= n;
            i += n;
            if (remaining_ == 0)
                state_ = State::chunk_data_cr;
            continue;
        }

        const auto c = static_cast<unsigned char>(data[i]);
        ++i;

        // Every byte of a chunk line but its CR counts against max_chunk_line;
        // the LF is handled in chunk_size_lf, outside this range.
        if (state_ >= State::chunk_size && state_ <= State::chunk_ext_after_quoted && c != '\r' &&
            ++line_bytes_ > limits_.max_chunk_line)
            return fail(400, "chunk line too long");
        if (state_ >= State::trailer_start && ++trailer_bytes_ > limits_.max_trailer_bytes)
            return fail(431, "trailer section too large");

        switch (state_) {
        case State::chunk_size: {
            const int digit = syntax::hex_value(c);
            if (digit >= 0) {
                if (remaining_ > (max_chunk_size - static_cast<std::uint64_t>(digit)) / 16)
                    return fail(400, "chunk size too large");
                remaining_ = remaining_ * 16 + static_cast<std::uint64_t>(digit);
                saw_size_digit_ = true;
            } else if (!saw_size_digit_) {
                return fail(400, "invalid chunk size");
            } else if (c == ';') {
                // No BWS around ';' or '=': RFC 9112 allows it, but it is
                // where parsers disagree, and real clients do not send it.
                state_ = State::chunk_ext_name_start;
            } else if (c == '\r') {
                state_ = State::chunk_size_lf;
            } else {
                return fail(400, "invalid chunk size");
            }
            break;
        }
        case State::chunk_ext_name_start:
            if (!syntax::is_tchar(c))
                return fail(400, "invalid chunk extension");
            state_ = State::chunk_ext_name;
            break;
        case State::chunk_ext_name:
            if (c == '=')
                state_ = State::chunk_ext_value_start;
            else if (c == ';')
                state_ = State::chunk_ext_name_start;
            else if (c == '\r')
                state_ = State::chunk_size_lf;
            else if (!syntax::is_tchar(c))
                return fail(400, "invalid chunk extension");
            break;
        case State::chunk_ext_value_start:
            if (c == '"')
                state_ = State::chunk_ext_quoted;
            else if (syntax::is_tchar(c))
                state_ = State::chunk_ext_token;
            else
                return fail(400, "invalid chunk extension value");
            break;
        case State::chunk_ext_token:
            if (c == ';')
                state_ = State::chunk_ext_name_start;
            else if (c == '\r')
                state_ = State::chunk_size_lf;
            else if (!syntax::is_tchar(c))
                return fail(400, "invalid chunk extension value");
            break;
        case State::chunk_ext_quoted:
            if (c == '"')
                state_ = State::chunk_ext_after_quoted;
            else if (c == '\\')
                state_ = State::chunk_ext_quoted_pair;
            else if (!syntax::is_field_char(c))
                return fail(400, "invalid quoted chunk extension");
            break;
        case State::chunk_ext_quoted_pair:
            if (!syntax::is_field_char(c))
                return fail(400, "invalid quoted chunk extension");
            state_ = State::chunk_ext_quoted;
            break;
        case State::chunk_ext_after_quoted:
            if (c == ';')
                state_ = State::chunk_ext_name_start;
            else if (c == '\r')
                state_ = State::chunk_size_lf;
            else
                return fail(400, "invalid chunk extension");
            break;
        case State::chunk_size_lf:
            if (c != '\n')
                return fail(400, "chunk line without CRLF");
            line_bytes_ = 0;
            saw_size_digit_ = false;
            state_ = remaining_ == 0 ? State::trailer_start : State::chunk_data;
            break;
        case State::chunk_data_cr:
            if (c != '\r')
                return fail(400, "chunk data without CRLF");
            state_ = State::chunk_data_lf;
            break;
        case State::chunk_data_lf:
            if (c != '\n')
                return fail(400, "chunk data without CRLF");
            state_ = State::chunk_size;
            break;
        case State::trailer_start:
            if (c == '\r') {
                state_ = State::final_lf;
            } else if (syntax::is_tchar(c)) {
                if (++trailer_fields_ > limits_.max_headers)
                    return fail(431, "too many trailer fields");
                trailer_name_[0] = static_cast<char>(syntax::to_lower(c));
                trailer_name_len_ = 1;
                state_ = State::trailer_name;
            } else {
                // Includes SP/HTAB: obs-fold is no more welcome here than in a head.
                return fail(400, "invalid trailer field");
            }
            break;
        case State::trailer_name:
            if (c == ':') {
                if (trailer_name_len_ <= trailer_name_.size()) {
                    const std::string_view name(trailer_name_.data(), trailer_name_len_);
                    if (std::find(std::begin(forbidden_trailers), std::end(forbidden_trailers), name) !=
                        std::end(forbidden_trailers))
                        return fail(400, "field not allowed in trailer");
                }
                state_ = State::trailer_value;
            } else if (syntax::is_tchar(c)) {
                // Past the buffer the name is longer than any forbidden one;
                // a length beyond size() marks that without reading past it.
                if (trailer_name_len_ < trailer_name_.size())
                    trailer_name_[trailer_name_len_] = static_cast<char>(syntax::to_lower(c));
                if (trailer_name_len_ <= trailer_name_.size())
                    ++trailer_name_len_;
            } else {
                return fail(400, "invalid trailer field name");
            }
            break;
        case State::trailer_value:
            if (c == '\r')
                state_ = State::trailer_lf;
            else if (!syntax::is_field_char(c))
                return fail(400, "invalid character in trailer field");
            break;
        case State::trailer_lf:
            if (c != '\n')
                return fail(400, "bare CR in trailer");
            state_ = State::trailer_start;
            break;
        case State::final_lf:
            if (c != '\n')
                return fail(400, "bare CR after trailer");
            state_ = State::done;
            break;
        default:
            return fail(400, "body decoder in impossible state");
        }
    }
    return i;
}

} // namespace pinfold::http
