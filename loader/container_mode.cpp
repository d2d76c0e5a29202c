#include "container_mode.hpp"

#include <dirent.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "cgroup.hpp"
#include "cgroup_level.hpp"

namespace pinfold::loader {

namespace {

Result<std::string> own_cgroup2_path()
{
    std::ifstream in("/proc/self/cgroup");
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with("0::"))
            return line.substr(3);
    }
    return fail("no cgroup v2 entry in /proc/self/cgroup");
}

struct ProcEntry {
    pid_t ppid = 0;
    char state = 0;
};

// pid -> parent and state of every process we can see.
std::map<pid_t, ProcEntry> parents()
{
    std::map<pid_t, ProcEntry> out;
    DIR* dir = ::opendir("/proc");
    if (!dir)
        return out;
    while (dirent* e = ::readdir(dir)) {
        char* end = nullptr;
        long pid = std::strtol(e->d_name, &end, 10);
        if (!end || *end != '\0' || pid <= 0)
            continue;
        std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
        std::string text;
        std::getline(stat, text);
        // comm may hold spaces and parentheses: the fields follow the last ')'.
        auto close = text.rfind(')');
        if (close == std::string::npos)
            continue;
        std::istringstream rest(text.substr(close + 1));
        char state = 0;
        long ppid = 0;
        if (rest >> state >> ppid)
            out[static_cast<pid_t>(pid)] = ProcEntry{static_cast<pid_t>(ppid), state};
    }
    ::closedir(dir);
    return out;
}

// Entries of /proc/<pid>/task: the threads a process still has (a dead
// leader's entry stays while others run).
std::size_t threads_of(pid_t pid)
{
    std::size_t n = 0;
    if (DIR* dir = ::opendir(("/proc/" + std::to_string(pid) + "/task").c_str())) {
        while (dirent* e = ::readdir(dir))
            n += e->d_name[0] != '.';
        ::closedir(dir);
    }
    return n;
}

// Living descendants of `root` except `keep`; `zombies` gets the dead
// children of `root` nobody has reaped yet.
std::set<pid_t> descendants_of(pid_t root, pid_t keep, std::set<pid_t>& zombies)
{
    auto table = parents();
    std::set<pid_t> found;
    // Bounded: each pass adds at least one process or stops.
    for (bool grew = true; grew;) {
        grew = false;
        for (const auto& [pid, entry] : table) {
            if (pid == keep || found.contains(pid))
                continue;
            if (entry.ppid == root || found.contains(entry.ppid)) {
                found.insert(pid);
                grew = true;
            }
        }
    }
    std::set<pid_t> living;
    for (pid_t pid : found) {
        // A leader that called pthread_exit() shows Z while its other
        // threads run on: only a Z with no thread left is really dead.
        if (table[pid].state != 'Z' || threads_of(pid) > 1)
            living.insert(pid);
        else if (table[pid].ppid == root)
            zombies.insert(pid);
    }
    return living;
}

} // namespace

ContainerCgroup::ContainerCgroup(ContainerCgroup&& other) noexcept
    : path(std::move(other.path)), fd(other.fd), id(other.id), level(other.level)
{
    other.fd = -1;
}

ContainerCgroup::~ContainerCgroup()
{
    if (fd >= 0)
        ::close(fd);
}

Result<void> check_container_layout(const std::string& own_cgroup_path, bool bpffs_writable)
{
    (void)bpffs_writable;
    if (own_cgroup_path != "/")
        return fail("container mode: pinfold's cgroup is " + own_cgroup_path +
                    ", not the root of the read-only cgroup2 mount (the container's own cgroup); "
                    "run pinfold in the container's cgroup, with a private cgroup namespace");
    return {};
}

Result<std::optional<ContainerCgroup>> detect_container_mode(const std::string& cgroup_root)
{
    struct statvfs st {};
    if (::statvfs(cgroup_root.c_str(), &st) != 0)
        return fail_errno("statvfs " + cgroup_root);
    if (!(st.f_flag & ST_RDONLY))
        return std::optional<ContainerCgroup>{};
    auto own = own_cgroup2_path();
    if (!own)
        return std::unexpected(own.error());
    if (auto r = check_container_layout(*own, false); !r)
        return std::unexpected(r.error());
    ContainerCgroup cg;
    cg.path = cgroup_root;
    cg.fd = ::open(cgroup_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg.fd < 0)
        return fail_errno("open cgroup " + cgroup_root);
    auto id = cgroup_id_of(cgroup_root);
    if (!id)
        return std::unexpected(id.error());
    cg.id = *id;
    auto level = cgroup_mount_level(cgroup_root);
    if (!level)
        return std::unexpected(level.error());
    // Level 0 is the host's root cgroup: the hooks would police the whole
    // machine, and the BPF side treats level 0 as "no sandbox".
    if (*level == 0)
        return fail("container mode: the read-only cgroup2 mount " + cgroup_root +
                    " is the global root cgroup, not a container's own; refusing to police the whole host");
    cg.level = *level;
    return std::optional<ContainerCgroup>(std::move(cg));
}

namespace {

bool has_capability(int cap) noexcept
{
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capget, &header, data) != 0)
        return false;
    return (data[cap / 32].effective >> (cap % 32)) & 1U;
}

} // namespace

bool can_run_proxy_as_nobody() noexcept
{
    return has_capability(CAP_SETUID) && has_capability(CAP_SETGID) && has_capability(CAP_KILL);
}

Result<void> check_container_sandbox(bool sandbox_enabled)
{
    if (!sandbox_enabled)
        return {};
    if (has_capability(CAP_SYS_ADMIN) && has_capability(CAP_SETUID))
        return {};
    return fail("container mode: the namespace sandbox (the default) needs CAP_SYS_ADMIN and CAP_SETUID, which "
                "this container does not hold; the container already isolates the job's files and processes: "
                "run with --sandbox off (docs/containers.md)");
}

std::vector<std::string> container_mode_limitations(bool limits_requested, bool sandbox_enabled)
{
    std::vector<std::string> out = {
        "container mode: the cgroup2 mount is read-only, so the hooks are attached to the container's own "
        "cgroup; every process of the container except pinfold's proxy and resolver is policed",
        "per-run memory, pids and cpu limits are unavailable (no child cgroup can be created): the "
        "container's own limits apply",
        "the programs are attached without links (no writable bpffs to pin them): if pinfold is killed "
        "they stay, and the container keeps no network until it ends",
    };
    if (limits_requested)
        out.push_back("the requested limits were not applied");
    if (!sandbox_enabled)
        out.push_back("no namespace sandbox (--sandbox off): the container isolates the job's files and processes");
    return out;
}

Result<void> enter_container_mode()
{
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        return fail_errno("become the job's subreaper");
    if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return fail_errno("make pinfold not dumpable");
    return {};
}

Result<void> kill_descendants(pid_t keep, pid_t command, std::chrono::milliseconds timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    pid_t self = ::getpid();
    for (;;) {
        std::set<pid_t> zombies;
        auto left = descendants_of(self, keep, zombies);
        // Orphans that died here are ours to reap; the command is reaped
        // by its ChildProcess.
        for (pid_t pid : zombies) {
            if (pid != command)
                ::waitpid(pid, nullptr, WNOHANG);
        }
        if (left.empty())
            return {};
        for (pid_t pid : left)
            ::kill(pid, SIGKILL);
        if (std::chrono::steady_clock::now() > deadline)
            return fail("processes of the job did not die in time");
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

} // namespace pinfold::loader
