#include "options.hpp"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include <boost/program_options.hpp>

#include "dns/dns_server.hpp"
#include "pinfold/busy_poll.hpp"
#include "pinfold/units.hpp"

namespace pinfold::loader {

namespace po = boost::program_options;

namespace {

constexpr const char* usage_text =
    "usage: pinfold run --policy FILE [--audit FILE] [--host NAME=ADDR]... -- CMD [ARGS...]\n"
    "       pinfold check FILE...\n"
    "       pinfold help\n";

// Raw text of the sandbox flags, checked into SandboxOptions after parsing.
struct SandboxFlags {
    std::string cpus, memory, pids, timeout, sandbox = "on";
};

SandboxFlags& sandbox_flags()
{
    static SandboxFlags flags;
    return flags;
}

void add_sandbox_options(po::options_description& desc, SandboxOptions& s)
{
    auto& f = sandbox_flags();
    f = SandboxFlags{};
    desc.add_options()
        ("workspace", po::value(&s.workspace), "directory mounted read-write in the sandbox (default: current directory)")
        ("ro", po::value(&s.ro_paths)->composing(), "PATH: also visible read-only (e.g. inside the workspace)")
        ("rw", po::value(&s.rw_paths)->composing(), "PATH: also writable")
        ("hide", po::value(&s.hide_paths)->composing(), "PATH: not visible at all (an empty directory or file)")
        ("env", po::value(&s.env)->composing(), "NAME=VALUE: set in the sandbox (the environment is otherwise cleared)")
        ("cpus", po::value(&f.cpus), "CPU time per second, e.g. 1.5")
        ("memory", po::value(&f.memory), "memory limit, e.g. 512M, 4G (no swap)")
        ("pids", po::value(&f.pids), "most tasks (processes and threads) at once")
        ("timeout", po::value(&f.timeout), "wall-clock limit, e.g. 90s, 15m; then everything is killed, exit 124")
        ("sandbox", po::value(&f.sandbox),
         "on (default) | off: off runs CMD with pinfold's own uid and capabilities, only the BPF hooks enforce "
         "(debugging and hook tests only)");
}

Result<void> check_sandbox_flags(SandboxOptions& s)
{
    const auto& f = sandbox_flags();
    if (f.sandbox != "on" && f.sandbox != "off")
        return fail("pinfold run: --sandbox '" + f.sandbox + "' is not on or off");
    s.enabled = f.sandbox == "on";
    if (!f.cpus.empty()) {
        auto cpus = parse_cpus(f.cpus);
        if (!cpus)
            return fail("pinfold run: --cpus " + cpus.error().what());
        s.limits.cpus = *cpus;
    }
    if (!f.memory.empty()) {
        auto bytes = parse_size(f.memory);
        if (!bytes)
            return fail("pinfold run: --memory " + bytes.error().what());
        s.limits.memory_bytes = *bytes;
    }
    if (!f.pids.empty()) {
        char* end = nullptr;
        unsigned long long pids = std::strtoull(f.pids.c_str(), &end, 10);
        if (end == f.pids.c_str() || *end != '\0' || pids < 1 || pids > 4194304 || f.pids[0] == '-')
            return fail("pinfold run: --pids '" + f.pids + "': expected a whole number of tasks (1 or more)");
        s.limits.pids = pids;
    }
    if (!f.timeout.empty()) {
        auto timeout = parse_duration(f.timeout);
        if (!timeout)
            return fail("pinfold run: --timeout " + timeout.error().what());
        s.limits.timeout = *timeout;
    }
    if (!s.enabled && (s.limits.cpus || s.limits.memory_bytes || s.limits.pids))
        return fail("pinfold run: --cpus, --memory and --pids need the sandbox (not --sandbox off)");
    for (const auto& entry : s.env) {
        auto eq = entry.find('=');
        if (eq == std::string::npos || eq == 0)
            return fail("pinfold run: --env '" + entry + "': expected NAME=VALUE");
    }
    return {};
}

po::options_description run_description(RunOptions& o)
{
    po::options_description desc("pinfold run options");
    desc.add_options()
        ("policy,p", po::value(&o.policy_path)->required(), "policy YAML file")
        ("audit", po::value(&o.audit_path), "append audit JSON lines to FILE (default: stderr)")
        ("host", po::value(&o.hosts)->composing(),
         "NAME=ADDR[,ADDR]: addresses of NAME for the proxy's Host check (like /etc/hosts)")
        ("provider", po::value(&o.providers)->composing(),
         "credential provider YAML file (repeatable): rules listing it in credentials: get its secret injected "
         "(docs/credentials.md)")
        ("service", po::value(&o.services)->composing(),
         "NAME=127.0.0.1:PORT,token-file=PATH: a host-local service the sandbox reaches as http://NAME:PORT/ under "
         "the policy; a fresh per-run bearer token is written to PATH and added by the proxy (docs/credentials.md)")
        ("log-level", po::value(&o.log_level), "trace|debug|info|warn|error (default warn)")
        ("proxy", po::value(&o.proxy_path), "path of pinfold-proxy (default: beside pinfold)")
        ("upstream-ca", po::value(&o.upstream_ca_path),
         "PEM file of the roots that verify HTTPS servers (default: the system's)")
        ("dns-upstream", po::value(&o.dns_upstream),
         "ADDR:PORT the sandbox's allowed DNS queries go to (default: first nameserver of /etc/resolv.conf)")
        ("busy-poll-us", po::value(&o.busy_poll_us),
         "N (0-1000, default 0): after traffic the proxy keeps polling for N microseconds before it sleeps, so "
         "the next connection does not wait for an idle CPU to wake up; lowers per-connection latency, costs CPU "
         "while traffic flows (docs/benchmarks.md)")
        ("allow-degraded-identity", po::bool_switch(&o.allow_degraded_identity),
         "start a policy with binaries: without CAP_PERFMON instead of refusing: those rules are then "
         "matched against /proc/<pid>/exe when the proxy accepts (a process that connects and then execs "
         "is not caught), and every decision is audited as degraded (docs/identity.md)")
        ("allow-private-netns", po::bool_switch(&o.allow_private_netns),
         "let connects and datagrams made in a network namespace the command created (a rootless container's, "
         "unshare -n) pass untouched instead of refusing them; they can only reach that namespace, whose exits "
         "(slirp4netns, pasta) run in the sandbox and are policed. Not with --sandbox off "
         "(docs/security.md)");
    desc.add_options()
        ("trusted-command", po::bool_switch(&o.trusted_command),
         "with --sandbox off as an ordinary user: run CMD although it is not confined - its uid owns the "
         "delegated cgroup subtree, so it could move itself out of the run's cgroup, or kill pinfold. For a "
         "container engine such as rootless podman, whose containers are the confined part (docs/security.md)");
    add_sandbox_options(desc, o.sandbox);
    desc.add_options()
        ("runtime-dir", po::value(&o.locations.runtime_dir),
         "DIR for run locks, 0700 (default: /run/pinfold as root, $XDG_RUNTIME_DIR/pinfold otherwise; "
         "env PINFOLD_RUNTIME_DIR)")
        ("bpffs-dir", po::value(&o.locations.bpffs_dir),
         "bpffs DIR for link pins, 0700 (default: /sys/fs/bpf/pinfold as root, /run/pinfold-bpf/UID otherwise; "
         "env PINFOLD_BPFFS_DIR)")
        ("cgroup-parent", po::value(&o.locations.cgroup_parent),
         "cgroup2 directory the runs' cgroups go below (default: <cgroup2>/pinfold as root, <the delegated cgroup "
         "pinfold sits in>/pinfold otherwise; env PINFOLD_CGROUP_PARENT)");
    return desc;
}

Result<Command> parse_run(std::vector<std::string> args)
{
    RunOptions o;
    auto dashdash = std::find(args.begin(), args.end(), "--");
    if (dashdash == args.end())
        return fail("pinfold run: missing '--' before the command to run");
    o.command.assign(dashdash + 1, args.end());
    args.erase(dashdash, args.end());
    if (o.command.empty())
        return fail("pinfold run: no command after '--'");
    auto desc = run_description(o);
    try {
        po::variables_map vm;
        po::store(po::command_line_parser(args).options(desc).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        return fail(std::string("pinfold run: ") + e.what());
    }
    static const std::vector<std::string> levels = {"trace", "debug", "info", "warn", "error", "off"};
    if (std::find(levels.begin(), levels.end(), o.log_level) == levels.end())
        return fail("pinfold run: --log-level '" + o.log_level + "' is not one of trace|debug|info|warn|error|off");
    if (auto r = check_busy_poll_us(o.busy_poll_us, "pinfold run"); !r)
        return std::unexpected(r.error());
    if (auto r = check_sandbox_flags(o.sandbox); !r)
        return std::unexpected(r.error());
    for (const auto& host : o.hosts) {
        auto eq = host.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == host.size())
            return fail("pinfold run: --host '" + host + "': expected NAME=ADDR[,ADDR]");
    }
    if (!o.dns_upstream.empty()) {
        if (auto r = dns::parse_upstream(o.dns_upstream); !r)
            return fail("pinfold run: --dns-upstream: " + r.error().message);
    }
    return o;
}

} // namespace

Result<Command> parse_command_line(const std::vector<std::string>& args)
{
    if (args.empty())
        return fail(std::string("no subcommand\n") + usage_text);
    const std::string& sub = args[0];
    std::vector<std::string> rest(args.begin() + 1, args.end());
    if (sub == "help" || sub == "--help" || sub == "-h") {
        RunOptions scratch;
        std::ostringstream text;
        text << usage_text << "\n" << run_description(scratch);
        return HelpRequest{text.str()};
    }
    if (sub == "run")
        return parse_run(std::move(rest));
    if (sub == "check") {
        if (rest.empty())
            return fail("pinfold check: no policy file given");
        for (const auto& arg : rest) {
            if (arg.starts_with("-"))
                return fail("pinfold check: unknown option '" + arg + "'");
        }
        return CheckOptions{rest};
    }
    return fail("unknown subcommand '" + sub + "'\n" + usage_text);
}

} // namespace pinfold::loader
