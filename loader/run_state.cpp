#include "run_state.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "cgroup.hpp"
#include "steering_programs.hpp"

namespace pinfold::loader {

namespace fs = std::filesystem;

namespace {

constexpr long bpf_fs_magic = 0xcafe4a11;

std::string mode_text(mode_t mode)
{
    char text[8];
    std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
    return text;
}

std::shared_ptr<spdlog::logger> log()
{
    static auto logger = [] {
        auto l = spdlog::get("loader");
        return l ? l : spdlog::default_logger()->clone("loader");
    }();
    return logger;
}

// mkdir -p with `mode` on the last component, and a check that an
// existing directory is ours and not open to others.
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
        return fail(path + " is not a directory owned by uid " + std::to_string(::geteuid()) +
                    "; refusing to keep pins or locks there");
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return fail(path + " is writable by others (mode " + mode_text(st.st_mode) +
                    "); refusing to keep pins or locks there");
    if ((st.st_mode & 07777) != mode && ::chmod(path.c_str(), mode) != 0)
        return fail_errno("chmod " + path);
    return {};
}

// Whether `path` is a directory owned by us, named `name`, directly below
// `parent`: the only shape of run directory this owner's cleanup touches.
// `ino`, when known, must match too: the name may have passed to a newer
// run with the same pid.
bool own_run_dir(const std::string& path, const std::string& parent, const std::string& name, std::uint64_t ino)
{
    if (path.empty() || fs::path(path) != fs::path(parent) / name)
        return false;
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::geteuid() &&
           (ino == 0 || st.st_ino == ino);
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
    state.cgroup_ = paths.cgroup_parent + "/" + run_name;
    // Recorded before anything else exists, so a crash from here on leaves
    // a lock that says what to clean.
    if (auto r = state.write_record(); !r)
        return std::unexpected(r.error());
    remove_pin_dir(state.pin_dir_);
    if (::mkdir(state.pin_dir_.c_str(), 0700) != 0)
        return fail_errno("create pin directory " + state.pin_dir_);
    struct stat st {};
    if (::stat(state.pin_dir_.c_str(), &st) == 0)
        state.pins_ino_ = st.st_ino;
    if (auto r = state.write_record(); !r)
        return std::unexpected(r.error());
    return state;
}

Result<void> RunState::write_record() const
{
    RunRecord record;
    record.pid = ::getpid();
    record.uid = ::geteuid();
    record.cgroup = cgroup_;
    record.cgroup_id = cgroup_id_;
    record.pins = pin_dir_;
    record.pins_ino = pins_ino_;
    std::string text = format_run_record(record);
    if (::ftruncate(lock_fd_, 0) != 0 ||
        ::pwrite(lock_fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
        return fail_errno("write lock " + lock_path_);
    return {};
}

Result<void> RunState::note_cgroup(std::uint64_t cgroup_id)
{
    cgroup_id_ = cgroup_id;
    return write_record();
}

RunState::RunState(RunState&& other) noexcept
    : name_(std::move(other.name_)), cgroup_(std::move(other.cgroup_)), cgroup_id_(other.cgroup_id_),
      pins_ino_(other.pins_ino_), lock_path_(std::move(other.lock_path_)),
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

std::string format_run_record(const RunRecord& record)
{
    return "pid=" + std::to_string(record.pid) + "\nuid=" + std::to_string(record.uid) + "\ncgroup=" + record.cgroup +
           "\ncgroup_id=" + std::to_string(record.cgroup_id) + "\npins=" + record.pins +
           "\npins_ino=" + std::to_string(record.pins_ino) + "\n";
}

RunRecord parse_run_record(const std::string& text)
{
    RunRecord record;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        auto eq = line.find('=');
        if (eq == std::string::npos)
            continue;
        std::string key = line.substr(0, eq);
        std::string value = line.substr(eq + 1);
        if (key == "pid" || key == "uid") {
            char* end = nullptr;
            long number = std::strtol(value.c_str(), &end, 10);
            if (value.empty() || *end != '\0' || number < 0)
                continue;
            (key == "pid" ? record.pid : record.uid) = number;
        } else if (key == "cgroup_id" || key == "pins_ino") {
            char* end = nullptr;
            unsigned long long number = std::strtoull(value.c_str(), &end, 10);
            if (value.empty() || *end != '\0' || value[0] == '-')
                continue;
            (key == "cgroup_id" ? record.cgroup_id : record.pins_ino) = number;
        } else if (key == "cgroup") {
            record.cgroup = value;
        } else if (key == "pins") {
            record.pins = value;
        }
    }
    return record;
}

int clean_stale_runs(const RunPaths& paths)
{
    std::error_code ec;
    int cleaned = 0;
    std::vector<std::string> names;
    for (auto it = fs::directory_iterator(paths.lock_dir, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (name.starts_with("run-") && name.ends_with(".lock"))
            names.push_back(name.substr(0, name.size() - 5));
    }
    const long own_uid = static_cast<long>(::geteuid());
    for (const auto& name : names) {
        std::string lock_path = paths.lock_dir + "/" + name + ".lock";
        int fd = ::open(lock_path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
            continue;
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<long>(st.st_uid) != own_uid) {
            log()->warn("{} is not a lock file of uid {}; leaving it", lock_path, own_uid);
            ::close(fd);
            continue;
        }
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            ::close(fd); // held: that run is alive
            continue;
        }
        // From here on we hold the dead run's lock: no new run of that name
        // can start (its create() fails) while its state is removed.
        char buf[4096];
        ssize_t got = ::pread(fd, buf, sizeof buf - 1, 0);
        RunRecord record = parse_run_record(std::string(buf, got > 0 ? static_cast<std::size_t>(got) : 0));
        if (record.uid >= 0 && record.uid != own_uid) {
            log()->warn("{} records uid {}, not ours ({}); leaving that run", lock_path, record.uid, own_uid);
            ::close(fd);
            continue;
        }
        log()->info("cleaning up stale run {}", name);
        // Kill and remove the cgroups first: while the pins exist the
        // stale sandbox stays enforced. A lock without a record (a run
        // killed between creating and writing it) names nothing: the run's
        // names in our own parents are assumed, checked as below.
        std::string cgroup = record.cgroup.empty() ? paths.cgroup_parent + "/" + name : record.cgroup;
        std::string pins = record.pins.empty() ? paths.pin_parent + "/" + name : record.pins;
        // Without a recorded id the run died before its cgroup held a
        // process: a populated cgroup of that name is someone else's.
        bool cgroup_ours = own_run_dir(cgroup, paths.cgroup_parent, name, record.cgroup_id) &&
                           (record.cgroup_id != 0 || !cgroup_populated(cgroup));
        if (cgroup_ours) {
            if (auto r = remove_cgroup_tree(cgroup); !r)
                log()->warn("stale run {}: {}", name, r.error().what());
        } else if (fs::exists(cgroup, ec)) {
            log()->warn("stale run {}: its cgroup {} is not ours below {}; leaving it", name, cgroup,
                        paths.cgroup_parent);
        }
        // Without a recorded inode it died before pinning anything: only an
        // empty directory of that name can be its.
        std::error_code empty_ec;
        bool pins_ours = own_run_dir(pins, paths.pin_parent, name, record.pins_ino) &&
                         (record.pins_ino != 0 || fs::is_empty(pins, empty_ec));
        if (pins_ours)
            remove_pin_dir(pins);
        else if (fs::exists(pins, ec))
            log()->warn("stale run {}: its pins {} are not ours below {}; leaving them", name, pins, paths.pin_parent);
        ::unlink(lock_path.c_str());
        ::close(fd);
        ++cleaned;
    }
    // Run directories in our parents without a lock here are not touched:
    // another pinfold, with another runtime directory, may own them.
    for (const auto& parent : {paths.pin_parent, paths.cgroup_parent}) {
        for (auto it = fs::directory_iterator(parent, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
            std::string name = it->path().filename().string();
            std::error_code missing;
            if (name.starts_with("run-") && !fs::exists(paths.lock_dir + "/" + name + ".lock", missing))
                log()->debug("{} has no lock in {}: not this runtime directory's run; leaving it",
                             it->path().string(), paths.lock_dir);
        }
        ec.clear();
    }
    return cleaned;
}

} // namespace pinfold::loader
