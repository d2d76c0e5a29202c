#include "exe_lookup_service.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include <spdlog/spdlog.h>

#include "pinfold/exe_lookup_wire.hpp"

namespace pinfold::loader {

namespace {

std::shared_ptr<spdlog::logger> log()
{
    static auto logger = [] {
        auto l = spdlog::get("loader");
        return l ? l : spdlog::default_logger()->clone("loader");
    }();
    return logger;
}

// The unified (v2) line of /proc/<pid>/cgroup: "0::/path".
Result<std::string> cgroup_of(int pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
    if (!in)
        return fail_errno("read /proc/" + std::to_string(pid) + "/cgroup");
    std::string line;
    while (std::getline(in, line)) {
        if (line.starts_with("0::"))
            return line.substr(3);
    }
    return fail("pid " + std::to_string(pid) + " has no cgroup v2 path", ESRCH);
}

bool inside(const std::string& path, const std::string& dir)
{
    return dir == "/" || path == dir || (path.starts_with(dir) && path.size() > dir.size() && path[dir.size()] == '/');
}

} // namespace

Result<ProcExecutable> executable_of_sandbox_pid(int pid, const std::string& sandbox_cgroup)
{
    if (pid <= 0)
        return fail("no pid", EINVAL);
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0)
        return fail_errno("pidfd_open " + std::to_string(pid));
    struct Close {
        int fd;
        ~Close() { ::close(fd); }
    } close_pidfd{pidfd};
    auto cgroup = cgroup_of(pid);
    if (!cgroup)
        return std::unexpected(cgroup.error());
    if (!inside(*cgroup, sandbox_cgroup))
        return fail("pid " + std::to_string(pid) + " is not in the sandbox (" + *cgroup + ")", EPERM);
    std::string link = "/proc/" + std::to_string(pid) + "/exe";
    struct stat st{};
    if (::stat(link.c_str(), &st) != 0)
        return fail_errno("stat " + link);
    char buf[4096];
    ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
    if (n < 0)
        return fail_errno("readlink " + link);
    // Still the process the pidfd pinned: the pid was not reused meanwhile.
    if (::syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) != 0)
        return fail("pid " + std::to_string(pid) + " exited during the lookup", ESRCH);
    return ProcExecutable{static_cast<unsigned long long>(st.st_dev), static_cast<unsigned long long>(st.st_ino),
                          std::string(buf, static_cast<std::size_t>(n))};
}

Result<ExeLookupService> ExeLookupService::create()
{
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) != 0)
        return fail_errno("socketpair for the executable lookup");
    // The proxy's end blocks (it polls with a deadline itself).
    ::fcntl(fds[1], F_SETFL, ::fcntl(fds[1], F_GETFL) & ~O_NONBLOCK);
    return ExeLookupService(fds[0], fds[1]);
}

Result<void> ExeLookupService::set_sandbox_from(int pid)
{
    auto cgroup = cgroup_of(pid);
    if (!cgroup)
        return std::unexpected(cgroup.error());
    sandbox_cgroup_ = std::move(*cgroup);
    return {};
}

ExeLookupService::ExeLookupService(ExeLookupService&& other) noexcept
    : fd_(other.fd_), proxy_fd_(other.proxy_fd_), sandbox_cgroup_(std::move(other.sandbox_cgroup_))
{
    other.fd_ = -1;
    other.proxy_fd_ = -1;
}

ExeLookupService::~ExeLookupService()
{
    if (fd_ >= 0)
        ::close(fd_);
    close_proxy_end();
}

void ExeLookupService::close_proxy_end() noexcept
{
    if (proxy_fd_ >= 0)
        ::close(proxy_fd_);
    proxy_fd_ = -1;
}

void ExeLookupService::serve() noexcept
{
    // Bounded per wake-up; poll wakes us again for the rest.
    for (int i = 0; i < 64; ++i) {
        ExeLookupRequest request;
        ssize_t got = ::recv(fd_, &request, sizeof request, MSG_DONTWAIT);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return;
        auto answer = std::make_unique<ExeLookupAnswer>();
        answer->sequence = request.sequence;
        if (got != static_cast<ssize_t>(sizeof request)) {
            answer->error = EINVAL;
        } else if (sandbox_cgroup_.empty()) {
            answer->error = EAGAIN;   // no sandbox process exists yet
        } else {
            try {
                auto found = executable_of_sandbox_pid(static_cast<int>(request.pid), sandbox_cgroup_);
                if (found) {
                    answer->dev = found->dev;
                    answer->ino = found->ino;
                    std::strncpy(answer->path, found->path.c_str(), sizeof answer->path - 1);
                } else {
                    answer->error = found.error().code ? found.error().code : EIO;
                    log()->warn("degraded identity: {}", found.error().what());
                }
            } catch (...) {
                answer->error = ENOMEM;
            }
        }
        if (::send(fd_, answer.get(), sizeof *answer, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
            log()->warn("degraded identity: cannot answer the proxy: {}", std::strerror(errno));
    }
}

} // namespace pinfold::loader
