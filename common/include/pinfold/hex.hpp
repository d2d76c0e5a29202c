#pragma once
// One hex digit's value, for the places that read %XX escapes and chunk
// sizes (HTTP parser, body scan, path normalisation).

namespace pinfold {

// 0-15, or -1 when `c` is not a hex digit.
[[nodiscard]] constexpr int hex_value(unsigned char c) noexcept
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

} // namespace pinfold
