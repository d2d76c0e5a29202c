#include "policy/path_glob.hpp"

#include "policy/normalize.hpp"

namespace pinfold::policy {

Result<std::string> normalize_glob(std::string_view glob)
{
    if (glob.empty() || glob.front() != '/')
        return fail("path must start with '/'");
    if (glob.find('?') != std::string_view::npos)
        return fail("path must not contain a query ('?')");
    if (glob.find('#') != std::string_view::npos)
        return fail("path must not contain a fragment ('#')");

    auto escaped = detail::canonical_escapes(glob);
    if (!escaped)
        return fail("path: " + escaped.error().message);

    std::vector<std::string_view> segments;
    PathGlob::split_segments(*escaped, segments);
    for (std::size_t i = 0; i < segments.size(); ++i) {
        std::string_view segment = segments[i];
        bool last = i + 1 == segments.size();
        if (segment.empty() && !last)
            return fail("path has an empty segment ('//'); normalised paths never do");
        if (segment == "." || segment == ".." || segment.starts_with(".;") ||
            segment.starts_with("..;"))
            return fail("path has a dot segment ('" + std::string(segment) + "')");
        if (segment != "**" && segment.find("**") != std::string_view::npos)
            return fail("'**' must be a whole path segment, in '" + std::string(segment) + "'");
    }
    return std::move(*escaped);
}

Result<PathGlob> PathGlob::compile(std::string_view glob)
{
    auto normal = normalize_glob(glob);
    if (!normal)
        return std::unexpected(normal.error());
    if (*normal != glob)
        return fail("path glob '" + std::string(glob) + "' is not normalised (expected '" +
                    *normal + "')");

    PathGlob out;
    std::vector<std::string_view> segments;
    split_segments(glob, segments);
    for (std::string_view segment : segments) {
        Segment compiled;
        if (segment == "**") {
            compiled.kind = Segment::Kind::any_segments;
        } else if (segment.find('*') == std::string_view::npos) {
            compiled.kind = Segment::Kind::literal;
            compiled.pieces.emplace_back(segment);
        } else {
            compiled.kind = Segment::Kind::pattern;
            std::size_t pos = 0;
            for (;;) {
                std::size_t star = segment.find('*', pos);
                compiled.pieces.emplace_back(segment.substr(pos, star - pos));
                if (star == std::string_view::npos)
                    break;
                pos = star + 1;
            }
        }
        out.segments_.push_back(std::move(compiled));
    }
    return out;
}

bool PathGlob::Segment::matches(std::string_view segment) const
{
    switch (kind) {
    case Kind::any_segments:
        return true;
    case Kind::literal:
        return segment == pieces.front();
    case Kind::pattern:
        break;
    }
    const std::string& first = pieces.front();
    const std::string& last = pieces.back();
    if (segment.size() < first.size() + last.size() || !segment.starts_with(first) ||
        !segment.ends_with(last))
        return false;
    // Leftmost placement of each middle piece is optimal: any later fit
    // would only leave less room for the pieces after it.
    std::string_view middle = segment.substr(0, segment.size() - last.size());
    std::size_t pos = first.size();
    for (std::size_t i = 1; i + 1 < pieces.size(); ++i) {
        std::size_t found = middle.find(pieces[i], pos);
        if (found == std::string_view::npos)
            return false;
        pos = found + pieces[i].size();
    }
    return true;
}

bool PathGlob::matches(std::span<const std::string_view> segments) const
{
    // Wildcard matching at segment level with "**" as the star: on a
    // mismatch, let the most recent "**" swallow one more segment. Linear
    // backtracking suffices because a later "**" can absorb whatever an
    // earlier one would have.
    constexpr std::size_t none = static_cast<std::size_t>(-1);
    std::size_t g = 0, s = 0, star_g = none, star_s = 0;
    while (s < segments.size()) {
        if (g < segments_.size() && segments_[g].kind == Segment::Kind::any_segments) {
            star_g = g++;
            star_s = s;
        } else if (g < segments_.size() && segments_[g].matches(segments[s])) {
            ++g;
            ++s;
        } else if (star_g != none) {
            g = star_g + 1;
            s = ++star_s;
        } else {
            return false;
        }
    }
    while (g < segments_.size() && segments_[g].kind == Segment::Kind::any_segments)
        ++g;
    return g == segments_.size();
}

void PathGlob::split_segments(std::string_view path, std::vector<std::string_view>& out)
{
    out.clear();
    if (path.empty()) {
        out.emplace_back();
        return;
    }
    std::size_t pos = 1;
    for (;;) {
        std::size_t end = path.find('/', pos);
        if (end == std::string_view::npos) {
            out.push_back(path.substr(pos));
            return;
        }
        out.push_back(path.substr(pos, end - pos));
        pos = end + 1;
    }
}

} // namespace pinfold::policy
