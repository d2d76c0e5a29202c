#pragma once
// Request-target normalisation. The target comes from an untrusted client and
// the policy matches the normalised path, so anything two servers could read
// differently is rejected rather than guessed at.

#include <string>
#include <string_view>

#include "pinfold/error.hpp"

namespace pinfold::policy {

struct NormalizedTarget {
    std::string path;    // starts with '/', no dot segments, no "//"
    std::string query;   // without the '?', verbatim
};

// target is the origin-form request target ("/a/b?x=1"). Rejects (with the
// reason in Error::message): no leading '/', bytes outside printable ASCII,
// '#', '\', malformed or ambiguous percent-escapes (%2F %5C %00 %25), dot
// segments above the root or after an empty segment, ".;"/"..;" segments.
[[nodiscard]] Result<NormalizedTarget> normalize_target(std::string_view target);

// True when path is exactly what normalize_target would produce for it
// (no query). Lets the matcher refuse paths a caller forgot to normalise.
[[nodiscard]] bool is_normalized_path(std::string_view path);

namespace detail {

// The percent-escape half of normalisation, shared with endpoint globs so a
// glob and the paths it is matched against are spelled the same way:
// unreserved characters decoded, other escapes kept with uppercase hex.
[[nodiscard]] Result<std::string> canonical_escapes(std::string_view path);

} // namespace detail

} // namespace pinfold::policy
