#pragma once
// --allow-private-netns: connects made in a network namespace the command
// created pass the hooks untouched (bpf/lib/steer.h). Sound only while no
// process of the run can act with CAP_SYS_ADMIN or CAP_NET_ADMIN on a
// network namespace that has a way out (docs/security.md); these are the
// checks and the arrangements that keep it so in each mode.

#include <string_view>

#include "pinfold/error.hpp"

namespace pinfold::loader {

inline constexpr std::string_view private_netns_notice =
    "--allow-private-netns: connects and datagrams made in a network namespace the command created pass "
    "untouched; they reach only that namespace, whose exits (slirp4netns, pasta) run in the sandbox and are "
    "policed like any other process (docs/security.md)";

// Refuses the option where the command could reach a network namespace
// with a way out: --sandbox off under a root pinfold (the command keeps
// every capability of the host's user namespace), and container mode in
// the host's PID namespace (other processes' namespaces in reach), and
// --sandbox off under a non-root pinfold on a kernel without Landlock.
[[nodiscard]] Result<void> check_private_netns_mode(bool wanted, bool sandbox_enabled, bool container_mode);

// --sandbox off under a non-root pinfold: the command gets a Landlock
// domain of its own. In the host's user namespace a process owns - holds
// every capability in - each user namespace its uid created there (another
// rootless container's, and with it that container's network namespace
// and its exit), and may open the namespaces of its uid's processes; from
// inside a Landlock domain no ptrace access check to a process outside it
// passes. (A user namespace of its own would do too, but rootless Podman
// 4.3 then copies that identity map and cannot become root in its own.)
[[nodiscard]] bool private_netns_needs_confinement(bool wanted, bool sandbox_enabled, bool container_mode);

} // namespace pinfold::loader
