#include "policy/normalize.hpp"

#include <cstdio>
#include <vector>

#include "pinfold/hex.hpp"

namespace pinfold::policy {

namespace {

bool is_printable(unsigned char c)
{
    // Space is excluded: it ends the target in a request line.
    return c > 0x20 && c < 0x7f;
}

bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

std::string byte_text(unsigned char c)
{
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02X", c);
    return buf;
}

// RFC 3986 §5.2.4 on an already escape-canonical path, then "//" collapsed.
// Collapsing before or after dot removal gives different answers when ".."
// meets an empty segment ("/a//.." is "/a/" to one server and "/" to
// another), so that case is refused instead of picking one.
Result<std::string> remove_dot_segments(std::string_view path)
{
    std::vector<std::string_view> kept;
    bool trailing_slash = false;
    std::size_t pos = 1;
    for (;;) {
        std::size_t end = path.find('/', pos);
        bool last = end == std::string_view::npos;
        std::string_view segment = path.substr(pos, last ? std::string_view::npos : end - pos);
        trailing_slash = false;
        if (segment == ".") {
            trailing_slash = last;
        } else if (segment == "..") {
            if (kept.empty())
                return fail("'..' climbs above the root");
            if (kept.back().empty())
                return fail("'..' after an empty segment ('//') is ambiguous");
            kept.pop_back();
            trailing_slash = last;
        } else if (segment.starts_with(".;") || segment.starts_with("..;")) {
            // Servlet containers strip ";params" and then see a dot segment.
            return fail("dot segment with ';' parameters is ambiguous");
        } else if (segment.empty() && last) {
            trailing_slash = true;
        } else {
            kept.push_back(segment);
        }
        if (last)
            break;
        pos = end + 1;
    }

    std::string out;
    out.reserve(path.size());
    for (std::string_view segment : kept) {
        if (segment.empty())
            continue;
        out += '/';
        out += segment;
    }
    if (out.empty() || trailing_slash)
        out += '/';
    return out;
}

} // namespace

namespace detail {

Result<std::string> canonical_escapes(std::string_view path)
{
    std::string out;
    out.reserve(path.size());
    for (std::size_t i = 0; i < path.size(); ++i) {
        auto c = static_cast<unsigned char>(path[i]);
        if (!is_printable(c))
            return fail("byte " + byte_text(c) + " at offset " + std::to_string(i) +
                        " is not printable ASCII");
        if (c == '\\')
            return fail("backslash at offset " + std::to_string(i));
        if (c == '#')
            return fail("'#' (fragment) at offset " + std::to_string(i));
        if (c != '%') {
            out += static_cast<char>(c);
            continue;
        }
        if (i + 2 >= path.size())
            return fail("truncated percent-escape at offset " + std::to_string(i));
        int hi = pinfold::hex_value(path[i + 1]);
        int lo = pinfold::hex_value(path[i + 2]);
        if (hi < 0 || lo < 0)
            return fail("malformed percent-escape at offset " + std::to_string(i));
        auto value = static_cast<unsigned char>(hi * 16 + lo);
        switch (value) {
        case '/':
            return fail("encoded slash (%2F) at offset " + std::to_string(i));
        case '\\':
            return fail("encoded backslash (%5C) at offset " + std::to_string(i));
        case '\0':
            return fail("encoded NUL (%00) at offset " + std::to_string(i));
        case '%':
            return fail("encoded percent (%25) at offset " + std::to_string(i) +
                        ": double encoding is ambiguous");
        default:
            break;
        }
        if (is_unreserved(value)) {
            out += static_cast<char>(value);
        } else {
            static constexpr char digits[] = "0123456789ABCDEF";
            out += '%';
            out += digits[value >> 4];
            out += digits[value & 0xf];
        }
        i += 2;
    }
    return out;
}

} // namespace detail

Result<NormalizedTarget> normalize_target(std::string_view target)
{
    if (target.empty() || target.front() != '/')
        return fail("request target must start with '/'");

    std::size_t question = target.find('?');
    std::string_view raw_path = target.substr(0, question);
    std::string_view query =
        question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);

    for (std::size_t i = 0; i < query.size(); ++i) {
        auto c = static_cast<unsigned char>(query[i]);
        if (!is_printable(c))
            return fail("byte " + byte_text(c) + " in the query is not printable ASCII");
        if (c == '#')
            return fail("'#' (fragment) in the query");
    }

    auto escaped = detail::canonical_escapes(raw_path);
    if (!escaped)
        return fail("request path: " + escaped.error().message);
    auto path = remove_dot_segments(*escaped);
    if (!path)
        return fail("request path: " + path.error().message);
    return NormalizedTarget{std::move(*path), std::string(query)};
}

bool is_normalized_path(std::string_view path)
{
    if (path.find('?') != std::string_view::npos)
        return false;
    auto normal = normalize_target(path);
    return normal && normal->path == path;
}

} // namespace pinfold::policy
