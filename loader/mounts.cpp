#include "mounts.hpp"

#include <fcntl.h>
#include <linux/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

// glibc 2.36's <sys/mount.h> clashes with <linux/mount.h>; the new mount
// API is reached through syscall(2) instead.

namespace pinfold::loader {

namespace {

constexpr int detach = 2;   // MNT_DETACH, from <sys/mount.h>

int sys_mount(const char* source, const char* target, const char* type, unsigned long flags, const char* data)
{
    return static_cast<int>(::syscall(SYS_mount, source, target, type, flags, data));
}

int sys_open_tree(const char* path, unsigned flags)
{
    return static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, path, flags | OPEN_TREE_CLOEXEC));
}

int sys_move_mount(int from_fd, const char* to)
{
    return static_cast<int>(::syscall(SYS_move_mount, from_fd, "", AT_FDCWD, to, MOVE_MOUNT_F_EMPTY_PATH));
}

int set_attr(int fd, const char* path, unsigned at_flags, std::uint64_t set)
{
    mount_attr attr{};
    attr.attr_set = set;
    return static_cast<int>(::syscall(SYS_mount_setattr, fd, path, at_flags, &attr, sizeof attr));
}

bool has_host_source(MountKind kind)
{
    return kind == MountKind::bind_rw || kind == MountKind::bind_ro || kind == MountKind::dev_node;
}

int make_dir(const char* path)
{
    if (::mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return errno;
}

// Creates the mount point of a bind whose target is not in the new root
// (a workspace in /tmp lands on the private /tmp): parents as directories,
// the last part like the source.
int make_mount_point(const char* target, int tree_fd)
{
    struct stat st {};
    if (::stat(target, &st) == 0)
        return 0;
    char path[4096];
    std::size_t len = std::strlen(target);
    if (len >= sizeof path)
        return ENAMETOOLONG;
    std::memcpy(path, target, len + 1);
    for (std::size_t i = 1; i < len; ++i) {
        if (path[i] != '/')
            continue;
        path[i] = '\0';
        if (::mkdir(path, 0755) != 0 && errno != EEXIST)
            return errno;
        path[i] = '/';
    }
    if (::fstat(tree_fd, &st) != 0)
        return errno;
    if (S_ISDIR(st.st_mode))
        return ::mkdir(path, 0755) == 0 ? 0 : errno;
    int file = ::open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (file < 0)
        return errno;
    ::close(file);
    return 0;
}

// A private empty file the hide_file steps are bound from.
constexpr const char* empty_file = "/tmp/.pinfold-empty";

int run_step(const MountStep& s, int fd)
{
    const char* target = s.staged.c_str();
    switch (s.kind) {
    case MountKind::bind_rw:
    case MountKind::bind_ro:
    case MountKind::dev_node:
        if (s.kind == MountKind::dev_node) {
            int file = ::open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
            if (file < 0)
                return errno;
            ::close(file);
        } else if (int err = make_mount_point(target, fd)) {
            return err;
        }
        return sys_move_mount(fd, target) == 0 ? 0 : errno;
    case MountKind::hide_dir:
        return sys_mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=000,size=4k") == 0
                   ? 0
                   : errno;
    case MountKind::hide_file: {
        int file = ::open(empty_file, O_CREAT | O_WRONLY | O_CLOEXEC, 0);
        if (file < 0)
            return errno;
        ::close(file);
        int tree = sys_open_tree(empty_file, OPEN_TREE_CLONE);
        if (tree < 0)
            return errno;
        int rc = set_attr(tree, "", AT_EMPTY_PATH, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                                       MOUNT_ATTR_NOEXEC);
        if (rc == 0)
            rc = sys_move_mount(tree, target);
        int err = rc == 0 ? 0 : errno;
        ::close(tree);
        return err;
    }
    case MountKind::tmpfs:
        if (int err = make_dir(target))
            return err;
        return sys_mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV,
                         s.target == "/dev" ? "mode=0755" : "mode=1777") == 0
                   ? 0
                   : errno;
    case MountKind::symlink:
        return ::symlink(s.source.c_str(), target) == 0 ? 0 : errno;
    case MountKind::devpts:
        if (int err = make_dir(target))
            return err;
        return sys_mount("devpts", target, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") == 0
                   ? 0
                   : errno;
    case MountKind::proc:
        return sys_mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0 ? 0 : errno;
    case MountKind::seal_ro:
        return set_attr(AT_FDCWD, target, 0, MOUNT_ATTR_RDONLY) == 0 ? 0 : errno;
    }
    return EINVAL;
}

} // namespace

int build_sandbox_root(const SandboxPlan& plan, int* fds, int* failed_step) noexcept
{
    const std::size_t n = plan.mounts.size();
    *failed_step = static_cast<int>(n);
    // Nothing done here may propagate back to the host.
    if (sys_mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        return errno;

    // Capture the host trees first: the private /tmp below would hide a
    // workspace that lives in the host's /tmp.
    int root = sys_open_tree("/", OPEN_TREE_CLONE | AT_RECURSIVE);
    if (root < 0)
        return errno;
    // Mounts inherited from the host are locked in this user namespace: a
    // flag can be added to them but never cleared again.
    if (set_attr(root, "", AT_EMPTY_PATH | AT_RECURSIVE, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) != 0)
        return errno;
    for (std::size_t i = 0; i < n; ++i) {
        const MountStep& s = plan.mounts[i];
        fds[i] = -1;
        if (!has_host_source(s.kind))
            continue;
        *failed_step = static_cast<int>(i);
        fds[i] = sys_open_tree(s.source.c_str(), OPEN_TREE_CLONE | (s.kind == MountKind::dev_node ? 0 : AT_RECURSIVE));
        if (fds[i] < 0)
            return errno;
        std::uint64_t attrs = MOUNT_ATTR_NOSUID;
        if (s.kind == MountKind::bind_ro)
            attrs |= MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV;
        else if (s.kind == MountKind::bind_rw)
            attrs |= MOUNT_ATTR_NODEV;
        else
            attrs |= MOUNT_ATTR_NOEXEC;
        unsigned at = AT_EMPTY_PATH | (s.kind == MountKind::dev_node ? 0 : AT_RECURSIVE);
        if (set_attr(fds[i], "", at, attrs) != 0)
            return errno;
    }

    *failed_step = static_cast<int>(n);
    if (sys_mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") != 0)
        return errno;
    if (::mkdir(plan.staging.c_str(), 0700) != 0)
        return errno;
    if (sys_move_mount(root, plan.staging.c_str()) != 0)
        return errno;
    ::close(root);

    for (std::size_t i = 0; i < n; ++i) {
        *failed_step = static_cast<int>(i);
        if (int err = run_step(plan.mounts[i], fds[i]))
            return err;
        if (fds[i] >= 0)
            ::close(fds[i]);
        fds[i] = -1;
    }

    *failed_step = static_cast<int>(n);
    if (::chdir(plan.staging.c_str()) != 0)
        return errno;
    if (::syscall(SYS_pivot_root, ".", ".") != 0)
        return errno;
    // The old root is stacked under the new one: detach it, and with it
    // every path to the host's mounts.
    if (::syscall(SYS_umount2, ".", detach) != 0)
        return errno;
    if (::chdir("/") != 0 || ::chdir(plan.workspace.c_str()) != 0)
        return errno;
    return 0;
}

} // namespace pinfold::loader
