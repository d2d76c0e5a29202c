#include "cgroup.hpp"
#include "cgroup_level.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

namespace pinfold::loader {

namespace fs = std::filesystem;

namespace {

std::shared_ptr<spdlog::logger> log()
{
    static auto logger = [] {
        auto l = spdlog::get("cgroup");
        return l ? l : spdlog::default_logger()->clone("cgroup");
    }();
    return logger;
}

unsigned depth_below(const std::string& root, const std::string& path)
{
    fs::path rel = fs::path(path).lexically_relative(root);
    unsigned depth = 0;
    for (const auto& part : rel) {
        if (!part.empty() && part != ".")
            ++depth;
    }
    return depth;
}

} // namespace

Result<void> write_cgroup_file(const std::string& path, std::string_view text)
{
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return fail_errno("open " + path);
    ssize_t n = ::write(fd, text.data(), text.size());
    int saved = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(text.size()))
        return fail("write '" + std::string(text) + "' to " + path, saved);
    return {};
}

bool cgroup_populated(const std::string& path)
{
    std::ifstream events(path + "/cgroup.events");
    std::string key;
    int value = 0;
    while (events >> key >> value) {
        if (key == "populated")
            return value != 0;
    }
    return false;
}

Result<std::string> find_cgroup2_root()
{
    std::ifstream mountinfo("/proc/self/mountinfo");
    if (!mountinfo)
        return fail_errno("open /proc/self/mountinfo");
    std::string line;
    while (std::getline(mountinfo, line)) {
        // Fields: id parent major:minor root mountpoint options [optional...] - fstype source superopts
        auto sep = line.find(" - ");
        if (sep == std::string::npos)
            continue;
        std::istringstream tail(line.substr(sep + 3));
        std::string fstype;
        tail >> fstype;
        if (fstype != "cgroup2")
            continue;
        std::istringstream head(line.substr(0, sep));
        std::string id, parent, devno, root, mountpoint;
        head >> id >> parent >> devno >> root >> mountpoint;
        return mountpoint;
    }
    return fail("no cgroup2 hierarchy is mounted (looked in /proc/self/mountinfo)");
}

Result<std::uint64_t> cgroup_id_of(const std::string& path)
{
    // On cgroup2 the directory's inode number is the kernel's cgroup id
    // (kernfs node id), which is what bpf_get_current_cgroup_id() returns.
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        return fail_errno("stat " + path);
    return static_cast<std::uint64_t>(st.st_ino);
}

Result<CgroupDir> CgroupDir::create(const std::string& root, const std::string& relative)
{
    std::string path = root + "/" + relative;
    if (::mkdir(path.c_str(), 0755) != 0)
        return fail_errno("create cgroup " + path);
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        auto err = fail_errno("open cgroup " + path);
        ::rmdir(path.c_str());
        return err;
    }
    auto id = cgroup_id_of(path);
    if (!id) {
        ::close(fd);
        ::rmdir(path.c_str());
        return std::unexpected(id.error());
    }
    // Levels are global (what bpf_get_current_ancestor_cgroup_id counts),
    // not counted from the mount: they differ inside a cgroup namespace.
    auto mount_level = cgroup_mount_level(root);
    if (!mount_level) {
        ::close(fd);
        ::rmdir(path.c_str());
        return std::unexpected(mount_level.error());
    }
    return CgroupDir(path, fd, *id, *mount_level + depth_below(root, path));
}

CgroupDir::CgroupDir(CgroupDir&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), id_(other.id_), level_(other.level_)
{
    other.fd_ = -1;
    other.path_.clear();
}

CgroupDir::~CgroupDir()
{
    if (path_.empty())
        return;
    if (fd_ >= 0)
        ::close(fd_);
    if (auto r = remove_cgroup_tree(path_); !r)
        log()->warn("leaving cgroup {}: {}", path_, r.error().what());
}

bool CgroupDir::populated() const { return cgroup_populated(path_); }

Result<void> CgroupDir::kill_all(std::chrono::milliseconds timeout) const
{
    if (!cgroup_populated(path_))
        return {};
    if (auto r = write_cgroup_file(path_ + "/cgroup.kill", "1"); !r)
        return r;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (cgroup_populated(path_)) {
        if (std::chrono::steady_clock::now() > deadline)
            return fail("processes of " + path_ + " did not die in time");
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return {};
}

Result<void> remove_cgroup_tree(const std::string& path)
{
    std::error_code ec;
    if (!fs::exists(path, ec))
        return {};
    if (cgroup_populated(path)) {
        if (auto r = write_cgroup_file(path + "/cgroup.kill", "1"); !r)
            return r;
        for (int i = 0; i < 2500 && cgroup_populated(path); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    // Children first: rmdir only removes empty leaves.
    std::vector<std::string> dirs;
    for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
        if (it->is_directory(ec))
            dirs.push_back(it->path().string());
    }
    std::sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
    dirs.push_back(path);
    Result<void> result;
    for (const auto& dir : dirs) {
        // A just-killed task can hold the cgroup for a moment after
        // populated drops: retry briefly on EBUSY.
        int rc = -1;
        for (int i = 0; i < 500; ++i) {
            rc = ::rmdir(dir.c_str());
            if (rc == 0 || errno != EBUSY)
                break;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        if (rc != 0 && errno != ENOENT && result)
            result = fail_errno("remove cgroup " + dir);
    }
    return result;
}

} // namespace pinfold::loader
