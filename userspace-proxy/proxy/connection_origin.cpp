#include "connection_origin.hpp"

#include <linux/bpf.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sys/stat.h>

#include <cstring>
#include <string>

#include "pinfold/abi_checks.hpp"

namespace pinfold::proxy {

namespace {

bool has_cap_sys_ptrace() noexcept
{
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capget, &header, data) != 0)
        return true;   // unknown: keep trying the readlink
    return (data[CAP_SYS_PTRACE / 32].effective & (1u << (CAP_SYS_PTRACE % 32))) != 0;
}

// Informative path of the connecting executable. The capability-less proxy
// may not read /proc/<pid>/exe of another uid's process (EACCES); then the
// kernel-recorded name stands. A path is only shown while it is still the
// file the kernel saw, so an exec after connect() cannot put a misleading
// name into the audit log.
// `readable`: exe_link_readable(), so a readlink that must fail is not made.
std::string human_exe_path(const ConnectionOrigin& origin, bool readable)
{
    if (origin.pid == 0 || !origin.exe.known() || !readable)
        return origin.exe_name;
    std::string link = "/proc/" + std::to_string(origin.pid) + "/exe";
    char buf[4096];
    ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
    struct stat st{};
    if (n <= 0 || ::stat(link.c_str(), &st) != 0 || st.st_dev != origin.exe.dev || st.st_ino != origin.exe.ino)
        return origin.exe_name;
    return std::string(buf, static_cast<std::size_t>(n));
}

} // namespace

bool exe_link_readable(std::uint32_t target_uid, std::uint32_t own_uid, bool cap_sys_ptrace) noexcept
{
    return cap_sys_ptrace || target_uid == own_uid;
}

SocketStorageOrigin::SocketStorageOrigin(int map_fd) noexcept
    : map_fd_(map_fd), own_uid_(::geteuid()), cap_sys_ptrace_(has_cap_sys_ptrace())
{
}

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
    origin.exe = policy::ExeIdentity{record.exe_dev, record.exe_ino};
    origin.exe_name.assign(record.exe_name, ::strnlen(record.exe_name, sizeof record.exe_name));
    origin.exe_path = human_exe_path(origin, exe_link_readable(origin.uid, own_uid_, cap_sys_ptrace_));
    try {
        origin.identity_note = identity_note_;
    } catch (...) {
        return fail("out of memory");
    }
    return origin;
}

} // namespace pinfold::proxy
