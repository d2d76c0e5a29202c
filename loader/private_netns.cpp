#include "private_netns.hpp"

#include <linux/landlock.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace pinfold::loader {

namespace {

// Depth of this process's PID namespace: 1 in the host's, more in a
// container's own (NSpid lists one pid per level).
Result<int> pid_namespace_depth()
{
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (!line.starts_with("NSpid:"))
            continue;
        std::istringstream fields(line.substr(6));
        int depth = 0;
        for (std::string pid; fields >> pid;)
            ++depth;
        return depth;
    }
    return fail("--allow-private-netns: no NSpid line in /proc/self/status: cannot tell whether this container "
                "has a PID namespace of its own");
}

} // namespace

Result<void> check_private_netns_mode(bool wanted, bool sandbox_enabled, bool container_mode)
{
    if (!wanted || sandbox_enabled)
        return {};
    if (container_mode) {
        auto depth = pid_namespace_depth();
        if (!depth)
            return std::unexpected(depth.error());
        if (*depth > 1)
            return {};
        return fail("--allow-private-netns: this container shares the host's PID namespace (--pid host), so "
                    "the job could enter the network namespace of a process outside it; run the container with "
                    "a PID namespace of its own, or leave the option off (docs/security.md)");
    }
    if (::geteuid() != 0) {
        long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
        // ABI 6: scopes, so that the domain need not handle file access.
        if (abi < 6)
            return fail("--allow-private-netns with --sandbox off needs Landlock ABI 6 (Linux 6.12, landlock "
                        "in the active LSMs) to keep the command from entering the namespaces of this user's "
                        "other processes; this kernel offers " +
                        (abi < 0 ? std::string("none") : "ABI " + std::to_string(abi)) + " (docs/security.md)");
        return {};
    }
    return fail("--allow-private-netns cannot be used with --sandbox off when pinfold runs as root: the "
                "command would keep every capability of the host's user namespace and could give a network "
                "namespace a way out that no hook sees (docs/security.md); use the namespace sandbox "
                "(the default) or run pinfold as an ordinary user");
}

bool private_netns_needs_confinement(bool wanted, bool sandbox_enabled, bool container_mode)
{
    return wanted && !sandbox_enabled && !container_mode && ::geteuid() != 0;
}

} // namespace pinfold::loader
