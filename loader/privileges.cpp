#include "privileges.hpp"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace pinfold::loader {

Result<void> drop_own_capabilities()
{
    // The bounding set needs CAP_SETPCAP (a file-capability pinfold lacks
    // it; it never execs again, so its bounding set cannot hand anything out).
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
            break;
    }
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        return fail_errno("clear ambient capabilities");
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capset, &header, data) != 0)
        return fail_errno("drop capabilities");
    return {};
}

Result<void> check_unconfined_command(bool sandbox_enabled, bool trusted_command, bool root, bool container_mode)
{
    if (sandbox_enabled || root || container_mode || trusted_command)
        return {};
    return fail("pinfold run: with --sandbox off, CMD runs unconfined as your uid, which owns the delegated cgroup "
                "subtree: it could move itself out of the run's cgroup (or kill pinfold) and reach the network "
                "unpoliced. Keep the sandbox, or pass --trusted-command for a trusted CMD such as rootless podman "
                "(its containers are the confined part; docs/security.md)");
}

} // namespace pinfold::loader
