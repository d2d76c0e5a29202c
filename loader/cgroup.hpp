#pragma once
// cgroup v2 directories: finding the hierarchy, creating, killing and
// removing a subtree, and the cgroup id the BPF side keys sandboxes by.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "pinfold/error.hpp"

namespace pinfold::loader {

// Writes `text` to a cgroup control file in one write(2): the kernel takes
// a control value whole or not at all.
[[nodiscard]] Result<void> write_cgroup_file(const std::string& path, std::string_view text);

// Whether the cgroup at `path` (v2, or a v1 hierarchy with cgroup.events)
// still has processes.
[[nodiscard]] bool cgroup_populated(const std::string& path);

// The mount point of the cgroup2 hierarchy (from /proc/self/mountinfo):
// /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones.
[[nodiscard]] Result<std::string> find_cgroup2_root();

// An owned cgroup directory: removed (after killing what is left in it)
// when the object is destroyed.
class CgroupDir {
public:
    // Creates `relative` (which must not exist) below the hierarchy's
    // mount point `root`. The level is the kernel's global one, so it is
    // right inside a cgroup namespace too (see cgroup_level.hpp).
    [[nodiscard]] static Result<CgroupDir> create(const std::string& root, const std::string& relative);

    CgroupDir(CgroupDir&& other) noexcept;
    CgroupDir& operator=(CgroupDir&&) = delete;
    CgroupDir(const CgroupDir&) = delete;
    ~CgroupDir();

    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    [[nodiscard]] int fd() const noexcept { return fd_; }          // O_RDONLY|O_DIRECTORY
    [[nodiscard]] std::uint64_t id() const noexcept { return id_; }
    [[nodiscard]] unsigned level() const noexcept { return level_; } // global depth

    // SIGKILLs every process in the subtree (cgroup.kill, 5.14+) and waits
    // until it is empty or `timeout` passes.
    [[nodiscard]] Result<void> kill_all(std::chrono::milliseconds timeout) const;
    [[nodiscard]] bool populated() const;

private:
    CgroupDir(std::string path, int fd, std::uint64_t id, unsigned level) noexcept
        : path_(std::move(path)), fd_(fd), id_(id), level_(level) {}
    std::string path_;
    int fd_ = -1;
    std::uint64_t id_ = 0;
    unsigned level_ = 0;
};

[[nodiscard]] Result<std::uint64_t> cgroup_id_of(const std::string& path);

// Kills and removes a whole subtree left by a crashed run. Best effort;
// returns the first error.
[[nodiscard]] Result<void> remove_cgroup_tree(const std::string& path);

} // namespace pinfold::loader
