#include "runtime_paths.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace pinfold::loader {

namespace fs = std::filesystem;

namespace {

constexpr long bpf_fs_magic = 0xcafe4a11;
constexpr long cgroup2_magic = 0x63677270;

// How pinfold tells the user what to do when the one-time setup is missing.
constexpr const char* setup_hint = "run scripts/setup-unprivileged.sh USER once as root (see README, 'Without root')";

std::string mode_text(mode_t mode)
{
    char text[8];
    std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
    return text;
}

PathFacts lstat_facts(const std::string& path)
{
    PathFacts facts;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0)
        return facts;
    facts.exists = true;
    facts.is_dir = S_ISDIR(st.st_mode);
    facts.is_symlink = S_ISLNK(st.st_mode);
    facts.uid = st.st_uid;
    facts.mode = st.st_mode;
    return facts;
}

bool is_under(const std::string& path, const std::string& dir)
{
    return path == dir || (path.size() > dir.size() && path.starts_with(dir) && path[dir.size()] == '/');
}

// An absolute path with symbolic links of its existing part resolved (so
// that ownership is checked where the data really is) and no trailing '/'.
Result<std::string> normalised(const std::string& value, const std::string& what)
{
    if (value.empty() || value[0] != '/')
        return fail(what + " '" + value + "': expected an absolute path");
    std::error_code ec;
    fs::path resolved = fs::weakly_canonical(fs::path(value), ec);
    if (ec)
        return fail(what + " " + value + ": " + ec.message(), ec.value());
    std::string text = resolved.lexically_normal().string();
    while (text.size() > 1 && text.back() == '/')
        text.pop_back();
    return text;
}

// The caller's cgroup2 path from /proc/self/cgroup ("0::/a/b").
Result<std::string> own_cgroup_path()
{
    std::ifstream self("/proc/self/cgroup");
    std::string line;
    while (std::getline(self, line)) {
        if (line.starts_with("0::"))
            return line.substr(3);
    }
    return fail("no cgroup2 entry (0::) in /proc/self/cgroup");
}

// A value from the flag, else the variable; `what` says which one.
std::string pick(const std::string& flag_value, const char* flag, const char* variable, std::string& what)
{
    if (!flag_value.empty()) {
        what = flag;
        return flag_value;
    }
    if (const char* env = ::getenv(variable); env && *env) {
        what = variable;
        return env;
    }
    return "";
}

bool on_filesystem(const std::string& path, long magic)
{
    struct statfs st {};
    return ::statfs(path.c_str(), &st) == 0 && static_cast<long>(st.f_type) == magic;
}

} // namespace

Result<void> check_private_location(const std::string& path, uid_t uid, const std::string& what,
                                    const PathProbe& probe)
{
    if (path.empty() || path[0] != '/')
        return fail(what + " '" + path + "': expected an absolute path");
    fs::path target(path);
    fs::path walked("/");
    for (auto it = target.begin(); it != target.end(); ++it) {
        if (*it != "/")
            walked /= *it;
        std::string here = walked.string();
        PathFacts facts = probe(here);
        if (!facts.exists)
            return {};   // the rest is created by pinfold, with its modes
        bool last = here == path;
        if (facts.is_symlink)
            return fail(what + " " + path + ": " + here + " is a symbolic link");
        if (!facts.is_dir)
            return fail(what + " " + path + ": " + here + " is not a directory");
        if (last) {
            if (facts.uid != uid)
                return fail(what + " " + path + ": owned by uid " + std::to_string(facts.uid) + ", not by uid " +
                            std::to_string(uid) + " (pinfold keeps its state only in its own directories)");
            if (facts.mode & (S_IWGRP | S_IWOTH))
                return fail(what + " " + path + ": writable by others (mode " + mode_text(facts.mode) +
                            "); make it 0700");
            return {};
        }
        if (facts.uid != 0 && facts.uid != uid)
            return fail(what + " " + path + ": its parent " + here + " belongs to uid " + std::to_string(facts.uid) +
                        ", who could replace what is below it");
        if ((facts.mode & (S_IWGRP | S_IWOTH)) && !(facts.mode & S_ISVTX))
            return fail(what + " " + path + ": its parent " + here + " is writable by others (mode " +
                        mode_text(facts.mode) + ") without the sticky bit");
    }
    return {};
}

Result<std::string> delegated_cgroup(const std::string& cgroup2_root, const std::string& own, uid_t uid,
                                     const PathProbe& probe)
{
    if (!is_under(own, cgroup2_root))
        return fail("pinfold's cgroup " + own + " is not below the cgroup2 mount " + cgroup2_root);
    PathFacts facts = probe(own);
    if (own == cgroup2_root || !facts.exists || facts.uid != uid)
        return fail("pinfold runs in cgroup " + own + ", which is not delegated to uid " + std::to_string(uid) +
                    ": it needs a cgroup subtree of its own, and must be started from inside it (" + setup_hint +
                    "; then start your shell in it), or pass --cgroup-parent");
    std::string current = own;
    for (int depth = 0; depth < 256; ++depth) {
        std::string parent = fs::path(current).parent_path().string();
        if (parent == cgroup2_root || !is_under(parent, cgroup2_root) || probe(parent).uid != uid)
            break;
        current = parent;
    }
    return current;
}

std::string common_cgroup(const std::string& a, const std::string& b)
{
    fs::path pa(a), pb(b), common;
    auto ia = pa.begin(), ib = pb.begin();
    for (; ia != pa.end() && ib != pb.end() && *ia == *ib; ++ia, ++ib)
        common /= *ia;
    std::string text = common.string();
    return text.empty() ? "/" : text;
}

Result<std::string> cgroup_parent_directory(const std::string& value, const std::string& cgroup2_root)
{
    if (value.empty() || value[0] != '/')
        return fail("--cgroup-parent '" + value + "': expected a path below " + cgroup2_root +
                    " or a cgroup path like /pinfold-users/alice");
    std::string text = fs::path(value).lexically_normal().string();
    while (text.size() > 1 && text.back() == '/')
        text.pop_back();
    if (!is_under(text, cgroup2_root))
        text = cgroup2_root + (text == "/" ? "" : text);
    if (!is_under(text, cgroup2_root))
        return fail("--cgroup-parent " + value + ": not below the cgroup2 mount " + cgroup2_root);
    return text;
}

Result<RuntimeLocations> resolve_runtime_locations(const RuntimePathOptions& options, const std::string& cgroup2_root)
{
    RuntimeLocations where;
    const uid_t uid = ::geteuid();
    where.privileged = uid == 0;
    where.cgroup2_root = cgroup2_root;
    const std::string uid_text = std::to_string(uid);

    // Container mode (a read-only cgroup2 mount, container_mode.hpp) makes
    // no cgroups and keeps no pins: the fixed locations, as before.
    struct statvfs vfs {};
    if (::statvfs(cgroup2_root.c_str(), &vfs) == 0 && (vfs.f_flag & ST_RDONLY)) {
        where.run.cgroup_parent = cgroup2_root + "/pinfold";
        where.cgroup_parent_relative = "pinfold";
        where.trust_parent = where.run.lock_dir + "-trust";
        where.hidden = {where.run.lock_dir, where.run.pin_parent};
        return where;
    }

    // The runtime directory: locks, and beside it the CA bundles.
    std::string what;
    std::string runtime = pick(options.runtime_dir, "--runtime-dir", "PINFOLD_RUNTIME_DIR", what);
    const char* xdg = ::getenv("XDG_RUNTIME_DIR");
    if (!where.privileged && xdg && *xdg) {
        // The XDG base directory spec: the user's own, 0700. Checked even
        // when --runtime-dir points elsewhere: it is hidden in the sandbox.
        auto dir = normalised(xdg, "XDG_RUNTIME_DIR");
        if (!dir)
            return std::unexpected(dir.error());
        if (auto r = check_private_location(*dir, uid, "XDG_RUNTIME_DIR", lstat_facts); !r)
            return std::unexpected(r.error());
        if (!lstat_facts(*dir).exists)
            return fail("XDG_RUNTIME_DIR " + *dir + ": does not exist");
        where.user_runtime_dir = *dir;
    }
    // The user's sockets live in /run/user/<uid> whatever XDG_RUNTIME_DIR
    // says (unset under cron, sudo -u or a CI shell): the sandbox has the
    // user's uid, so that directory is replaced too (review F3).
    const std::string run_user_dir = "/run/user/" + uid_text;
    bool hide_run_user = false;
    if (!where.privileged && run_user_dir != where.user_runtime_dir && lstat_facts(run_user_dir).is_dir) {
        if (where.user_runtime_dir.empty())
            where.user_runtime_dir = run_user_dir;
        else
            hide_run_user = true;
    }
    if (runtime.empty()) {
        if (where.privileged) {
            runtime = "/run/pinfold";
            what = "the runtime directory";
        } else if (!where.user_runtime_dir.empty()) {
            runtime = where.user_runtime_dir + "/pinfold";
            what = "XDG_RUNTIME_DIR";
        } else {
            PathFacts run_user = lstat_facts("/run/user/" + uid_text);
            if (!run_user.exists || !run_user.is_dir || run_user.uid != uid)
                return fail("no runtime directory for uid " + uid_text + ": XDG_RUNTIME_DIR is not set and /run/user/" +
                            uid_text + " is not a directory of this user; set XDG_RUNTIME_DIR or pass --runtime-dir "
                            "(or PINFOLD_RUNTIME_DIR)");
            runtime = "/run/user/" + uid_text + "/pinfold";
            what = "the runtime directory";
        }
    }
    auto runtime_dir = normalised(runtime, what);
    if (!runtime_dir)
        return std::unexpected(runtime_dir.error());
    if (*runtime_dir == "/")
        return fail(what + " /: not a runtime directory");
    if (auto r = check_private_location(*runtime_dir, uid, what, lstat_facts); !r)
        return std::unexpected(r.error());
    where.run.lock_dir = *runtime_dir;
    where.trust_parent = *runtime_dir + "-trust";
    // 0755 by design (the sandbox reads the bundles), but ours alone.
    if (auto r = check_private_location(where.trust_parent, uid, what + " (its -trust sibling)", lstat_facts); !r)
        return std::unexpected(r.error());

    // The bpffs directory of the link pins.
    std::string pins = pick(options.bpffs_dir, "--bpffs-dir", "PINFOLD_BPFFS_DIR", what);
    bool default_pins = pins.empty();
    if (default_pins) {
        // An ordinary user cannot pass root's 0700 /sys/fs/bpf: the setup
        // mounts a bpffs of the user's own here.
        pins = where.privileged ? "/sys/fs/bpf/pinfold" : "/run/pinfold-bpf/" + uid_text;
        what = "the bpffs directory";
    }
    auto pin_dir = normalised(pins, what);
    if (!pin_dir)
        return std::unexpected(pin_dir.error());
    if (auto r = check_private_location(*pin_dir, uid, what, lstat_facts); !r)
        return std::unexpected(r.error());
    where.run.pin_parent = *pin_dir;
    where.run.bpffs = where.privileged && default_pins ? "/sys/fs/bpf" : "";
    if (!where.privileged && !lstat_facts(*pin_dir).exists)
        return fail(what + " " + *pin_dir + ": does not exist (a bpffs directory owned by uid " + uid_text + "; " +
                    setup_hint + ", or pass --bpffs-dir)");

    // The cgroup parent of the runs.
    auto own = own_cgroup_path();
    if (!own)
        return std::unexpected(own.error());
    std::string own_dir = cgroup2_root + (*own == "/" ? "" : *own);
    std::string parent_value = pick(options.cgroup_parent, "--cgroup-parent", "PINFOLD_CGROUP_PARENT", what);
    std::string parent;
    if (!parent_value.empty()) {
        auto dir = cgroup_parent_directory(parent_value, cgroup2_root);
        if (!dir)
            return fail(what + ": " + dir.error().message);
        parent = *dir;
    } else if (where.privileged) {
        parent = cgroup2_root + "/pinfold";
    } else {
        auto delegated = delegated_cgroup(cgroup2_root, own_dir, uid, lstat_facts);
        if (!delegated)
            return std::unexpected(delegated.error());
        parent = *delegated + "/pinfold";
        what = "the cgroup parent";
    }
    if (!where.privileged) {
        if (auto r = check_private_location(parent, uid, what + " (cgroup)", lstat_facts); !r)
            return std::unexpected(r.error());
        // clone3(CLONE_INTO_CGROUP) moves a process from our cgroup to the
        // run's: like a write to cgroup.procs, it needs write access to the
        // cgroup.procs of the nearest cgroup containing both.
        std::string common = common_cgroup(own_dir, parent);
        if (::access((common + "/cgroup.procs").c_str(), W_OK) != 0)
            return fail("pinfold runs in cgroup " + own_dir + " and would start the sandbox below " + parent +
                        "; that needs write access to " + common + "/cgroup.procs, which uid " + uid_text +
                        " does not have. Start pinfold from inside the cgroup subtree delegated to you (" +
                        setup_hint + "), or pass a --cgroup-parent inside it");
    }
    where.run.cgroup_parent = parent;
    where.cgroup_parent_relative = fs::path(parent).lexically_relative(cgroup2_root).string();
    if (where.cgroup_parent_relative == ".")
        where.cgroup_parent_relative.clear();

    // What the sandbox never sees: the locks and pins (a link pin can
    // detach its link; for a non-root pinfold the sandbox has the same uid).
    where.hidden = {where.run.lock_dir, where.run.pin_parent};
    // A root pinfold runs the command as the workspace's owner: that user's
    // /run/user/<uid> (session bus, agents, a podman API socket that would
    // start containers outside the sandbox's cgroup) must be out of reach.
    // (A non-root pinfold replaces its own XDG_RUNTIME_DIR instead; other
    // users' are 0700.)
    if (where.privileged && lstat_facts("/run/user").is_dir)
        where.hidden.push_back("/run/user");
    if (hide_run_user)
        where.hidden.push_back(run_user_dir);
    return where;
}

Result<void> prepare_runtime_locations(const RuntimeLocations& where)
{
    if (!where.run.bpffs.empty()) {
        if (auto r = ensure_bpffs(where.run.bpffs); !r)
            return r;
    } else {
        std::string dir = where.run.pin_parent;
        if (!lstat_facts(dir).exists)
            dir = fs::path(dir).parent_path().string();
        if (!on_filesystem(dir, bpf_fs_magic))
            return fail("bpffs directory " + where.run.pin_parent + ": not on a bpffs mount (" +
                        std::string(where.privileged ? "mount -t bpf bpf DIR" : setup_hint) + ")");
    }
    if (::mkdir(where.run.cgroup_parent.c_str(), 0755) != 0 && errno != EEXIST)
        return fail_errno("create cgroup " + where.run.cgroup_parent +
                          (where.privileged ? std::string() : std::string(" (") + setup_hint + ")"));
    if (!on_filesystem(where.run.cgroup_parent, cgroup2_magic))
        return fail("cgroup parent " + where.run.cgroup_parent + ": not a cgroup2 directory");
    return {};
}

} // namespace pinfold::loader
