#include "limits.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "cgroup.hpp"

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

std::string read_all(const std::string& path)
{
    std::ifstream in(path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

bool has_word(const std::string& list, const std::string& word, char sep)
{
    std::istringstream in(list);
    std::string item;
    while (std::getline(in, item, sep)) {
        if (item == word)
            return true;
    }
    return false;
}

bool has_token(const std::string& text, const std::string& word)
{
    std::istringstream in(text);
    std::string token;
    while (in >> token) {
        if (token == word)
            return true;
    }
    return false;
}

bool v2_offers(const std::string& cgroup2_root, const std::string& controller)
{
    return has_token(read_all(cgroup2_root + "/cgroup.controllers"), controller);
}

// The mount point of the v1 hierarchy carrying `controller`, "" if none.
std::string v1_mount(const std::string& controller)
{
    std::ifstream mountinfo("/proc/self/mountinfo");
    std::string line;
    while (std::getline(mountinfo, line)) {
        auto sep = line.find(" - ");
        if (sep == std::string::npos)
            continue;
        std::istringstream tail(line.substr(sep + 3));
        std::string fstype, source, options;
        tail >> fstype >> source >> options;
        if (fstype != "cgroup" || !has_word(options, controller, ','))
            continue;
        std::istringstream head(line.substr(0, sep));
        std::string id, parent, devno, root, mountpoint;
        head >> id >> parent >> devno >> root >> mountpoint;
        return mountpoint;
    }
    return "";
}

// pinfold's own cgroup in the v1 hierarchy of `controller` ("/" if none):
// the sandbox's v1 cgroups nest below it, so limits set above pinfold (a
// CI job's, a delegated user's) still bind the sandbox.
std::string v1_own_path(const std::string& controller)
{
    std::ifstream self("/proc/self/cgroup");
    std::string line;
    while (std::getline(self, line)) {
        auto first = line.find(':');
        auto second = line.find(':', first + 1);
        if (first == std::string::npos || second == std::string::npos)
            continue;
        if (has_word(line.substr(first + 1, second - first - 1), controller, ','))
            return line.substr(second + 1);
    }
    return "/";
}

std::uint64_t counter(const std::string& path, const std::string& key)
{
    std::istringstream in(read_all(path));
    std::string name;
    std::uint64_t value = 0;
    while (in >> name >> value) {
        if (name == key)
            return value;
    }
    return 0;
}

std::string mib(std::uint64_t bytes)
{
    return std::to_string(bytes / (1024 * 1024)) + " MiB";
}

bool lock_is_free(const std::string& lock_path)
{
    int fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT;
    bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    ::close(fd);
    return free;
}

void remove_stale_v1(const std::string& parent, const std::string& lock_dir)
{
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(parent, ec)) {
        std::string name = entry.path().filename().string();
        if (!name.starts_with("run-") || !entry.is_directory(ec))
            continue;
        // Only our own: another owner's pinfold below the same v1 cgroup
        // keeps its locks elsewhere.
        struct stat st {};
        if (::lstat(entry.path().c_str(), &st) != 0 || st.st_uid != ::geteuid())
            continue;
        // A v1 directory still holding tasks is not empty and rmdir fails;
        // the tasks themselves die with their run's cgroup2 directory.
        if (lock_is_free(lock_dir + "/" + name + ".lock"))
            ::rmdir(entry.path().c_str());
    }
}

void remove_dir_retrying(const std::string& dir)
{
    // A task killed a moment ago can keep a v1 cgroup busy briefly.
    for (int i = 0; i < 1000; ++i) {
        if (::rmdir(dir.c_str()) == 0 || errno == ENOENT)
            return;
        if (errno != EBUSY)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    log()->warn("leaving cgroup {}: {}", dir, std::strerror(errno));
}

} // namespace

Result<ResourceLimits> ResourceLimits::apply(const SandboxLimits& limits, const std::string& cgroup2_root,
                                             const std::string& sandbox_v2, const std::string& run_name,
                                             const std::string& lock_dir)
{
    ResourceLimits result;
    result.limits_ = limits;
    struct Wanted {
        const char* name;
        bool wanted;
    };
    // pids and memory are always tracked when a limit is set on them; the
    // cpu controller only when --cpus is given.
    const Wanted wanted[] = {{"memory", limits.memory_bytes.has_value()},
                             {"pids", limits.pids.has_value()},
                             {"cpu", limits.cpus.has_value()}};
    for (const auto& w : wanted) {
        if (!w.wanted)
            continue;
        std::string name = w.name;
        if (v2_offers(cgroup2_root, name)) {
            // Every cgroup between the root and the sandbox must pass the
            // controller down.
            fs::path rel = fs::path(sandbox_v2).lexically_relative(cgroup2_root);
            fs::path dir = cgroup2_root;
            for (const auto& part : rel) {
                std::string control = (dir / "cgroup.subtree_control").string();
                if (!has_token(read_all(control), name)) {
                    auto r = write_cgroup_file(control, "+" + name);
                    if (!r)
                        return fail("enable the " + name + " controller: " + r.error().what());
                }
                dir /= part;
            }
            result.controllers_.push_back({name, sandbox_v2, false});
            continue;
        }
        std::string mount = v1_mount(name);
        if (mount.empty())
            return fail("a " + name + " limit was asked for, but this host has no " + name +
                        " cgroup controller (neither in cgroup v2 at " + cgroup2_root + " nor a v1 hierarchy)");
        std::string parent = mount + v1_own_path(name);
        if (parent.back() == '/')
            parent.pop_back();
        parent += "/pinfold";
        if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST)
            return fail_errno("create cgroup " + parent);
        remove_stale_v1(parent, lock_dir);
        std::string dir = parent + "/" + run_name;
        if (::mkdir(dir.c_str(), 0755) != 0)
            return fail_errno("create cgroup " + dir);
        result.v1_dirs_.push_back(dir);
        result.controllers_.push_back({name, dir, true});
    }

    for (const auto& c : result.controllers_) {
        Result<void> r;
        if (c.name == "memory") {
            std::string bytes = std::to_string(*limits.memory_bytes);
            if (c.v1) {
                r = write_cgroup_file(c.dir + "/memory.limit_in_bytes", bytes);
                // memsw = memory + swap: equal to the memory limit, no swap.
                if (r && fs::exists(c.dir + "/memory.memsw.limit_in_bytes"))
                    r = write_cgroup_file(c.dir + "/memory.memsw.limit_in_bytes", bytes);
                else if (r)
                    r = write_cgroup_file(c.dir + "/memory.swappiness", "0");
            } else {
                r = write_cgroup_file(c.dir + "/memory.max", bytes);
                if (r && fs::exists(c.dir + "/memory.swap.max"))
                    r = write_cgroup_file(c.dir + "/memory.swap.max", "0");
            }
        } else if (c.name == "pids") {
            r = write_cgroup_file(c.dir + "/pids.max", std::to_string(*limits.pids));
        } else if (c.name == "cpu") {
            constexpr std::uint64_t period = 100000;
            auto quota = static_cast<std::uint64_t>(std::llround(*limits.cpus * period));
            if (quota < 1000)
                quota = 1000;
            if (c.v1) {
                r = write_cgroup_file(c.dir + "/cpu.cfs_period_us", std::to_string(period));
                if (r)
                    r = write_cgroup_file(c.dir + "/cpu.cfs_quota_us", std::to_string(quota));
            } else {
                r = write_cgroup_file(c.dir + "/cpu.max", std::to_string(quota) + " " + std::to_string(period));
            }
        }
        if (!r)
            return std::unexpected(r.error());
    }
    return result;
}

ResourceLimits::ResourceLimits(ResourceLimits&& other) noexcept
    : controllers_(std::move(other.controllers_)), v1_dirs_(std::move(other.v1_dirs_)), limits_(other.limits_)
{
    other.v1_dirs_.clear();
    other.controllers_.clear();
}

ResourceLimits::~ResourceLimits()
{
    for (auto it = v1_dirs_.rbegin(); it != v1_dirs_.rend(); ++it)
        remove_dir_retrying(*it);
}

Result<void> ResourceLimits::place(pid_t pid) const
{
    for (const auto& c : controllers_) {
        if (!c.v1)
            continue;
        if (auto r = write_cgroup_file(c.dir + "/cgroup.procs", std::to_string(pid)); !r)
            return r;
    }
    return {};
}

std::string ResourceLimits::describe() const
{
    std::string text;
    for (const auto& c : controllers_) {
        if (!text.empty())
            text += ", ";
        text += c.name + ": cgroup " + (c.v1 ? "v1 " : "v2 ") + c.dir;
    }
    return text.empty() ? "no limits" : text;
}

std::vector<std::string> ResourceLimits::violations() const
{
    std::vector<std::string> found;
    for (const auto& c : controllers_) {
        if (c.name == "memory") {
            std::uint64_t kills = c.v1 ? counter(c.dir + "/memory.oom_control", "oom_kill")
                                       : counter(c.dir + "/memory.events", "oom_kill");
            if (kills > 0)
                found.push_back("out of memory: the sandbox reached its memory limit of " +
                                mib(*limits_.memory_bytes) + " and the kernel killed " + std::to_string(kills) +
                                " process(es)");
        } else if (c.name == "pids") {
            std::uint64_t refused = counter(c.dir + "/pids.events", "max");
            if (refused > 0)
                found.push_back("process limit reached: the sandbox may have at most " +
                                std::to_string(*limits_.pids) + " tasks; " + std::to_string(refused) +
                                " fork/clone call(s) were refused");
        }
    }
    return found;
}

} // namespace pinfold::loader
