#include "degraded_origin.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>

#include "pinfold/exe_lookup_wire.hpp"

namespace pinfold::proxy {

Result<LookedUpExecutable> LoaderExecutableLookup::executable_of(std::uint32_t pid, std::uint64_t cgroup_id) noexcept
{
    std::lock_guard lock(mutex_);
    ExeLookupRequest request;
    request.sequence = ++sequence_;
    request.pid = pid;
    request.cgroup_id = cgroup_id;
    ssize_t sent;
    do
        sent = ::send(fd_, &request, sizeof request, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    if (sent != static_cast<ssize_t>(sizeof request))
        return fail_errno("ask pinfold for the executable of pid " + std::to_string(pid));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
    // Bounded: at most one stale answer per earlier timed-out request, and
    // never past the deadline.
    for (int attempt = 0; attempt < 64; ++attempt) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            break;
        pollfd pfd{fd_, POLLIN, 0};
        int n = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail_errno("wait for pinfold's answer");
        if (n == 0)
            break;
        ExeLookupAnswer answer;
        ssize_t got = ::recv(fd_, &answer, sizeof answer, MSG_DONTWAIT);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got == 0)
            return fail("pinfold closed the executable lookup");
        if (got != static_cast<ssize_t>(sizeof answer))
            return fail_errno("read pinfold's answer");
        if (answer.sequence != request.sequence)
            continue;   // the late answer to a request that timed out
        if (answer.error != 0)
            return fail("pinfold could not read /proc/" + std::to_string(pid) + "/exe", answer.error);
        answer.path[sizeof answer.path - 1] = '\0';
        try {
            return LookedUpExecutable{policy::ExeIdentity{answer.dev, answer.ino}, std::string(answer.path)};
        } catch (...) {
            return fail("out of memory");
        }
    }
    return fail("pinfold did not answer the executable lookup in time", ETIMEDOUT);
}

Result<ConnectionOrigin> DegradedIdentityOrigin::lookup(int accepted_fd) noexcept
{
    auto origin = kernel_.lookup(accepted_fd);
    if (!origin)
        return origin;
    try {
        if (origin->exe.known()) {
            // The kernel did capture it after all: keep the stronger identity.
            origin->identity_note.clear();
            return origin;
        }
        auto found = origin->pid != 0 ? lookup_.executable_of(origin->pid, origin->cgroup_id)
                                      : Result<LookedUpExecutable>(fail("no pid in the kernel's record"));
        if (!found) {
            origin->identity_note = "degraded: no kernel executable identity, and /proc/" +
                                    std::to_string(origin->pid) + "/exe could not be read (" +
                                    found.error().what() + "): binaries: rules admit no connection";
            return origin;
        }
        origin->exe = found->exe;
        origin->exe_path = found->path;
        auto slash = found->path.rfind('/');
        origin->exe_name = slash == std::string::npos ? found->path : found->path.substr(slash + 1);
        origin->identity_note = "degraded: executable read from /proc/" + std::to_string(origin->pid) +
                                "/exe when the proxy accepted, not captured at connect (a process that "
                                "connects and then execs is judged as what it execs)";
    } catch (...) {
        return fail("out of memory");
    }
    return origin;
}

} // namespace pinfold::proxy
