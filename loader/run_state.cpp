#include "run_state.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <filesystem>

#include <spdlog/spdlog.h>

#include "cgroup.hpp"
#include "steering_programs.hpp"

namespace pinfold::loader {

namespace fs = std::filesystem;

namespace {

constexpr long bpf_fs_magic = 0xcafe4a11;

std::shared_ptr<spdlog::logger> log()
{
    static auto logger = [] {
        auto l = spdlog::get("loader");
        return l ? l : spdlog::default_logger()->clone("loader");
    }();
    return logger;
}

// mkdir -p with `mode` on the last component, and a check that an
// existing directory is not more open than that.
Result<void> private_dir(const std::string& path, mode_t mode)
{
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
        return fail_errno("create " + path);
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0)
        return fail_errno("stat " + path);
    if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid())
        return fail(path + " is not a directory owned by us; refusing to keep pins or locks there");
    if ((st.st_mode & 07777) != mode && ::chmod(path.c_str(), mode) != 0)
        return fail_errno("chmod " + path);
    return {};
}

// run-<pid>: is <pid> a live pinfold? (Same executable as ours.)
bool pinfold_alive(const std::string& run_name)
{
    const std::string pid = run_name.substr(4);
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos)
        return false;
    std::error_code ec;
    auto theirs = fs::read_symlink("/proc/" + pid + "/exe", ec);
    if (ec)
        return false;
    auto ours = fs::read_symlink("/proc/self/exe", ec);
    return !ec && theirs.filename() == ours.filename();
}

} // namespace

Result<void> ensure_bpffs(const std::string& dir)
{
    struct statfs st {};
    if (::statfs(dir.c_str(), &st) == 0 && static_cast<long>(st.f_type) == bpf_fs_magic)
        return {};
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (::mount("bpf", dir.c_str(), "bpf", 0, "mode=0700") != 0)
        return fail_errno("mount bpffs at " + dir);
    return {};
}

Result<RunState> RunState::create(const RunPaths& paths, const std::string& run_name)
{
    if (auto r = private_dir(paths.lock_dir, 0700); !r)
        return std::unexpected(r.error());
    if (auto r = private_dir(paths.pin_parent, 0700); !r)
        return std::unexpected(r.error());
    RunState state;
    state.name_ = run_name;
    state.lock_path_ = paths.lock_dir + "/" + run_name + ".lock";
    state.lock_fd_ = ::open(state.lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (state.lock_fd_ < 0)
        return fail_errno("create lock " + state.lock_path_);
    if (::flock(state.lock_fd_, LOCK_EX | LOCK_NB) != 0)
        return fail_errno("lock " + state.lock_path_);
    state.pin_dir_ = paths.pin_parent + "/" + run_name;
    remove_pin_dir(state.pin_dir_);
    if (::mkdir(state.pin_dir_.c_str(), 0700) != 0)
        return fail_errno("create pin directory " + state.pin_dir_);
    return state;
}

RunState::RunState(RunState&& other) noexcept
    : name_(std::move(other.name_)), lock_path_(std::move(other.lock_path_)),
      pin_dir_(std::move(other.pin_dir_)), lock_fd_(other.lock_fd_)
{
    other.lock_fd_ = -1;
    other.lock_path_.clear();
    other.pin_dir_.clear();
}

RunState::~RunState()
{
    if (!pin_dir_.empty())
        remove_pin_dir(pin_dir_);
    if (lock_fd_ >= 0) {
        ::unlink(lock_path_.c_str());
        ::close(lock_fd_);
    }
}

int clean_stale_runs(const RunPaths& paths)
{
    std::error_code ec;
    int cleaned = 0;
    // A run is known by its lock file; a cgroup or pin directory without
    // one (lock dir wiped by a reboot of /run) is stale too.
    std::vector<std::string> names;
    for (const auto& parent : {paths.lock_dir, paths.pin_parent, paths.cgroup_parent}) {
        for (auto it = fs::directory_iterator(parent, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
            std::string name = it->path().filename().string();
            if (name.ends_with(".lock"))
                name.resize(name.size() - 5);
            if (name.starts_with("run-") && std::find(names.begin(), names.end(), name) == names.end())
                names.push_back(name);
        }
        ec.clear();
    }
    for (const auto& name : names) {
        std::string lock_path = paths.lock_dir + "/" + name + ".lock";
        int fd = ::open(lock_path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            ::close(fd); // held: that run is alive
            continue;
        }
        // Without a lock to judge by (another lock directory, /run wiped),
        // a run whose pinfold process still exists is left alone: killing
        // a live sandbox is worse than keeping a stale one a while longer.
        if (fd < 0 && pinfold_alive(name)) {
            log()->warn("run {} has no lock in {} but its pinfold is alive; leaving it", name, paths.lock_dir);
            continue;
        }
        log()->info("cleaning up stale run {}", name);
        // Kill and remove the cgroups first: while the pins exist the
        // stale sandbox stays enforced.
        if (auto r = remove_cgroup_tree(paths.cgroup_parent + "/" + name); !r)
            log()->warn("stale run {}: {}", name, r.error().what());
        remove_pin_dir(paths.pin_parent + "/" + name);
        if (fd >= 0) {
            ::unlink(lock_path.c_str());
            ::close(fd);
        }
        ++cleaned;
    }
    return cleaned;
}

} // namespace pinfold::loader
