#pragma once
// pinfold's side of degraded executable identity (--allow-degraded-identity,
// docs/identity.md): answers the proxy's "which executable does pid P run"
// by reading /proc/P/exe, which the capability-less proxy may not. Only for
// processes of this run's sandbox cgroup, so the proxy cannot use it to
// look at the rest of the machine.

#include <string>

#include "pinfold/error.hpp"

namespace pinfold::loader {

class ExeLookupService {
public:
    // Answers nothing (EAGAIN) until the sandbox is known.
    [[nodiscard]] static Result<ExeLookupService> create();
    ExeLookupService(ExeLookupService&& other) noexcept;
    ExeLookupService& operator=(ExeLookupService&&) = delete;
    ExeLookupService(const ExeLookupService&) = delete;
    ~ExeLookupService();

    // Our end, to poll; the proxy's end, to hand over (close it after).
    [[nodiscard]] int fd() const noexcept { return fd_; }
    [[nodiscard]] int proxy_fd() const noexcept { return proxy_fd_; }
    void close_proxy_end() noexcept;

    // The sandbox is the cgroup `pid` is in now, as /proc/<pid>/cgroup shows
    // it to us: call it with the command's pid right after it was born into
    // the sandbox cgroup (paths differ by cgroup namespace; this is ours).
    [[nodiscard]] Result<void> set_sandbox_from(int pid);

    // Answers every request waiting on fd(); never blocks.
    void serve() noexcept;

private:
    ExeLookupService(int fd, int proxy_fd) noexcept : fd_(fd), proxy_fd_(proxy_fd) {}

    int fd_ = -1;
    int proxy_fd_ = -1;
    std::string sandbox_cgroup_;
};

// The executable /proc/<pid>/exe names, if <pid> is in `sandbox_cgroup` (or
// below it). Exposed for tests. The pid is pinned with a pidfd so a reused
// pid cannot answer for a process that already exited.
struct ProcExecutable {
    unsigned long long dev = 0;
    unsigned long long ino = 0;
    std::string path;
};
[[nodiscard]] Result<ProcExecutable> executable_of_sandbox_pid(int pid, const std::string& sandbox_cgroup);

} // namespace pinfold::loader
