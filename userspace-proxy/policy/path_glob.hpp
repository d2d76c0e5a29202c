#pragma once
// Path globs of endpoints. '*' matches any run of characters (possibly none)
// inside one segment; a segment that is exactly "**" matches zero or more
// whole segments. Globs are matched against normalised paths, never raw ones.

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pinfold/error.hpp"

namespace pinfold::policy {

// Brings a glob as written in a policy into the spelling normalize_target
// gives paths (escapes canonical). Rejects what could never match a
// normalised path or would be ambiguous: no leading '/', '?' or '#', empty
// segments ("//") other than a trailing slash, '.'/'..' segments, "**"
// inside a segment, and everything canonical_escapes rejects.
[[nodiscard]] Result<std::string> normalize_glob(std::string_view glob);

class PathGlob {
public:
    // glob must already be in normalize_glob's form; anything else fails,
    // so hand-built policies get the same checks as parsed ones.
    [[nodiscard]] static Result<PathGlob> compile(std::string_view glob);

    // segments: split_segments of a normalised path.
    [[nodiscard]] bool matches(std::span<const std::string_view> segments) const;

    // "/" -> {""}, "/a/b/" -> {"a", "b", ""}. path must start with '/'.
    static void split_segments(std::string_view path, std::vector<std::string_view>& out);

private:
    struct Segment {
        enum class Kind { literal, pattern, any_segments } kind;
        // literal: one piece; pattern: the text around each '*' (>= 2 pieces).
        std::vector<std::string> pieces;

        [[nodiscard]] bool matches(std::string_view segment) const;
    };

    std::vector<Segment> segments_;
};

} // namespace pinfold::policy
