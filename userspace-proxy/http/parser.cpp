#include "http/parser.hpp"

#include "http/syntax.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <array>
#include <cstdint>
#include <cstring>

namespace pinfold::http {

namespace {

// Far above any real body, and leaves headroom so arithmetic on lengths by
// callers cannot overflow.
constexpr std::uint64_t max_content_length = std::uint64_t{1} << 62;

std::unexpected<ParseError> error(int status, const char* reason)
{
    return std::unexpected(ParseError{status, reason});
}

// Bytes find_head_end must look at: CR, LF and the controls a head may not
// hold (all but HTAB). Everything else is skipped with one table lookup.
constexpr std::array<bool, 256> head_special = [] {
    std::array<bool, 256> table{};
    for (unsigned c = 0; c < 256; ++c)
        table[c] = c != '\t' && syntax::is_ctl(static_cast<unsigned char>(c));
    return table;
}();

// Whether one of the 8 bytes of w is below 0x20 or is 0x7f (exact, not a
// heuristic: without such a byte no subtraction below borrows, and bytes of
// 0x80 and up are masked by ~w). A word without one holds no CR, LF or
// control and is skipped whole; one with one is looked at byte by byte.
constexpr bool word_has_control(std::uint64_t w) noexcept
{
    constexpr std::uint64_t ones = 0x0101010101010101ULL;
    constexpr std::uint64_t highs = 0x8080808080808080ULL;
    const std::uint64_t below_space = (w - ones * 0x20) & ~w & highs;
    const std::uint64_t del = w ^ (ones * 0x7f);
    const std::uint64_t is_del = (del - ones) & ~del & highs;
    return (below_space | is_del) != 0;
}

// Finds the end of the head (just past CRLFCRLF) while rejecting, as early as
// the bytes allow, anything that can never become a valid head: a bare CR or
// LF, a control byte, an empty line before the start line. Rejecting early
// means a hostile peer cannot make us wait for max_head_bytes to learn it.
// `checked` bytes of buf were scanned before without finding an end or an
// error; it is updated when this scan too ends without either.
std::expected<std::optional<std::size_t>, ParseError> find_head_end(std::string_view buf, const Limits& limits,
                                                                    int bad_status, int too_large_status,
                                                                    std::size_t& checked)
{
    if (!buf.empty() && (buf[0] == '\r' || buf[0] == '\n'))
        return error(bad_status, "empty line before start line");
    const std::size_t scan = std::min(buf.size(), limits.max_head_bytes);
    // Every verdict on byte i depends only on bytes i-3..i+1, so the bytes
    // already checked need no second look; a CR whose next byte had not
    // arrived was left out of `checked` and is looked at again.
    std::size_t i = checked <= scan ? checked : 0;
    while (i < scan) {
        if (scan - i >= 8) {
            std::uint64_t word;
            std::memcpy(&word, buf.data() + i, sizeof word);
            if (!word_has_control(word)) {
                i += 8;
                continue;
            }
        }
        const std::size_t stop = std::min(scan, i + 8);
        for (; i < stop; ++i) {
            const auto c = static_cast<unsigned char>(buf[i]);
            if (!head_special[c])
                continue;
            if (c == '\n') {
                if (buf[i - 1] != '\r')
                    return error(bad_status, "bare LF in head");
                if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
                    return std::optional<std::size_t>{i + 1};
            } else if (c == '\r') {
                if (i + 1 < buf.size() && buf[i + 1] != '\n')
                    return error(bad_status, "bare CR in head");
            } else {
                return error(bad_status, "control character in head");
            }
        }
    }
    if (buf.size() >= limits.max_head_bytes)
        return error(too_large_status, "head too large");
    checked = scan > 0 && buf[scan - 1] == '\r' ? scan - 1 : scan;
    return std::optional<std::size_t>{};
}

// Splits the head (without its final CRLF) into lines. Precondition: the
// head passed find_head_end, so every line ends in CRLF and none has CR or LF.
class LineReader {
public:
    explicit LineReader(std::string_view head) noexcept : rest_(head) {}

    [[nodiscard]] std::optional<std::string_view> next() noexcept
    {
        const auto end = rest_.find("\r\n");
        if (end == std::string_view::npos)
            return std::nullopt;
        const auto line = rest_.substr(0, end);
        rest_.remove_prefix(end + 2);
        return line;
    }

    // Lines not yet read (memchr: std::count is a byte loop here).
    [[nodiscard]] std::size_t count() const noexcept
    {
        std::size_t lines = 0;
        const char* p = rest_.data();
        const char* const end = p + rest_.size();
        while (p < end) {
            const void* lf = std::memchr(p, '\n', static_cast<std::size_t>(end - p));
            if (lf == nullptr)
                break;
            ++lines;
            p = static_cast<const char*>(lf) + 1;
        }
        return lines;
    }

private:
    std::string_view rest_;
};

struct FieldView {
    std::string_view name;
    std::string_view value;
};

std::expected<FieldView, const char*> split_field_line(std::string_view line)
{
    if (syntax::is_ows(static_cast<unsigned char>(line.front())))
        return std::unexpected("obs-fold or whitespace before field name");
    const auto colon = line.find(':');
    if (colon == std::string_view::npos)
        return std::unexpected("field line without colon");
    const auto name = line.substr(0, colon);
    if (!syntax::is_token(name))
        return std::unexpected("invalid field name");
    // Every byte of the value is a field-char already: find_head_end let no
    // control but HTAB through, and CR/LF only as line ends.
    return FieldView{name, syntax::trim_ows(line.substr(colon + 1))};
}

std::expected<Header, const char*> parse_field_line(std::string_view line)
{
    const auto field = split_field_line(line);
    if (!field)
        return std::unexpected(field.error());
    return Header{std::string(field->name), std::string(field->value)};
}

// The checks of parse_fields, in the same order, without keeping anything.
std::expected<void, ParseError> check_fields(LineReader lines, const Limits& limits, int bad_status,
                                             int too_many_status)
{
    std::size_t count = 0;
    while (auto line = lines.next()) {
        if (count++ >= limits.max_headers)
            return error(too_many_status, "too many header fields");
        const auto field = split_field_line(*line);
        if (!field)
            return error(bad_status, field.error());
    }
    return {};
}

// Reads all field lines up to the end of the head.
std::expected<std::vector<Header>, ParseError> parse_fields(LineReader& lines, const Limits& limits,
                                                            int bad_status, int too_many_status)
{
    std::vector<Header> headers;
    // One allocation instead of a growth (and a move of every Header) per doubling.
    headers.reserve(std::min(lines.count(), limits.max_headers + 1));
    while (auto line = lines.next()) {
        if (headers.size() >= limits.max_headers)
            return error(too_many_status, "too many header fields");
        auto header = parse_field_line(*line);
        if (!header)
            return error(bad_status, header.error());
        headers.push_back(std::move(*header));
    }
    return headers;
}

std::optional<std::uint64_t> parse_content_length(std::string_view value) noexcept
{
    if (value.empty())
        return std::nullopt;
    std::uint64_t n = 0;
    for (char c : value) {
        if (!syntax::is_digit(static_cast<unsigned char>(c)))
            return std::nullopt;
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (n > (max_content_length - digit) / 10)
            return std::nullopt;
        n = n * 10 + digit;
    }
    return n;
}

bool valid_port(std::string_view port) noexcept
{
    if (port.empty() || port.size() > 5)
        return false;
    unsigned value = 0;
    for (char c : port) {
        if (!syntax::is_digit(static_cast<unsigned char>(c)))
            return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    return value >= 1 && value <= 65535;
}

template <std::size_t N>
bool inet_pton_view(int family, std::string_view text) noexcept
{
    std::array<char, N + 1> buf{};
    if (text.size() > N)
        return false;
    std::copy(text.begin(), text.end(), buf.begin());
    std::array<unsigned char, 16> out{};
    return inet_pton(family, buf.data(), out.data()) == 1;
}

// Narrower than RFC 3986 reg-name on purpose: no percent-encoding or
// sub-delims, which policy matching and resolvers would read differently.
// A name whose last label looks numeric is what URL parsers and
// inet_aton treat as an IPv4 address ("127.1", "0x7f.1", "2130706433"),
// so it must be a plain dotted quad, the one spelling policy can match.
bool valid_reg_name(std::string_view host) noexcept
{
    if (host.empty() || host.size() > 254 || host.front() == '.')
        return false;
    char prev = 0;
    for (char c : host) {
        const auto u = static_cast<unsigned char>(c);
        if (!(syntax::is_alpha(u) || syntax::is_digit(u) || c == '-' || c == '_' || c == '.'))
            return false;
        if (c == '.' && prev == '.')
            return false;
        prev = c;
    }
    auto name = host;
    if (name.back() == '.')
        name.remove_suffix(1);
    const auto dot = name.rfind('.');
    const auto last = dot == std::string_view::npos ? name : name.substr(dot + 1);
    bool numeric = std::all_of(last.begin(), last.end(),
                               [](char c) { return syntax::is_digit(static_cast<unsigned char>(c)); });
    if (!numeric && last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X'))
        numeric = std::all_of(last.begin() + 2, last.end(),
                              [](char c) { return syntax::hex_value(static_cast<unsigned char>(c)) >= 0; });
    if (numeric)
        return inet_pton_view<15>(AF_INET, name);
    return true;
}

// uri-host [ ":" port ] with uri-host one of reg-name, IPv4, "[" IPv6 "]".
bool valid_host(std::string_view value) noexcept
{
    if (value.empty())
        return false;
    std::string_view rest;
    if (value.front() == '[') {
        const auto close = value.find(']');
        if (close == std::string_view::npos)
            return false;
        // inet_pton rejects zone ids and IPvFuture, which we want.
        if (!inet_pton_view<45>(AF_INET6, value.substr(1, close - 1)))
            return false;
        rest = value.substr(close + 1);
    } else {
        const auto colon = value.find(':');
        if (!valid_reg_name(value.substr(0, colon)))
            return false;
        rest = colon == std::string_view::npos ? std::string_view{} : value.substr(colon);
    }
    if (rest.empty())
        return true;
    return rest.front() == ':' && valid_port(rest.substr(1));
}

bool is_supported_method(std::string_view method) noexcept
{
    static constexpr std::array<std::string_view, 7> methods = {"GET",    "HEAD",  "POST",   "PUT",
                                                                 "DELETE", "PATCH", "OPTIONS"};
    return std::find(methods.begin(), methods.end(), method) != methods.end();
}

// "HTTP/1.0" -> 0, "HTTP/1.1" -> 1, another well-formed version -> 2,
// anything else -> -1.
int classify_version(std::string_view version) noexcept
{
    if (version == "HTTP/1.1")
        return 1;
    if (version == "HTTP/1.0")
        return 0;
    if (version.size() == 8 && version.starts_with("HTTP/") && syntax::is_digit(version[5]) && version[6] == '.' &&
        syntax::is_digit(version[7]))
        return 2;
    return -1;
}

struct ConnectionTokens {
    bool close = false;
    bool keep_alive = false;
    bool upgrade = false;
};

bool read_connection(std::string_view value, ConnectionTokens& tokens)
{
    return syntax::for_each_list_element(value, [&](std::string_view option) {
        if (!syntax::is_token(option))
            return false;
        if (syntax::iequals(option, "close"))
            tokens.close = true;
        else if (syntax::iequals(option, "keep-alive"))
            tokens.keep_alive = true;
        else if (syntax::iequals(option, "upgrade"))
            tokens.upgrade = true;
        return true;
    });
}

bool keep_alive_for(int minor_version, const ConnectionTokens& tokens) noexcept
{
    if (tokens.close)
        return false;
    return minor_version == 1 || tokens.keep_alive;
}

// Validates the target form. For absolute-form, returns its authority.
std::expected<std::string_view, ParseError> check_target(std::string_view target, std::string_view method)
{
    for (char c : target) {
        if (!syntax::is_vchar(static_cast<unsigned char>(c)))
            return error(400, "invalid character in request target");
        // Clients never send a fragment; one here can only serve to make
        // policy and upstream see different paths.
        if (c == '#')
            return error(400, "fragment in request target");
    }
    if (target.front() == '/')
        return std::string_view{};
    if (target == "*") {
        if (method != "OPTIONS")
            return error(400, "asterisk-form target without OPTIONS");
        return std::string_view{};
    }
    constexpr std::string_view scheme = "http://";
    if (target.size() < scheme.size() || !syntax::iequals(target.substr(0, scheme.size()), scheme))
        return error(400, "unsupported request target form");
    auto authority = target.substr(scheme.size());
    authority = authority.substr(0, authority.find_first_of("/?"));
    if (authority.find('@') != std::string_view::npos)
        return error(400, "userinfo in request target");
    if (!valid_host(authority))
        return error(400, "invalid authority in request target");
    return authority;
}

} // namespace

RequestParse parse_request_head(std::string_view buffer, const Limits& limits, HeadScan* scan)
{
    std::size_t checked = scan ? scan->checked : 0;
    const auto end = find_head_end(buffer, limits, 400, 431, checked);
    if (scan)
        scan->checked = end && !*end ? checked : 0;
    if (!end)
        return std::unexpected(end.error());
    if (!*end)
        return std::nullopt;
    const std::size_t head_size = **end;

    LineReader lines(buffer.substr(0, head_size - 2));
    const auto request_line = *lines.next();

    RequestHead head;
    const auto sp1 = request_line.find(' ');
    if (sp1 == std::string_view::npos)
        return error(400, "malformed request line");
    const auto method = request_line.substr(0, sp1);
    const auto after_method = request_line.substr(sp1 + 1);
    const auto sp2 = after_method.find(' ');
    if (sp2 == std::string_view::npos)
        return error(400, "malformed request line");
    const auto target = after_method.substr(0, sp2);
    const auto version = after_method.substr(sp2 + 1);
    if (!syntax::is_token(method) || target.empty())
        return error(400, "malformed request line");
    const int minor = classify_version(version);
    if (minor < 0)
        return error(400, "malformed HTTP version");
    if (minor > 1)
        return error(505, "HTTP version not supported");
    if (!is_supported_method(method))
        return error(501, "method not supported");
    const auto authority = check_target(target, method);
    if (!authority)
        return std::unexpected(authority.error());

    head.method = method;
    head.target = target;
    head.minor_version = minor;

    auto headers = parse_fields(lines, limits, 400, 431);
    if (!headers)
        return std::unexpected(headers.error());
    head.headers = std::move(*headers);

    std::size_t host_count = 0;
    std::size_t length_count = 0;
    std::size_t coding_count = 0;
    std::string_view coding;
    ConnectionTokens connection;
    for (const auto& [name, value] : head.headers) {
        if (syntax::iequals(name, "host")) {
            if (++host_count > 1)
                return error(400, "more than one Host");
            if (!valid_host(value))
                return error(400, "invalid Host");
            head.host = value;
        } else if (syntax::iequals(name, "content-length")) {
            if (++length_count > 1)
                return error(400, "more than one Content-Length");
            const auto length = parse_content_length(value);
            if (!length)
                return error(400, "invalid Content-Length");
            head.content_length = *length;
        } else if (syntax::iequals(name, "transfer-encoding")) {
            if (++coding_count > 1)
                return error(400, "more than one Transfer-Encoding");
            coding = value;
        } else if (syntax::iequals(name, "connection")) {
            if (!read_connection(value, connection))
                return error(400, "invalid Connection");
        } else if (syntax::iequals(name, "upgrade")) {
            head.upgrade = true;
        } else if (syntax::iequals(name, "expect")) {
            // 417 rather than 400: the request is well-formed, we just will
            // not honour an expectation we do not understand (RFC 9110 10.1.1).
            if (!syntax::iequals(value, "100-continue"))
                return error(417, "unsupported expectation");
            // RFC 9110 10.1.1: ignore 100-continue from an HTTP/1.0 client,
            // which would not understand the interim response.
            head.expect_continue = minor == 1;
        }
    }

    if (minor == 1 && host_count == 0)
        return error(400, "missing Host");
    if (!authority->empty()) {
        if (host_count == 0)
            head.host = *authority;
        else if (!syntax::iequals(*authority, head.host))
            return error(400, "request target authority differs from Host");
    }

    if (coding_count > 0) {
        if (length_count > 0)
            return error(400, "both Content-Length and Transfer-Encoding");
        if (minor == 0)
            return error(400, "Transfer-Encoding in HTTP/1.0 request");
        if (coding.empty())
            return error(400, "empty Transfer-Encoding");
        if (!syntax::iequals(coding, "chunked"))
            return error(501, "transfer-coding not supported");
        head.body = BodyKind::chunked;
    } else if (length_count > 0) {
        head.body = BodyKind::content_length;
    }
    // Content on GET, HEAD or OPTIONS has no defined meaning (RFC 9110
    // 9.3.1, 9.3.2, 9.3.7), and many origins never read it: they take it
    // for the next request on the connection, one no rule decided on.
    bool has_content = head.body == BodyKind::chunked || head.content_length > 0;
    if (has_content && (method == "GET" || method == "HEAD" || method == "OPTIONS"))
        return error(400, "content on a GET, HEAD or OPTIONS request");

    head.upgrade = head.upgrade || connection.upgrade;
    head.keep_alive = keep_alive_for(minor, connection);
    return std::optional{std::pair{std::move(head), head_size}};
}

namespace {

ResponseParse parse_response(std::string_view buffer, std::string_view request_method, const Limits& limits,
                             HeadScan* scan, bool keep_fields)
{
    std::size_t checked = scan ? scan->checked : 0;
    const auto end = find_head_end(buffer, limits, 502, 502, checked);
    if (scan)
        scan->checked = end && !*end ? checked : 0;
    if (!end)
        return std::unexpected(end.error());
    if (!*end)
        return std::nullopt;
    const std::size_t head_size = **end;

    LineReader lines(buffer.substr(0, head_size - 2));
    const auto status_line = *lines.next();

    // HTTP/1.x SP 3DIGIT [ SP reason ]; the reason was already checked for
    // controls by find_head_end.
    ResponseHead head;
    if (status_line.size() < 12 || status_line[8] != ' ')
        return error(502, "malformed status line");
    const int minor = classify_version(status_line.substr(0, 8));
    if (minor < 0 || minor > 1)
        return error(502, "unsupported HTTP version in response");
    const auto code = status_line.substr(9, 3);
    if (!std::all_of(code.begin(), code.end(), [](char c) { return syntax::is_digit(static_cast<unsigned char>(c)); }))
        return error(502, "malformed status code");
    head.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    if (head.status < 100 || head.status > 599)
        return error(502, "status code out of range");
    if (status_line.size() > 12 && status_line[12] != ' ')
        return error(502, "malformed status line");
    head.minor_version = minor;

    // Every line is checked before any field's meaning, so both forms give
    // the same error for the same head.
    const LineReader field_lines = lines;
    if (keep_fields) {
        auto headers = parse_fields(lines, limits, 502, 502);
        if (!headers)
            return std::unexpected(headers.error());
        head.headers = std::move(*headers);
    } else if (auto checked_fields = check_fields(lines, limits, 502, 502); !checked_fields) {
        return std::unexpected(checked_fields.error());
    }

    std::optional<std::uint64_t> length;
    bool has_coding = false;
    bool chunked_last = false;
    ConnectionTokens connection;
    LineReader reread = field_lines;
    std::size_t kept = 0;
    for (;;) {
        // The kept fields, or the same lines read again (already checked).
        std::string_view name, value;
        if (keep_fields) {
            if (kept == head.headers.size())
                break;
            name = head.headers[kept].name;
            value = head.headers[kept].value;
            ++kept;
        } else {
            const auto line = reread.next();
            if (!line)
                break;
            // check_fields passed every line: it has a colon after a token.
            const auto colon = line->find(':');
            if (colon == std::string_view::npos)
                return error(502, "field line without colon");
            name = line->substr(0, colon);
            value = syntax::trim_ows(line->substr(colon + 1));
        }
        if (syntax::iequals(name, "content-length")) {
            // RFC 9112 6.3 lets a recipient accept repeats of one value,
            // which some servers do send; different values are an attack or a bug.
            bool ok = syntax::for_each_list_element(value, [&](std::string_view element) {
                const auto n = parse_content_length(element);
                if (!n || (length && *length != *n))
                    return false;
                length = n;
                return true;
            });
            if (!ok || !length)
                return error(502, "invalid Content-Length in response");
        } else if (syntax::iequals(name, "transfer-encoding")) {
            has_coding = true;
            bool ok = !value.empty() && syntax::for_each_list_element(value, [&](std::string_view element) {
                // chunked anywhere but last makes the framing ambiguous.
                if (chunked_last)
                    return false;
                chunked_last = syntax::iequals(element, "chunked");
                return true;
            });
            if (!ok)
                return error(502, "invalid Transfer-Encoding in response");
        } else if (syntax::iequals(name, "connection")) {
            if (!read_connection(value, connection))
                return error(502, "invalid Connection in response");
        }
    }
    if (has_coding && length)
        return error(502, "both Content-Length and Transfer-Encoding in response");
    if (has_coding && minor == 0)
        return error(502, "Transfer-Encoding in HTTP/1.0 response");

    head.keep_alive = keep_alive_for(minor, connection);
    if (request_method == "HEAD" || head.status < 200 || head.status == 204 || head.status == 304) {
        head.body = BodyKind::none;
    } else if (has_coding) {
        // RFC 9112 6.3: a final coding other than chunked is delimited by close.
        head.body = chunked_last ? BodyKind::chunked : BodyKind::until_close;
    } else if (length) {
        head.body = BodyKind::content_length;
        head.content_length = *length;
    } else {
        head.body = BodyKind::until_close;
    }
    if (head.body == BodyKind::until_close)
        head.keep_alive = false;
    return std::optional{std::pair{std::move(head), head_size}};
}

} // namespace

ResponseParse parse_response_head(std::string_view buffer, std::string_view request_method, const Limits& limits,
                                  HeadScan* scan)
{
    return parse_response(buffer, request_method, limits, scan, true);
}

ResponseParse parse_response_framing(std::string_view buffer, std::string_view request_method, const Limits& limits,
                                     HeadScan* scan)
{
    return parse_response(buffer, request_method, limits, scan, false);
}

} // namespace pinfold::http
