#include "policy/binaries.hpp"

#include <dirent.h>
#include <fnmatch.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "policy/policy.hpp"

namespace pinfold::policy {

namespace {

// Bounds of one glob walk: a glob like "/**/x" must not hang a policy load.
constexpr int max_walk_depth = 32;
constexpr std::size_t max_walk_entries = 200'000;

bool has_wildcard(std::string_view text)
{
    return text.find_first_of("*?[") != std::string_view::npos;
}

std::vector<std::string> split_path(std::string_view path)
{
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= path.size()) {
        auto slash = path.find('/', start);
        if (slash == std::string_view::npos)
            slash = path.size();
        if (slash > start)
            out.emplace_back(path.substr(start, slash - start));
        start = slash + 1;
    }
    return out;
}

// Follows symlinks: what the kernel would exec, and so what it reports as
// mm->exe_file. ENOENT (and a dangling symlink) is "not there", not an error.
Result<std::optional<ExeIdentity>> identity_of(const std::string& path)
{
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
            return std::optional<ExeIdentity>{};
        return fail_errno("stat " + path);
    }
    if (!S_ISREG(st.st_mode))
        return std::optional<ExeIdentity>{};
    return std::optional<ExeIdentity>{ExeIdentity{static_cast<std::uint64_t>(st.st_dev),
                                                  static_cast<std::uint64_t>(st.st_ino)}};
}

// Matches path segments against glob segments; "**" is zero or more whole
// segments, other segments use fnmatch (so '*' never crosses a '/').
bool glob_matches(std::span<const std::string> glob, std::span<const std::string> path)
{
    if (glob.empty())
        return path.empty();
    if (glob.front() == "**") {
        for (std::size_t skip = 0; skip <= path.size(); ++skip)
            if (glob_matches(glob.subspan(1), path.subspan(skip)))
                return true;
        return false;
    }
    if (path.empty())
        return false;
    if (::fnmatch(glob.front().c_str(), path.front().c_str(), FNM_PERIOD) != 0)
        return false;
    return glob_matches(glob.subspan(1), path.subspan(1));
}

struct Walk {
    std::span<const std::string> glob;
    std::vector<ResolvedBinary>& out;
    std::size_t entries = 0;
};

// Walks `dir` (whose segments below the walk's root are `below`), collecting
// files whose relative path matches walk.glob. Directory symlinks are not
// descended into: no loops, and no escape from the walked tree.
Result<void> walk_dir(Walk& walk, const std::string& dir, std::vector<std::string>& below, int depth)
{
    if (depth > max_walk_depth)
        return {};
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
        if (errno == ENOENT || errno == ENOTDIR || errno == EACCES)
            return {};
        return fail_errno("open directory " + dir);
    }
    std::vector<std::pair<std::string, bool>> children;   // name, is a real directory
    while (dirent* e = ::readdir(d)) {
        std::string_view name = e->d_name;
        if (name == "." || name == "..")
            continue;
        if (++walk.entries > max_walk_entries) {
            ::closedir(d);
            return fail("binaries glob walks more than " + std::to_string(max_walk_entries) +
                        " entries; use a narrower pattern");
        }
        bool is_dir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st{};
            std::string child = dir + "/" + std::string(name);
            is_dir = ::lstat(child.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
        }
        children.emplace_back(std::string(name), is_dir);
    }
    ::closedir(d);
    // Sorted so a resolution is reproducible (and tests can compare lists).
    std::sort(children.begin(), children.end());
    for (const auto& [name, is_dir] : children) {
        std::string child = dir == "/" ? "/" + name : dir + "/" + name;
        below.push_back(name);
        if (is_dir) {
            if (auto r = walk_dir(walk, child, below, depth + 1); !r) {
                below.pop_back();
                return r;
            }
        } else if (glob_matches(walk.glob, below)) {
            auto id = identity_of(child);
            if (!id) {
                below.pop_back();
                return std::unexpected(id.error());
            }
            if (*id)
                walk.out.push_back(ResolvedBinary{child, **id});
        }
        below.pop_back();
    }
    return {};
}

Result<void> resolve_glob_under(std::string root, std::span<const std::string> glob,
                                std::vector<ResolvedBinary>& out)
{
    Walk walk{glob, out};
    std::vector<std::string> below;
    return walk_dir(walk, root, below, 0);
}

} // namespace

std::string identity_text(ExeIdentity id)
{
    return std::to_string(id.dev) + ":" + std::to_string(id.ino);
}

BinarySearch search_from_path_variable(std::string_view path_variable)
{
    BinarySearch search;
    std::size_t start = 0;
    while (start <= path_variable.size()) {
        auto colon = path_variable.find(':', start);
        if (colon == std::string_view::npos)
            colon = path_variable.size();
        std::string_view dir = path_variable.substr(start, colon - start);
        // Relative PATH entries ("" means ".") depend on the cwd of whoever
        // execs; they cannot name a stable file, so they are not searched.
        if (dir.starts_with('/'))
            search.path_dirs.emplace_back(dir);
        start = colon + 1;
    }
    return search;
}

Result<std::vector<ResolvedBinary>> resolve_binary(std::string_view entry, const BinarySearch& search)
{
    std::vector<ResolvedBinary> out;
    if (entry.empty())
        return fail("empty binaries entry");
    if (!has_wildcard(entry)) {
        if (entry.starts_with('/')) {
            auto id = identity_of(std::string(entry));
            if (!id)
                return std::unexpected(id.error());
            if (*id)
                out.push_back(ResolvedBinary{std::string(entry), **id});
            return out;
        }
        if (entry.find('/') != std::string_view::npos)
            return fail("binaries entry '" + std::string(entry) + "' is neither absolute nor a bare name");
        for (const std::string& dir : search.path_dirs) {
            std::string candidate = (dir.ends_with('/') ? dir : dir + "/") + std::string(entry);
            auto id = identity_of(candidate);
            if (!id)
                return std::unexpected(id.error());
            if (*id) {
                out.push_back(ResolvedBinary{candidate, **id});
                break;
            }
        }
        return out;
    }
    auto segments = split_path(entry);
    if (entry.starts_with('/')) {
        // Walk from the deepest directory named literally.
        std::string root = "/";
        std::size_t literal = 0;
        while (literal + 1 < segments.size() && !has_wildcard(segments[literal])) {
            root += (root == "/" ? "" : "/") + segments[literal];
            ++literal;
        }
        auto r = resolve_glob_under(root, std::span(segments).subspan(literal), out);
        if (!r)
            return std::unexpected(r.error());
    } else {
        std::set<std::string> walked;
        for (const std::string& dir : search.path_dirs) {
            if (!walked.insert(dir).second)
                continue;
            auto r = resolve_glob_under(dir, segments, out);
            if (!r)
                return std::unexpected(r.error());
        }
    }
    return out;
}

Result<BinaryTable> resolve_policy_binaries(const Policy& policy, const BinarySearch& search,
                                            std::vector<std::string>& warnings)
{
    BinaryTable table;
    for (const Rule& rule : policy.rules) {
        for (const std::string& entry : rule.binaries) {
            if (table.contains(entry))
                continue;
            auto files = resolve_binary(entry, search);
            if (!files)
                return fail(policy.source + ":" + std::to_string(rule.line) + ": rule '" + rule.name +
                            "': binaries entry '" + entry + "': " + files.error().message);
            if (files->empty())
                warnings.push_back(policy.source + ":" + std::to_string(rule.line) + ": rule '" + rule.name +
                                   "': binaries entry '" + entry +
                                   "' matches no file (searched " +
                                   (entry.starts_with('/') ? std::string("that path") : "PATH") +
                                   "); no process can use this rule through it");
            table.emplace(entry, std::move(*files));
        }
    }
    return table;
}

std::string serialize_binary_table(const BinaryTable& table)
{
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (const auto& [entry, files] : table) {
        nlohmann::ordered_json list = nlohmann::ordered_json::array();
        for (const ResolvedBinary& file : files)
            list.push_back({{"path", file.path}, {"dev", file.id.dev}, {"ino", file.id.ino}});
        j[entry] = std::move(list);
    }
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Result<BinaryTable> parse_binary_table(std::string_view text)
{
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return fail("binaries table: not a JSON object");
    BinaryTable table;
    for (const auto& [entry, list] : j.items()) {
        if (!list.is_array())
            return fail("binaries table: entry '" + entry + "' is not a list");
        std::vector<ResolvedBinary> files;
        for (const auto& file : list) {
            if (!file.is_object() || !file.contains("path") || !file["path"].is_string() ||
                !file.contains("dev") || !file["dev"].is_number_unsigned() || !file.contains("ino") ||
                !file["ino"].is_number_unsigned())
                return fail("binaries table: malformed file of entry '" + entry + "'");
            files.push_back(ResolvedBinary{file["path"].get<std::string>(),
                                           ExeIdentity{file["dev"].get<std::uint64_t>(),
                                                       file["ino"].get<std::uint64_t>()}});
        }
        table.emplace(entry, std::move(files));
    }
    return table;
}

} // namespace pinfold::policy
