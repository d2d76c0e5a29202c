#pragma once
// `binaries:` entries of a policy, resolved to executable identities.
//
// An identity is the (st_dev, st_ino) of the real file, as stat(2) reports
// it: symlinks are followed, so a symlink to an allowed binary matches and a
// copy or a rename-into-place of another file never does. The kernel
// captures the same pair from the connecting task's mm->exe_file at
// connect() (bpf/lib/identity.h), so matching is an exact comparison.
//
// Resolution touches the filesystem and runs when a policy is loaded or
// reloaded (compile time); decisions only look the connection's identity up
// in the resulting sets.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "pinfold/error.hpp"

namespace pinfold::policy {

struct ExeIdentity {
    std::uint64_t dev = 0;   // st_dev encoding (userspace dev_t)
    std::uint64_t ino = 0;

    // 0:0 means "not captured"; it never matches anything.
    [[nodiscard]] bool known() const noexcept { return dev != 0 || ino != 0; }
    friend auto operator<=>(const ExeIdentity&, const ExeIdentity&) = default;
};

// "dev:ino" in decimal, the way `stat -c %d:%i FILE` prints it.
[[nodiscard]] std::string identity_text(ExeIdentity id);

struct ResolvedBinary {
    std::string path;        // the file as found (before following symlinks)
    ExeIdentity id;
    friend bool operator==(const ResolvedBinary&, const ResolvedBinary&) = default;
};

// Policy entry as written ("curl", "/usr/bin/gh", "**/git") -> the files it
// resolved to. An entry that resolved to nothing maps to an empty list: its
// rules match no binary through it (fail closed).
using BinaryTable = std::map<std::string, std::vector<ResolvedBinary>, std::less<>>;

// Where names and relative globs are looked for: the sandbox's PATH.
struct BinarySearch {
    std::vector<std::string> path_dirs;   // PATH split on ':', in order
};

[[nodiscard]] BinarySearch search_from_path_variable(std::string_view path_variable);

// Resolves one entry:
// - "/abs/path": that file (symlinks followed);
// - "name": the first regular file "name" in a PATH directory, as exec would
//   find it;
// - a glob ('*' inside one path segment, "**" any number of segments):
//   absolute globs are walked from their longest literal directory, "**/x"
//   under every PATH directory. Walks do not follow directory symlinks and
//   are bounded (depth and entries); matched files are followed.
// Only regular files count. Errors are I/O failures other than "not found".
[[nodiscard]] Result<std::vector<ResolvedBinary>> resolve_binary(std::string_view entry,
                                                                 const BinarySearch& search);

// Every distinct entry of every rule. `warnings` gets one line per entry that
// resolved to nothing.
struct Policy;
[[nodiscard]] Result<BinaryTable> resolve_policy_binaries(const Policy& policy, const BinarySearch& search,
                                                          std::vector<std::string>& warnings);

// The table travels from the loader (which resolves with the sandbox's view
// and privileges) to the proxy as JSON.
[[nodiscard]] std::string serialize_binary_table(const BinaryTable& table);
[[nodiscard]] Result<BinaryTable> parse_binary_table(std::string_view text);

} // namespace pinfold::policy
