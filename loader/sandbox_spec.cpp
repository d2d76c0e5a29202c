#include "sandbox_spec.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "pinfold/units.hpp"
#include "seccomp_filter.hpp"

extern char** environ;

namespace pinfold::loader {

namespace fs = std::filesystem;

namespace {

// When pinfold is root and the workspace belongs to root too, the command
// still must not be root on the host (owner rights on every root file,
// signals to root processes): it runs as this otherwise unused id.
constexpr uid_t fallback_outer_id = 65533;

// Where the new root is assembled, in the child's private mount namespace
// (a tmpfs is mounted there first, so nothing on the host is touched).
constexpr const char* staging_dir = "/tmp/.pinfold-root";

Result<std::string> absolute_existing(const std::string& flag, const std::string& path)
{
    if (path.empty())
        return fail(flag + ": empty path");
    std::error_code ec;
    fs::path resolved = fs::canonical(fs::absolute(path, ec), ec);
    if (ec)
        return fail(flag + " " + path + ": " + ec.message(), ec.value());
    return resolved.string();
}

bool is_under(const std::string& path, const std::string& dir)
{
    if (dir == "/")
        return true;
    return path == dir || (path.starts_with(dir) && path[dir.size()] == '/');
}

MountStep step(MountKind kind, std::string source, std::string target)
{
    MountStep s{kind, std::move(source), std::move(target), {}};
    s.staged = std::string(staging_dir) + (s.target == "/" ? "" : s.target);
    return s;
}

} // namespace

const std::vector<std::string>& passed_environment()
{
    static const std::vector<std::string> names = {
        "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_COLLATE", "LC_NUMERIC",
        "LC_TIME", "LC_MONETARY", "TERM", "COLORTERM", "NO_COLOR", "TZ", "COLUMNS", "LINES",
        "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
        "GIT_SSL_CAINFO",
    };
    return names;
}

const std::vector<std::string>& always_hidden_paths()
{
    // Link pins (anyone who opens one can detach it), the run's locks and
    // the cgroup tree (the sandbox's own limits) stay out of sight.
    static const std::vector<std::string> paths = {"/sys/fs/bpf", "/sys/fs/cgroup", "/run/pinfold"};
    return paths;
}

Result<SandboxPlan> make_sandbox_plan(const SandboxOptions& options, const std::vector<std::string>& extra_env,
                                      const std::vector<MountStep>& extra_mounts)
{
    SandboxPlan plan;
    plan.staging = staging_dir;
    plan.limits = options.limits;

    std::string workspace_arg = options.workspace;
    if (workspace_arg.empty()) {
        std::error_code ec;
        workspace_arg = fs::current_path(ec).string();
        if (ec)
            return fail("--workspace: cannot find the current directory: " + ec.message());
    }
    auto workspace = absolute_existing("--workspace", workspace_arg);
    if (!workspace)
        return std::unexpected(workspace.error());
    struct stat ws {};
    if (::stat(workspace->c_str(), &ws) != 0 || !S_ISDIR(ws.st_mode))
        return fail("--workspace " + workspace_arg + ": not a directory");
    if (*workspace == "/")
        return fail("--workspace /: the whole filesystem cannot be the workspace");
    std::vector<std::string> never_seen = always_hidden_paths();
    never_seen.insert(never_seen.end(), options.state_paths.begin(), options.state_paths.end());
    if (!options.user_runtime_dir.empty())
        never_seen.push_back(options.user_runtime_dir);
    for (const auto& hidden : never_seen) {
        if (is_under(*workspace, hidden) || is_under(hidden, *workspace))
            return fail("--workspace " + *workspace + ": overlaps " + hidden + ", which the sandbox never sees");
    }
    plan.workspace = *workspace;

    // The command is never root on the host. A non-root pinfold maps its
    // own uid (the only one it may); a root pinfold uses the workspace's
    // owner, so that the workspace is writable, unless that is root too.
    plan.privileged = ::geteuid() == 0;
    if (!plan.privileged) {
        plan.outer_uid = ::geteuid();
        plan.outer_gid = ::getegid();
    } else if (ws.st_uid != 0) {
        plan.outer_uid = ws.st_uid;
        plan.outer_gid = ws.st_gid;
    } else {
        plan.outer_uid = fallback_outer_id;
        plan.outer_gid = fallback_outer_id;
    }

    // Order matters: later steps mount over earlier ones (a workspace in
    // /tmp lands on the private /tmp, a --hide inside it on the workspace).
    plan.mounts.push_back(step(MountKind::tmpfs, "", "/tmp"));
    plan.mounts.push_back(step(MountKind::tmpfs, "", "/dev"));
    for (const char* node : {"null", "zero", "full", "random", "urandom", "tty"})
        plan.mounts.push_back(step(MountKind::dev_node, std::string("/dev/") + node, std::string("/dev/") + node));
    plan.mounts.push_back(step(MountKind::symlink, "/proc/self/fd", "/dev/fd"));
    plan.mounts.push_back(step(MountKind::symlink, "/proc/self/fd/0", "/dev/stdin"));
    plan.mounts.push_back(step(MountKind::symlink, "/proc/self/fd/1", "/dev/stdout"));
    plan.mounts.push_back(step(MountKind::symlink, "/proc/self/fd/2", "/dev/stderr"));
    plan.mounts.push_back(step(MountKind::symlink, "pts/ptmx", "/dev/ptmx"));
    plan.mounts.push_back(step(MountKind::devpts, "", "/dev/pts"));
    plan.mounts.push_back(step(MountKind::tmpfs, "", "/dev/shm"));
    plan.mounts.push_back(step(MountKind::seal_ro, "", "/dev"));
    plan.mounts.push_back(step(MountKind::proc, "", "/proc"));
    plan.mounts.push_back(step(MountKind::bind_rw, plan.workspace, plan.workspace));

    auto add_paths = [&](const std::vector<std::string>& paths, const std::string& flag,
                         MountKind kind) -> Result<void> {
        for (const auto& path : paths) {
            auto resolved = absolute_existing(flag, path);
            if (!resolved)
                return std::unexpected(resolved.error());
            if (*resolved == "/")
                return fail(flag + " /: not allowed");
            for (const auto& hidden : never_seen) {
                if (kind != MountKind::hide_dir && (is_under(*resolved, hidden) || is_under(hidden, *resolved)))
                    return fail(flag + " " + path + ": overlaps " + hidden + ", which the sandbox never sees");
            }
            MountKind k = kind;
            if (kind == MountKind::hide_dir && !fs::is_directory(*resolved))
                k = MountKind::hide_file;
            plan.mounts.push_back(step(k, *resolved, *resolved));
        }
        return {};
    };
    if (auto r = add_paths(options.rw_paths, "--rw", MountKind::bind_rw); !r)
        return std::unexpected(r.error());
    if (auto r = add_paths(options.ro_paths, "--ro", MountKind::bind_ro); !r)
        return std::unexpected(r.error());
    for (const auto& m : extra_mounts)
        plan.mounts.push_back(step(m.kind, m.source, m.target));
    if (auto r = add_paths(options.hide_paths, "--hide", MountKind::hide_dir); !r)
        return std::unexpected(r.error());
    for (const auto& hidden : always_hidden_paths()) {
        std::error_code ec;
        if (fs::is_directory(hidden, ec))
            plan.mounts.push_back(step(MountKind::hide_dir, hidden, hidden));
    }
    for (const auto& hidden : options.state_paths) {
        // Below a path already hidden, or in the host's /tmp (the sandbox
        // has its own), it does not exist in the new root.
        bool covered = is_under(hidden, "/tmp") ||
                       std::any_of(always_hidden_paths().begin(), always_hidden_paths().end(),
                                   [&](const std::string& dir) { return is_under(hidden, dir); });
        std::error_code ec;
        if (!covered && fs::is_directory(hidden, ec))
            plan.mounts.push_back(step(MountKind::hide_dir, hidden, hidden));
    }
    if (!options.user_runtime_dir.empty()) {
        // Last, over the hides above that lie inside it: an empty tmpfs,
        // the bundle bound into it, then sealed read-only.
        plan.mounts.push_back(step(MountKind::tmpfs, "", options.user_runtime_dir));
        if (!options.revealed_dir.empty() && is_under(options.revealed_dir, options.user_runtime_dir))
            plan.mounts.push_back(step(MountKind::bind_ro, options.revealed_dir, options.revealed_dir));
        plan.mounts.push_back(step(MountKind::seal_ro, "", options.user_runtime_dir));
    }

    // Environment: the allow-list, then what pinfold adds, then --env.
    auto set_env = [&plan](const std::string& entry) {
        auto name = entry.substr(0, entry.find('=') + 1);
        std::erase_if(plan.env, [&](const std::string& e) { return e.starts_with(name); });
        plan.env.push_back(entry);
    };
    for (const auto& name : passed_environment()) {
        if (const char* value = ::getenv(name.c_str()))
            set_env(name + "=" + value);
    }
    if (!::getenv("PATH"))
        set_env("PATH=/usr/local/bin:/usr/bin:/bin");
    // A private HOME: the host's (often /root) is not the command's, and
    // dotfiles there may hold credentials.
    set_env("HOME=/tmp");
    set_env("TMPDIR=/tmp");
    set_env("USER=agent");
    set_env("LOGNAME=agent");
    set_env("PWD=" + plan.workspace);
    for (const auto& entry : extra_env)
        set_env(entry);
    for (const auto& entry : options.env) {
        auto eq = entry.find('=');
        if (eq == std::string::npos || eq == 0)
            return fail("--env '" + entry + "': expected NAME=VALUE");
        set_env(entry);
    }

    auto program = build_seccomp_program();
    if (!program)
        return std::unexpected(program.error());
    plan.seccomp = std::move(*program);
    return plan;
}

} // namespace pinfold::loader
