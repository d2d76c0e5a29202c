#include "cgroup_level.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>

#include "cgroup_level.skel.h"

namespace pinfold::loader {

namespace {

// Path components, refusing a path that climbs out of the namespace root
// ("/.." appears when a process sits outside its cgroup namespace's root).
std::optional<unsigned> path_depth(const std::string& path)
{
    unsigned depth = 0;
    std::istringstream parts(path);
    std::string part;
    while (std::getline(parts, part, '/')) {
        if (part == "..")
            return std::nullopt;
        if (!part.empty() && part != ".")
            ++depth;
    }
    return depth;
}

Result<std::string> own_cgroup2_path()
{
    std::ifstream file("/proc/self/cgroup");
    if (!file)
        return fail_errno("open /proc/self/cgroup");
    std::string line;
    while (std::getline(file, line))
        if (line.starts_with("0::"))
            return line.substr(3);
    return fail("/proc/self/cgroup has no cgroup v2 line (0::)");
}

Result<std::string> mount_root_field(const std::string& mount_point)
{
    std::ifstream mountinfo("/proc/self/mountinfo");
    if (!mountinfo)
        return fail_errno("open /proc/self/mountinfo");
    std::string line;
    while (std::getline(mountinfo, line)) {
        auto sep = line.find(" - ");
        if (sep == std::string::npos || !line.substr(sep + 3).starts_with("cgroup2 "))
            continue;
        std::istringstream head(line.substr(0, sep));
        std::string id, parent, devno, root, point;
        head >> id >> parent >> devno >> root >> point;
        if (point == mount_point)
            return root;
    }
    return fail("no cgroup2 mount at " + mount_point + " in /proc/self/mountinfo");
}

// Ancestor ids of the calling task by global level, from the kernel.
Result<void> read_ancestors(unsigned long long* out, std::size_t count)
{
    cgroup_level* skel = cgroup_level__open_and_load();
    if (!skel)
        return fail_errno("load the cgroup level probe (needs CAP_BPF, kernel 5.14+)");
    LIBBPF_OPTS(bpf_test_run_opts, opts);
    int err = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.pf_cg_levels), &opts);
    if (err) {
        errno = -err;
        auto e = fail_errno("run the cgroup level probe");
        cgroup_level__destroy(skel);
        return e;
    }
    constexpr std::size_t levels = sizeof skel->bss->pf_ancestors / sizeof skel->bss->pf_ancestors[0];
    for (std::size_t i = 0; i < count; ++i)
        out[i] = i < levels ? skel->bss->pf_ancestors[i] : 0;
    cgroup_level__destroy(skel);
    return {};
}

} // namespace

Result<unsigned> mount_level_from(const unsigned long long* ancestors, std::size_t count,
                                  const std::string& own_path, const std::string& mount_root)
{
    // The caller's global level is its deepest non-zero ancestor (level 0,
    // the global root, is always there).
    if (count == 0 || ancestors[0] == 0)
        return fail("cgroup level probe returned no root cgroup");
    unsigned own_global = 0;
    while (own_global + 1 < count && ancestors[own_global + 1] != 0)
        ++own_global;
    if (own_global + 1 == count)
        return fail("cgroup tree deeper than " + std::to_string(count - 1) + " levels");
    auto own_relative = path_depth(own_path);
    if (!own_relative)
        return fail("pinfold's cgroup '" + own_path + "' lies outside its cgroup namespace");
    if (*own_relative > own_global)
        return fail("pinfold's cgroup '" + own_path + "' is deeper than the kernel reports (" +
                    std::to_string(own_global) + ")");
    auto root_depth = path_depth(mount_root);
    if (!root_depth)
        return fail("cgroup2 mount root '" + mount_root + "' lies outside the cgroup namespace");
    return own_global - *own_relative + *root_depth;
}

Result<unsigned> cgroup_mount_level(const std::string& cgroup2_mount)
{
    static std::mutex mutex;
    static std::optional<Result<unsigned>> cached;
    std::lock_guard lock(mutex);
    if (cached)
        return *cached;
    // Precondition: nothing moves pinfold to another cgroup while it starts.
    unsigned long long ancestors[32] = {};
    auto ids = read_ancestors(ancestors, std::size(ancestors));
    if (!ids)
        return std::unexpected(ids.error());
    auto own = own_cgroup2_path();
    if (!own)
        return std::unexpected(own.error());
    auto root = mount_root_field(cgroup2_mount);
    if (!root)
        return std::unexpected(root.error());
    cached = mount_level_from(ancestors, std::size(ancestors), *own, *root);
    return *cached;
}

} // namespace pinfold::loader
