#include "pinfold/socket_exemption.hpp"

#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "pinfold_abi.h"

namespace pinfold {

namespace {

std::atomic<int> exempt_map_fd{-1};

// Socket storage takes the socket's fd as key, so only this process's own
// sockets can be marked. BPF_NOEXIST: a socket is marked once.
bool write_mark(int map_fd, int socket_fd, std::uint64_t mark)
{
    union bpf_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.map_fd = static_cast<__u32>(map_fd);
    attr.key = reinterpret_cast<std::uintptr_t>(&socket_fd);
    attr.value = reinterpret_cast<std::uintptr_t>(&mark);
    attr.flags = BPF_NOEXIST;
    return ::syscall(SYS_bpf, BPF_MAP_UPDATE_ELEM, &attr, sizeof attr) == 0;
}

std::atomic<ExemptionWriter> writer{write_mark};

bool mark(int socket_fd, std::uint64_t value)
{
    int map_fd = exempt_map_fd.load(std::memory_order_relaxed);
    if (map_fd < 0)
        return true;
    return writer.load(std::memory_order_relaxed)(map_fd, socket_fd, value);
}

} // namespace

void set_exemption_map(int map_fd) noexcept { exempt_map_fd.store(map_fd); }

bool exemption_enabled() noexcept { return exempt_map_fd.load() >= 0; }

bool exempt_upstream(int fd) noexcept { return mark(fd, PF_EXEMPT_CONNECT); }

bool exempt_replies(int fd) noexcept { return mark(fd, PF_EXEMPT_REPLY); }

void set_exemption_writer_for_testing(ExemptionWriter w) noexcept { writer.store(w ? w : write_mark); }

} // namespace pinfold
