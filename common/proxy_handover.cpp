#include "pinfold/proxy_handover.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace pinfold {

namespace {

constexpr unsigned char flag_degraded = 1;
constexpr unsigned char flag_exe_lookup = 2;

} // namespace

Result<void> send_proxy_handover(int sock, const ProxyHandover& handover)
{
    if (handover.origin_map_fd < 0)
        return fail("proxy handover without an origin map");
    unsigned char flags = (handover.degraded_identity ? flag_degraded : 0) |
                          (handover.exe_lookup_fd >= 0 ? flag_exe_lookup : 0);
    int fds[2] = {handover.origin_map_fd, handover.exe_lookup_fd};
    std::size_t nfds = handover.exe_lookup_fd >= 0 ? 2 : 1;
    iovec iov{&flags, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof fds)] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), fds, nfds * sizeof(int));
    ssize_t n;
    do {
        n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n != 1)
        return fail_errno("hand the maps over to the proxy");
    return {};
}

Result<ProxyHandover> receive_proxy_handover(int sock, int stop_fd, int timeout_ms)
{
    pollfd fds[2] = {{sock, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    for (;;) {
        int n = ::poll(fds, stop_fd >= 0 ? 2 : 1, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail_errno("poll for the loader's handover");
        if (n == 0)
            return fail("the loader handed no maps over within " + std::to_string(timeout_ms / 1000) + " s");
        break;
    }
    if (!(fds[0].revents & POLLIN))
        return fail("the loader stopped the run before handing the maps over");
    unsigned char flags = 0;
    iovec iov{&flags, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t got;
    do {
        got = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    if (got < 0)
        return fail_errno("receive the loader's handover");
    if (got == 0)
        return fail("the loader stopped the run before handing the maps over");
    int received[2] = {-1, -1};
    std::size_t count = 0;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    if (cmsg && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
        count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        std::memcpy(received, CMSG_DATA(cmsg), std::min<std::size_t>(count, 2) * sizeof(int));
    }
    std::size_t expected = (flags & flag_exe_lookup) ? 2 : 1;
    if ((msg.msg_flags & MSG_CTRUNC) || count != expected) {
        for (std::size_t i = 0; i < std::min<std::size_t>(count, 2); ++i)
            ::close(received[i]);
        return fail("malformed handover from the loader");
    }
    ProxyHandover h;
    h.origin_map_fd = received[0];
    h.exe_lookup_fd = expected == 2 ? received[1] : -1;
    h.degraded_identity = flags & flag_degraded;
    return h;
}

} // namespace pinfold
