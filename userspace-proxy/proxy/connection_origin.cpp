#include "connection_origin.hpp"

#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "pinfold/abi_checks.hpp"

namespace pinfold::proxy {

Result<ConnectionOrigin> SocketStorageOrigin::lookup(int accepted_fd) noexcept
{
    // A raw syscall keeps libbpf out of the capability-less proxy.
    pf_origin record{};
    int key = accepted_fd;
    union bpf_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.map_fd = static_cast<__u32>(map_fd_);
    attr.key = reinterpret_cast<__u64>(&key);
    attr.value = reinterpret_cast<__u64>(&record);
    if (::syscall(SYS_bpf, BPF_MAP_LOOKUP_ELEM, &attr, sizeof attr) != 0)
        return fail_errno("no origin recorded for this connection");
    ConnectionOrigin origin;
    std::memcpy(origin.address.data(), record.orig_addr, origin.address.size());
    origin.port = record.orig_port;
    origin.proxy_port = record.proxy_port;
    origin.sandbox_id = record.sandbox_id;
    origin.cgroup_id = record.cgroup_id;
    origin.socket_cookie = record.socket_cookie;
    origin.pid = record.pid;
    origin.tid = record.tid;
    origin.uid = record.uid;
    origin.gid = record.gid;
    return origin;
}

} // namespace pinfold::proxy
