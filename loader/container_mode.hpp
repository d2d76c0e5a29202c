#pragma once
// Container mode: pinfold inside a container that holds CAP_BPF and
// CAP_NET_ADMIN (no CAP_SYS_ADMIN), where /sys/fs/cgroup is the
// container's own cgroup, mounted read-only in a private cgroup namespace.
// No child cgroup can be made, so the hooks go on the container's cgroup
// itself, the proxy and resolver share it and exempt only their own
// sockets (bpf/lib/exempt.h), and what needs child cgroups is reported as
// unavailable. See docs/containers.md.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pinfold/error.hpp"

namespace pinfold::loader {

struct ContainerCgroup {
    std::string path;          // the cgroup2 mount point = pinfold's own cgroup
    int fd = -1;               // O_RDONLY|O_DIRECTORY, closed by the destructor
    std::uint64_t id = 0;
    unsigned level = 0;        // global (what the BPF side counts)

    ContainerCgroup() = default;
    ContainerCgroup(ContainerCgroup&& other) noexcept;
    ContainerCgroup(const ContainerCgroup&) = delete;
    ContainerCgroup& operator=(const ContainerCgroup&) = delete;
    ContainerCgroup& operator=(ContainerCgroup&&) = delete;
    ~ContainerCgroup();
};

// Whether pinfold runs in container mode: the cgroup2 hierarchy mounted at
// `cgroup_root` is read-only. Then pinfold's own cgroup must be the
// mount's root (its /proc/self/cgroup path "/"), else it is refused: the
// hooks would police whatever else shares that cgroup. Empty: host mode.
[[nodiscard]] Result<std::optional<ContainerCgroup>> detect_container_mode(const std::string& cgroup_root);

// Pure part of the check above, for tests.
[[nodiscard]] Result<void> check_container_layout(const std::string& own_cgroup_path, bool bpffs_writable);

// The namespace sandbox maps uids and mounts: it needs CAP_SYS_ADMIN and
// CAP_SETUID, which a CAP_BPF container does not hold. Refuses (with the
// way out: --sandbox off, the container being the job's filesystem
// sandbox) rather than run the job with less than it asked for.
[[nodiscard]] Result<void> check_container_sandbox(bool sandbox_enabled);

// Whether the proxy can run as nobody here, as on a host, instead of as the
// job's uid: pinfold must be able to switch uids (CAP_SETUID, CAP_SETGID)
// and, with no cgroup to kill, to signal it afterwards (CAP_KILL) - a
// container that kept the engine's default capabilities.
[[nodiscard]] bool can_run_proxy_as_nobody() noexcept;

// What container mode does not give, one sentence each, for the log and
// the audit record. `limits_requested`: the run asked for memory, pids or
// cpu limits (they need a child cgroup).
[[nodiscard]] std::vector<std::string> container_mode_limitations(bool limits_requested, bool sandbox_enabled);

// Before the job starts: pinfold becomes the reaper of every orphan of the
// job (so teardown can find them without cgroup.kill) and not dumpable (the
// job runs with the same uid and must not read its fds or ptrace it).
[[nodiscard]] Result<void> enter_container_mode();

// SIGKILLs every descendant of this process except `keep` (the proxy),
// until none is left or `timeout` passes. Orphans are ours (subreaper) and
// reaped here; `command` is left for its owner to reap.
[[nodiscard]] Result<void> kill_descendants(pid_t keep, pid_t command, std::chrono::milliseconds timeout);

} // namespace pinfold::loader
