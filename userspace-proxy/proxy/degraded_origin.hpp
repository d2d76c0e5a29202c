#pragma once
// Degraded executable identity (--allow-degraded-identity): when pinfold
// could not load the connect-time capture (no CAP_PERFMON), the executable
// of the connecting pid is looked up when the proxy accepts, through
// /proc/<pid>/exe. That is weaker: a process that connects and then execs an
// allowed binary before the accept is judged as that binary
// (docs/identity.md). Every origin it produces says so in identity_note.

#include <cstdint>
#include <mutex>
#include <string>

#include "connection_origin.hpp"
#include "pinfold/error.hpp"
#include "policy/binaries.hpp"

namespace pinfold::proxy {

struct LookedUpExecutable {
    policy::ExeIdentity exe;
    std::string path;
};

// Who answers "which executable does pid run now". The proxy (uid nobody,
// no capabilities) may not read /proc/<pid>/exe of the sandbox's uid, so the
// real one asks pinfold; tests fake it.
class ExecutableLookup {
public:
    virtual ~ExecutableLookup() = default;
    [[nodiscard]] virtual Result<LookedUpExecutable> executable_of(std::uint32_t pid,
                                                                   std::uint64_t cgroup_id) noexcept = 0;
};

// Asks pinfold over the SOCK_SEQPACKET fd it handed us (--exe-lookup-fd).
// Bounded wait; thread-safe (the HTTP and DNS servers both look up).
class LoaderExecutableLookup final : public ExecutableLookup {
public:
    explicit LoaderExecutableLookup(int fd, int timeout_ms = 2000) noexcept : fd_(fd), timeout_ms_(timeout_ms) {}
    [[nodiscard]] Result<LookedUpExecutable> executable_of(std::uint32_t pid,
                                                           std::uint64_t cgroup_id) noexcept override;

private:
    int fd_;
    int timeout_ms_;
    std::mutex mutex_;
    std::uint64_t sequence_ = 0;
};

// The kernel's record (destination, pid, cgroup) with the executable taken
// from `lookup` instead of the connect-time capture. A failed lookup leaves
// the identity unknown (0:0): binaries: rules then admit nothing.
class DegradedIdentityOrigin final : public OriginSource {
public:
    DegradedIdentityOrigin(OriginSource& kernel, ExecutableLookup& lookup) noexcept
        : kernel_(kernel), lookup_(lookup) {}
    [[nodiscard]] Result<ConnectionOrigin> lookup(int accepted_fd) noexcept override;

private:
    OriginSource& kernel_;
    ExecutableLookup& lookup_;
};

} // namespace pinfold::proxy
