#include "core_btf_cache.hpp"

#include <bpf/btf.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "child_process.hpp"
#include "pinfold/unique_fd.hpp"
#include "write_all.hpp"

namespace pinfold::loader {

namespace {

constexpr const char* bpftool = "/usr/sbin/bpftool";
constexpr const char* kernel_btf = "/sys/kernel/btf/vmlinux";
constexpr const char* name_prefix = "core-btf-";
constexpr off_t max_size = 1 << 20;   // ours are under 1 KB; the kernel's whole BTF is ~5 MB
// ~30 ms here; a TCG VM is some 20 times slower.
constexpr int bpftool_timeout_ms = 5000;

std::shared_ptr<spdlog::logger> log()
{
    static auto logger = [] {
        auto l = spdlog::get("loader");
        return l ? l : spdlog::default_logger()->clone("loader");
    }();
    return logger;
}

std::uint64_t fnv1a(std::uint64_t h, std::span<const unsigned char> bytes)
{
    for (unsigned char b : bytes) {
        h ^= b;
        h *= 0x100000001b3ULL;
    }
    return h;
}

std::string read_boot_id()
{
    char buf[64];
    UniqueFd fd(::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0)
        return {};
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n <= 0)
        return {};
    std::string id(buf, static_cast<std::size_t>(n));
    while (!id.empty() && id.back() == '\n')
        id.pop_back();
    return id;
}

// The kernel's release and build, next to the boot id in the name: a boot
// id that does not change (a masked procfs) still cannot carry a subset
// over to another kernel.
std::string kernel_build()
{
    struct utsname u{};
    if (::uname(&u) != 0)
        return {};
    return std::string(u.release) + " " + u.version;
}

// Only a file of ours that no one else can write, and no other name can
// reach, may steer the relocations.
Result<void> check_private(int fd)
{
    struct stat st{};
    if (::fstat(fd, &st) != 0)
        return fail_errno("stat");
    if (!S_ISREG(st.st_mode))
        return fail("not a regular file", EINVAL);
    if (st.st_uid != ::geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0 || st.st_nlink != 1)
        return fail("not a private file of ours (owner, mode or links)", EPERM);
    if (st.st_size <= 0 || st.st_size > max_size)
        return fail("unexpected size " + std::to_string(st.st_size), EINVAL);
    return {};
}

Result<UniqueFd> memfd_with(const char* name, std::span<const unsigned char> bytes)
{
    UniqueFd fd(::memfd_create(name, MFD_CLOEXEC));
    if (fd.get() < 0)
        return fail_errno("memfd_create");
    if (auto r = write_all(fd.get(), bytes.data(), bytes.size(), "memfd"); !r)
        return std::unexpected(r.error());
    return fd;
}

// bpftool only reads the kernel's BTF and our object and writes its
// result: it runs as nobody without capabilities (as the proxy is started),
// reading and writing memfds of ours through /proc/self/fd, and the subset
// is checked and stored by pinfold itself.
Result<std::vector<unsigned char>> run_bpftool(std::span<const unsigned char> object)
{
    auto in = memfd_with("pinfold-bpf-object", object);
    if (!in)
        return std::unexpected(in.error());
    UniqueFd out(::memfd_create("pinfold-core-btf", MFD_CLOEXEC));
    if (out.get() < 0)
        return fail_errno("memfd_create");
    SpawnSpec spec;
    spec.argv = {bpftool, "gen", "min_core_btf", kernel_btf, "/proc/self/fd/" + std::to_string(out.get()),
                 "/proc/self/fd/" + std::to_string(in->get())};
    spec.inherit_fds = {in->get(), out.get()};
    spec.drop_privileges = true;
    spec.stdin_null = true;
    auto child = ChildProcess::spawn(spec);
    if (!child)
        return std::unexpected(child.error());
    pollfd exited{child->pidfd(), POLLIN, 0};
    int ready;
    do
        ready = ::poll(&exited, 1, bpftool_timeout_ms);
    while (ready < 0 && errno == EINTR);
    if (ready != 1)
        return fail(std::string(bpftool) + " did not finish within " + std::to_string(bpftool_timeout_ms) + " ms",
                    ETIMEDOUT);   // the ChildProcess kills and reaps it
    if (int code = exit_code_of(child->reap()); code != 0)
        return fail(std::string(bpftool) + " gen min_core_btf exited with " + std::to_string(code), EIO);
    struct stat st{};
    if (::fstat(out.get(), &st) != 0 || st.st_size <= 0 || st.st_size > max_size)
        return fail(std::string(bpftool) + " wrote no usable subset", EIO);
    std::vector<unsigned char> subset(static_cast<std::size_t>(st.st_size));
    if (::pread(out.get(), subset.data(), subset.size(), 0) != static_cast<ssize_t>(subset.size()))
        return fail_errno("read the subset");
    // A full disk or a cut write must not become a boot's worth of failed
    // loads: it has to be BTF libbpf takes.
    btf* parsed = btf__new(subset.data(), static_cast<__u32>(subset.size()));
    if (!parsed)
        return fail(std::string(bpftool) + " wrote something that is not BTF", EIO);
    btf__free(parsed);
    return subset;
}

// Written under a name only when complete: an O_TMPFILE file linked in
// (no half-written or stray files, whatever kills us).
Result<void> store(const std::string& dir, const std::string& name, std::span<const unsigned char> bytes)
{
    UniqueFd fd(::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
    if (fd.get() < 0)
        return fail_errno("create a file in " + dir);
    if (auto r = write_all(fd.get(), bytes.data(), bytes.size(), dir + "/" + name); !r)
        return r;
    std::string self = "/proc/self/fd/" + std::to_string(fd.get());
    std::string path = dir + "/" + name;
    // EEXIST: another run made it meanwhile; that one is checked on open.
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) != 0 && errno != EEXIST)
        return fail_errno("link " + path);
    return {};
}

// Subsets (and failure marks) of earlier boots, where the runtime
// directory is not a tmpfs. Those of other builds in this boot stay: two
// builds used side by side would otherwise remake each other's every run.
void remove_other_boots(const std::string& dir, const std::string& boot_id)
{
    std::error_code ec;
    int bound = 256;
    for (auto it = std::filesystem::directory_iterator(dir, ec);
         !ec && it != std::filesystem::directory_iterator() && bound-- > 0; it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (name.starts_with(name_prefix) && !name.starts_with(std::string(name_prefix) + boot_id + "-"))
            ::unlink(it->path().c_str());
    }
}

// -1 with errno ENOENT when there is none; an unusable file is reported.
int open_checked(const std::string& path)
{
    // O_NONBLOCK: a FIFO planted at the name must not hang the start.
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            log()->warn("cannot open the kernel BTF subset {}: {}; using the whole kernel BTF", path,
                        std::strerror(errno));
        return -1;
    }
    if (auto r = check_private(fd); !r) {
        log()->warn("the kernel BTF subset {} is not used: {}; using the whole kernel BTF", path,
                    r.error().message);
        ::close(fd);
        errno = EPERM;
        return -1;
    }
    return fd;
}

} // namespace

std::string CoreBtf::file_name(const std::string& boot_id, const std::string& kernel,
                               std::span<const unsigned char> object)
{
    if (boot_id.size() != 36 || boot_id.find_first_not_of("0123456789abcdef-") != std::string::npos)
        return {};
    std::uint64_t h = fnv1a(0xcbf29ce484222325ULL, object);
    h = fnv1a(h, {reinterpret_cast<const unsigned char*>(kernel.data()), kernel.size()});
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(h));
    return std::string(name_prefix) + boot_id + "-" + hash + ".btf";
}

std::optional<CoreBtf> CoreBtf::find_or_make(const std::string& cache_dir, std::span<const unsigned char> object)
{
    std::string boot_id = read_boot_id();
    std::string name = file_name(boot_id, kernel_build(), object);
    if (name.empty() || cache_dir.empty())
        return std::nullopt;
    std::string path = cache_dir + "/" + name;
    int fd = open_checked(path);
    if (fd >= 0)
        return CoreBtf(fd);
    if (errno != ENOENT)
        return std::nullopt;
    // One attempt per boot and build: a bpftool that is missing or fails
    // must not cost every later start its exec.
    std::string failed = path + ".failed";
    if (::access(failed.c_str(), F_OK) == 0)
        return std::nullopt;
    auto subset = run_bpftool(object);
    auto stored = subset ? store(cache_dir, name, *subset) : Result<void>(std::unexpected(subset.error()));
    if (!stored) {
        log()->warn("no kernel BTF subset for this boot ({}); each start reads the whole kernel BTF",
                    stored.error().what());
        UniqueFd mark(::open(failed.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        return std::nullopt;
    }
    remove_other_boots(cache_dir, boot_id);
    fd = open_checked(path);
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
