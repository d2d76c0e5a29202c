#include "core_btf_cache.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <utility>

#include <spdlog/spdlog.h>

namespace pinfold::loader {

namespace {

constexpr const char* bpftool = "/usr/sbin/bpftool";
constexpr const char* kernel_btf = "/sys/kernel/btf/vmlinux";
constexpr const char* name_prefix = "core-btf-";
constexpr off_t max_size = 4 << 20;       // ours are under 1 KB; the kernel's whole BTF is ~5 MB
constexpr int bpftool_timeout_ms = 10000;

std::shared_ptr<spdlog::logger> log()
{
    static auto logger = [] {
        auto l = spdlog::get("loader");
        return l ? l : spdlog::default_logger()->clone("loader");
    }();
    return logger;
}

std::uint64_t fnv1a(std::span<const unsigned char> bytes)
{
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char b : bytes) {
        h ^= b;
        h *= 0x100000001b3ULL;
    }
    return h;
}

std::string read_boot_id()
{
    char buf[64];
    int fd = ::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return {};
    ssize_t n = ::read(fd, buf, sizeof buf);
    ::close(fd);
    if (n <= 0)
        return {};
    std::string id(buf, static_cast<std::size_t>(n));
    while (!id.empty() && id.back() == '\n')
        id.pop_back();
    return id;
}

// Only a file of ours that no one else can write may steer the relocations.
bool trustworthy(int fd)
{
    struct stat st{};
    return ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == ::geteuid() &&
           (st.st_mode & (S_IWGRP | S_IWOTH)) == 0 && st.st_size > 0 && st.st_size <= max_size;
}

bool write_file(const std::string& path, std::span<const unsigned char> bytes)
{
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    const unsigned char* p = bytes.data();
    std::size_t left = bytes.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        p += n;
        left -= static_cast<std::size_t>(n);
    }
    return ::close(fd) == 0 && left == 0;
}

[[noreturn]] void exec_bpftool(const std::string& out, const std::string& object)
{
    // bpftool only reads the kernel's BTF and our object and writes one
    // file in a directory of ours: no capability is needed, so none goes
    // along (as root an empty bounding set leaves exec nothing to grant).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
        ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capset, &header, data) != 0 || ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        ::_exit(126);
    int null = ::open("/dev/null", O_RDWR);
    if (null < 0)
        ::_exit(126);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    const char* argv[] = {bpftool, "gen", "min_core_btf", kernel_btf, out.c_str(), object.c_str(), nullptr};
    const char* envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", nullptr};
    ::execve(bpftool, const_cast<char* const*>(argv), const_cast<char* const*>(envp));
    ::_exit(127);
}

// Runs bpftool with a bound on its time; true when it wrote `out`.
bool run_bpftool(const std::string& out, const std::string& object)
{
    pid_t pid = ::fork();
    if (pid < 0)
        return false;
    if (pid == 0)
        exec_bpftool(out, object);
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd >= 0) {
        pollfd p{pidfd, POLLIN, 0};
        int ready;
        do
            ready = ::poll(&p, 1, bpftool_timeout_ms);
        while (ready < 0 && errno == EINTR);
        ::close(pidfd);
        if (ready != 1)
            ::kill(pid, SIGKILL);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Subsets of earlier boots, where the runtime directory is not a tmpfs.
// Those of other builds in this boot stay: two builds used side by side
// would otherwise remake each other's on every run.
void remove_other_boots(const std::string& dir, const std::string& boot_id)
{
    std::error_code ec;
    int bound = 256;
    for (auto it = std::filesystem::directory_iterator(dir, ec);
         !ec && it != std::filesystem::directory_iterator() && bound-- > 0; it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (name.starts_with(name_prefix) && name.ends_with(".btf") &&
            !name.starts_with(std::string(name_prefix) + boot_id + "-"))
            ::unlink(it->path().c_str());
    }
}

int open_checked(const std::string& path)
{
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && !trustworthy(fd)) {
        log()->debug("{} is not a private file of ours; using the whole kernel BTF", path);
        ::close(fd);
        return -2;
    }
    return fd;
}

} // namespace

std::string CoreBtf::file_name(const std::string& boot_id, std::span<const unsigned char> object)
{
    if (boot_id.size() != 36 || boot_id.find_first_not_of("0123456789abcdef-") != std::string::npos)
        return {};
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(fnv1a(object)));
    return std::string(name_prefix) + boot_id + "-" + hash + ".btf";
}

std::optional<CoreBtf> CoreBtf::find_or_make(const std::string& cache_dir, std::span<const unsigned char> object)
{
    std::string boot_id = read_boot_id();
    std::string name = file_name(boot_id, object);
    if (name.empty() || cache_dir.empty())
        return std::nullopt;
    std::string path = cache_dir + "/" + name;
    int fd = open_checked(path);
    if (fd == -2)
        return std::nullopt;
    if (fd < 0 && errno == ENOENT) {
        // The directory is the one resolve_runtime_locations checked; it
        // may not exist yet on a first run, and then nothing is made.
        struct stat dir{};
        if (::lstat(cache_dir.c_str(), &dir) != 0 || !S_ISDIR(dir.st_mode) || dir.st_uid != ::geteuid() ||
            (dir.st_mode & (S_IWGRP | S_IWOTH)) != 0)
            return std::nullopt;
        std::string tag = std::to_string(::getpid());
        std::string object_path = cache_dir + "/." + name_prefix + tag + ".o";
        std::string made = cache_dir + "/." + name_prefix + tag + ".tmp";
        ::unlink(object_path.c_str());
        ::unlink(made.c_str());
        bool ok = write_file(object_path, object) && run_bpftool(made, object_path) &&
                  ::chmod(made.c_str(), 0600) == 0 && ::rename(made.c_str(), path.c_str()) == 0;
        ::unlink(object_path.c_str());
        if (!ok) {
            ::unlink(made.c_str());
            log()->debug("could not make the kernel BTF subset with {}; using the whole kernel BTF", bpftool);
            return std::nullopt;
        }
        remove_other_boots(cache_dir, boot_id);
        fd = open_checked(path);
    }
    if (fd < 0)
        return std::nullopt;
    return CoreBtf(fd);
}

CoreBtf::CoreBtf(int fd) : fd_(fd), path_("/proc/self/fd/" + std::to_string(fd)) {}

CoreBtf::CoreBtf(CoreBtf&& other) noexcept : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

CoreBtf::~CoreBtf()
{
    if (fd_ >= 0)
        ::close(fd_);
}

} // namespace pinfold::loader
