#pragma once
// How the proxy learns where an accepted connection was really going and
// who opened it. The kernel wrote this before the client's SYN left; the
// proxy only reads it, through this small interface so tests can fake it
// and libbpf never reaches the data path.

#include <cstdint>
#include <string>

#include "pinfold/address.hpp"
#include "pinfold/error.hpp"
#include "policy/binaries.hpp"

namespace pinfold::proxy {

struct ConnectionOrigin {
    MappedAddress address{};   // dialled address (IPv4 mapped)
    std::uint16_t port = 0;    // dialled port
    std::uint16_t proxy_port = 0;
    std::uint64_t sandbox_id = 0;
    std::uint64_t cgroup_id = 0;
    std::uint64_t socket_cookie = 0;
    std::uint32_t pid = 0;
    std::uint32_t tid = 0;
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    // Executable that called connect(), captured by the kernel at that
    // moment (0:0 when the loader could not enable capture).
    policy::ExeIdentity exe;
    std::string exe_name;      // its file name as the kernel saw it
    // For humans only, never for decisions: /proc/<pid>/exe read at accept
    // when this process may (and it is still the same file), else exe_name.
    std::string exe_path;
    // Set when the identity came from a weaker source than the kernel's
    // connect-time record (--allow-degraded-identity); says which.
    std::string identity_note;
};

// Whether a process with effective uid `own_uid` may read /proc/<pid>/exe
// of a process whose uid is `target_uid`: the kernel's ptrace access check
// wants the same uid, or CAP_SYS_PTRACE. The proxy runs as nobody without
// capabilities, so for a sandbox of another uid the readlink could only
// fail (EACCES) and is not tried. A process that changed its uid to ours
// after connect() loses only the informative path, never a decision.
[[nodiscard]] bool exe_link_readable(std::uint32_t target_uid, std::uint32_t own_uid, bool cap_sys_ptrace) noexcept;

class OriginSource {
public:
    virtual ~OriginSource() = default;
    // The origin of the connection on `accepted_fd`; an error when the
    // kernel recorded none (it did not come from a sandbox).
    [[nodiscard]] virtual Result<ConnectionOrigin> lookup(int accepted_fd) noexcept = 0;
};

// Reads the origin_map socket storage with the accepted fd as key. Needs
// no capability: only the map fd, inherited from the loader.
class SocketStorageOrigin final : public OriginSource {
public:
    explicit SocketStorageOrigin(int map_fd) noexcept;
    [[nodiscard]] Result<ConnectionOrigin> lookup(int accepted_fd) noexcept override;
    // Put on every origin (and so every audit line) when the loader runs
    // without kernel identity capture (--allow-degraded-identity).
    void set_identity_note(std::string note) { identity_note_ = std::move(note); }

private:
    int map_fd_;
    std::uint32_t own_uid_;
    bool cap_sys_ptrace_;
    std::string identity_note_;
};

} // namespace pinfold::proxy
