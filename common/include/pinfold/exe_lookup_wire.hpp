#pragma once
// Degraded executable identity (--allow-degraded-identity, docs/identity.md):
// the capability-less proxy cannot read /proc/<pid>/exe of the sandbox's
// processes, so it asks pinfold over a SOCK_SEQPACKET socketpair handed to
// it at start. One message per request and per answer; both ends are ours,
// so the layout is simply these structs.

#include <cstdint>

namespace pinfold {

struct ExeLookupRequest {
    std::uint64_t sequence = 0;   // echoed, so a late answer is never taken for a newer request
    std::uint64_t cgroup_id = 0;  // from the kernel's record, for the answer's sanity check
    std::uint32_t pid = 0;        // tgid that called connect(), from the kernel's record
    std::uint32_t reserved = 0;
};

struct ExeLookupAnswer {
    std::uint64_t sequence = 0;
    std::uint64_t dev = 0;        // st_dev of /proc/<pid>/exe
    std::uint64_t ino = 0;
    std::int32_t error = 0;       // errno of the lookup; 0: dev/ino/path are set
    std::uint32_t reserved = 0;
    char path[4064] = {};         // readlink of /proc/<pid>/exe, NUL-terminated (for humans)
};

static_assert(sizeof(ExeLookupRequest) == 24);
static_assert(sizeof(ExeLookupAnswer) == 4096);

} // namespace pinfold
