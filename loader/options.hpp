#pragma once
// The command line of `pinfold`, parsed into plain structs before
// anything touches the kernel.

#include <string>
#include <variant>
#include <vector>

#include "pinfold/error.hpp"
#include "runtime_paths.hpp"
#include "sandbox_spec.hpp"

namespace pinfold::loader {

struct RunOptions {
    std::string policy_path;
    std::string audit_path;              // "" -> stderr
    std::vector<std::string> hosts;      // NAME=ADDR[,ADDR] for the proxy
    std::vector<std::string> providers;  // credential provider files (docs/credentials.md)
    std::vector<std::string> services;   // NAME=127.0.0.1:PORT,token-file=PATH (docs/credentials.md)
    std::vector<std::string> command;    // CMD [ARGS]
    std::string log_level = "warn";
    std::string proxy_path;              // "" -> pinfold-proxy beside this binary
    std::string upstream_ca_path;        // "" -> the system roots verify upstream TLS
    std::string dns_upstream;            // ADDR:PORT; "" -> first nameserver of /etc/resolv.conf
    int busy_poll_us = 0;                // the proxy polls this long after events before sleeping
    bool allow_degraded_identity = false; // binaries: without kernel capture (docs/identity.md)
    bool allow_private_netns = false;    // connects in the command's own netns pass (docs/security.md)
    bool trusted_command = false;        // non-root --sandbox off: CMD may leave the run (docs/security.md)
    SandboxOptions sandbox;              // --workspace, --ro/--rw/--hide, --env, limits
    RuntimePathOptions locations;        // --runtime-dir, --bpffs-dir, --cgroup-parent
};

struct CheckOptions {
    std::vector<std::string> policy_paths;
};

struct HelpRequest {
    std::string text;
};

using Command = std::variant<RunOptions, CheckOptions, HelpRequest>;

// `args` without the program name. Errors name the flag.
[[nodiscard]] Result<Command> parse_command_line(const std::vector<std::string>& args);

} // namespace pinfold::loader
