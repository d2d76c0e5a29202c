#pragma once
// Character classes and small helpers from RFC 9110/9112, shared by the head
// parser, the body decoder and the serializer. Internal to pinfold_http.

#include <array>
#include <cstddef>
#include <string_view>

#include "pinfold/hex.hpp"

namespace pinfold::http::syntax {

[[nodiscard]] constexpr bool is_digit(unsigned char c) noexcept { return c >= '0' && c <= '9'; }

[[nodiscard]] constexpr bool is_alpha(unsigned char c) noexcept
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// tchar from RFC 9110 5.6.2.
[[nodiscard]] constexpr bool is_tchar_by_rule(unsigned char c) noexcept
{
    if (is_alpha(c) || is_digit(c))
        return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

// Field names are checked byte by byte on every head: one lookup per byte.
inline constexpr std::array<bool, 256> tchar_table = [] {
    std::array<bool, 256> table{};
    for (unsigned c = 0; c < 256; ++c)
        table[c] = is_tchar_by_rule(static_cast<unsigned char>(c));
    return table;
}();

[[nodiscard]] constexpr bool is_tchar(unsigned char c) noexcept { return tchar_table[c]; }

[[nodiscard]] constexpr bool is_ows(unsigned char c) noexcept { return c == ' ' || c == '\t'; }

[[nodiscard]] constexpr bool is_ctl(unsigned char c) noexcept { return c < 0x20 || c == 0x7f; }

// A byte allowed inside a field value, reason phrase or quoted pair:
// HTAB, SP, VCHAR, obs-text.
[[nodiscard]] constexpr bool is_field_char(unsigned char c) noexcept { return c == '\t' || !is_ctl(c); }

// Printable ASCII without space: what a request-target may contain.
[[nodiscard]] constexpr bool is_vchar(unsigned char c) noexcept { return c > 0x20 && c < 0x7f; }

using pinfold::hex_value;

[[nodiscard]] constexpr unsigned char to_lower(unsigned char c) noexcept
{
    return (c >= 'A' && c <= 'Z') ? static_cast<unsigned char>(c + ('a' - 'A')) : c;
}

// ASCII-only on purpose: locale-aware comparison would let bytes >= 0x80
// match differently from what upstream servers do.
[[nodiscard]] constexpr bool iequals(std::string_view a, std::string_view b) noexcept
{
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (to_lower(static_cast<unsigned char>(a[i])) != to_lower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

[[nodiscard]] constexpr bool is_token(std::string_view s) noexcept
{
    if (s.empty())
        return false;
    for (char c : s)
        if (!is_tchar(static_cast<unsigned char>(c)))
            return false;
    return true;
}

[[nodiscard]] constexpr std::string_view trim_ows(std::string_view s) noexcept
{
    while (!s.empty() && is_ows(static_cast<unsigned char>(s.front())))
        s.remove_prefix(1);
    while (!s.empty() && is_ows(static_cast<unsigned char>(s.back())))
        s.remove_suffix(1);
    return s;
}

// Calls fn(element) for each element of a #rule list, OWS-trimmed. Empty
// elements are skipped, as RFC 9110 5.6.1 tells recipients to do. fn returns
// false to stop; the function then returns false.
template <typename Fn>
constexpr bool for_each_list_element(std::string_view list, Fn&& fn)
{
    while (true) {
        const auto comma = list.find(',');
        const auto element = trim_ows(list.substr(0, comma));
        if (!element.empty() && !fn(element))
            return false;
        if (comma == std::string_view::npos)
            return true;
        list.remove_prefix(comma + 1);
    }
}

} // namespace pinfold::http::syntax
