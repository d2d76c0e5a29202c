#include "run_command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include <spdlog/spdlog.h>

#include "cgroup.hpp"
#include "container_mode.hpp"
#include "dns/dns_server.hpp"
#include "child_process.hpp"
#include "credential_setup.hpp"
#include "exe_identity.hpp"
#include "exe_lookup_service.hpp"
#include "limits.hpp"
#include "privileges.hpp"
#include "private_netns.hpp"
#include "sandbox_spec.hpp"
#include "seccomp_filter.hpp"
#include "pinfold/address.hpp"
#include "pinfold/audit_log.hpp"
#include "pinfold/proxy_handover.hpp"
#include "pinfold/unique_fd.hpp"
#include "policy/policy.hpp"
#include "run_state.hpp"
#include "runtime_paths.hpp"
#include "steering_programs.hpp"
#include "trust_bundle.hpp"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace pinfold::loader {

namespace {

constexpr int exit_internal = 125;
constexpr int exit_timeout = 124;   // as timeout(1)

std::shared_ptr<spdlog::logger> log()
{
    static auto logger = [] {
        auto l = spdlog::get("sandbox");
        return l ? l : spdlog::default_logger()->clone("sandbox");
    }();
    return logger;
}

Result<std::uint64_t> own_netns_cookie()
{
    UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (sock.get() < 0)
        return fail_errno("socket");
    std::uint64_t cookie = 0;
    socklen_t len = sizeof cookie;
    if (::getsockopt(sock.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0)
        return fail_errno("SO_NETNS_COOKIE (needs Linux 5.14)");
    return cookie;
}

std::string proxy_binary(const RunOptions& options)
{
    if (!options.proxy_path.empty())
        return options.proxy_path;
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    return (self.parent_path() / "pinfold-proxy").string();
}

Result<std::string> read_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return fail_errno("cannot read " + path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

const char* event_name(std::uint32_t kind)
{
    switch (kind) {
    case PF_EV_CONNECT_DENIED: return "connect";
    case PF_EV_SENDMSG_DENIED: return "sendmsg";
    case PF_EV_SOCKET_DENIED: return "socket";
    case PF_EV_BIND_DENIED: return "bind";
    case PF_EV_INBOUND_DENIED: return "inbound";
    default: return "kernel";
    }
}

const char* deny_reason(std::uint32_t reason)
{
    switch (reason) {
    case PF_DENY_NO_SANDBOX: return "no configured sandbox for this cgroup (fail closed)";
    case PF_DENY_FOREIGN_NETNS: return "connect from another network namespace";
    case PF_DENY_NOT_TCP: return "only TCP connections can be steered into the proxy";
    case PF_DENY_SOCKET_KIND: return "socket kind cannot be steered (raw, SCTP, MPTCP, ICMP, ...)";
    case PF_DENY_UDP: return "UDP datagrams are refused (DNS to port 53 goes to pinfold's resolver)";
    case PF_DENY_BIND: return "binds to addresses other than loopback are refused";
    case PF_DENY_INBOUND: return "connection or datagram to a sandbox socket from outside the sandbox";
    case PF_DENY_ABSTRACT_UNIX: return "abstract unix sockets (the host's) are out of reach";
    default: return "refused by the kernel hooks";
    }
}

AuditRecord record_of(const pf_event& ev)
{
    AuditRecord r;
    r.event = event_name(ev.kind);
    r.verdict = "deny";
    r.sandbox = ev.sandbox_id;
    r.pid = ev.pid;
    r.uid = ev.uid;
    r.cgroup = ev.cgroup_id;
    MappedAddress addr{};
    std::memcpy(addr.data(), ev.addr, addr.size());
    if (ev.kind != PF_EV_SOCKET_DENIED && ev.family != AF_UNIX)
        r.destination = endpoint_text(addr, ev.port);
    r.reason = deny_reason(ev.reason);
    if (ev.kind == PF_EV_SOCKET_DENIED)
        r.reason += " (family " + std::to_string(ev.family) + ", type " + std::to_string(ev.sock_type) +
                    ", protocol " + std::to_string(ev.protocol) + ")";
    return r;
}

Result<int> open_audit(const std::string& path)
{
    int fd = path.empty() ? ::fcntl(2, F_DUPFD_CLOEXEC, 3)
                          : ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return fail_errno("open audit log " + (path.empty() ? std::string("(stderr)") : path));
    return fd;
}

Result<int> policy_memfd(const std::string& text)
{
    int fd = ::memfd_create("pinfold-policy", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return fail_errno("memfd_create");
    if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
        auto err = fail_errno("write policy memfd");
        ::close(fd);
        return err;
    }
    // The proxy gets a read-only view that nobody can change under it.
    ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
    return fd;
}

// Waits for the proxy's "PORT DNS_PORT\n" (or its death), bounded in time.
Result<std::uint16_t> wait_for_proxy(int ready_fd, const ChildProcess& proxy, std::uint16_t& dns_port)
{
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (line.find('\n') == std::string::npos) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return fail("the proxy did not become ready within 10 s");
        pollfd fds[2] = {{ready_fd, POLLIN, 0}, {proxy.pidfd(), POLLIN, 0}};
        int n = ::poll(fds, 2, static_cast<int>(left.count()));
        if (n < 0 && errno != EINTR)
            return fail_errno("poll");
        if (fds[0].revents & (POLLIN | POLLHUP)) {
            char buf[32];
            ssize_t got = ::read(ready_fd, buf, sizeof buf);
            if (got > 0)
                line.append(buf, static_cast<std::size_t>(got));
            else if (got == 0)
                return fail("the proxy exited before it was ready (its error is above)");
        } else if (fds[1].revents & POLLIN) {
            return fail("the proxy exited before it was ready (its error is above)");
        }
    }
    int port = std::atoi(line.c_str());
    if (port <= 0 || port > 65535)
        return fail("the proxy reported an invalid port '" + line + "'");
    auto space = line.find(' ');
    int dns = space == std::string::npos ? -1 : std::atoi(line.c_str() + space + 1);
    if (dns <= 0 || dns > 65535)
        return fail("the proxy reported no resolver port in '" + line + "'");
    dns_port = static_cast<std::uint16_t>(dns);
    return static_cast<std::uint16_t>(port);
}

// Everything a run owns, declared so that destruction runs in the safe
// order: the command's cgroup dies first, the links last.
struct Run {
    std::optional<RunState> state;
    std::optional<CgroupDir> run_cgroup;
    std::unique_ptr<SteeringPrograms> programs;
    std::optional<CgroupDir> proxy_cgroup;
    std::optional<CgroupDir> sandbox_cgroup;
    std::optional<ContainerCgroup> container;   // container mode: no cgroup of our own
    std::optional<ResourceLimits> limits;
    std::optional<ChildProcess> proxy;
    std::optional<ChildProcess> command;
    std::optional<ExeLookupService> exe_lookup;   // degraded identity only
    // Write end of the proxy's stop pipe: closing it asks the proxy to
    // flush its batched audit records and exit.
    std::optional<UniqueFd> proxy_stop;
};

// The cgroup the hooks police: the run's sandbox cgroup, or in container
// mode the container's own.
std::uint64_t sandbox_id_of(const Run& run)
{
    return run.container ? run.container->id : run.sandbox_cgroup->id();
}

// Kills the job's processes: its cgroup, or in container mode (a read-only
// cgroup tree: no cgroup.kill) every descendant of ours but the proxy.
Result<void> kill_job(const Run& run, std::chrono::milliseconds timeout)
{
    if (run.sandbox_cgroup)
        return run.sandbox_cgroup->kill_all(timeout);
    if (run.container && run.command)
        return kill_descendants(run.proxy ? run.proxy->pid() : 0, run.command->pid(), timeout);
    return {};
}

// Stops the command and everything it left, then the proxy; what remains
// (links, pins, cgroups) goes with the Run's destructors.
void teardown(Run& run, AuditLog& audit)
{
    bool job_gone = true;
    if (auto r = kill_job(run, std::chrono::seconds(5)); !r) {
        log()->warn("{}", r.error().what());
        job_gone = false;
    }
    if (run.command)
        run.command->reap();
    if (run.container && !job_gone) {
        // Container mode kills by walking /proc, which a process forking
        // fast enough can outrun. Whatever is left must stay policed: keep
        // the programs and the sandbox's entry, steering into a proxy that
        // is about to stop. The container keeps no network until it ends.
        log()->error("container mode: processes of the job outlived the run; the programs stay attached and the "
                     "container keeps no network");
        if (run.programs)
            run.programs->keep_attached();
    } else if (run.programs && (run.sandbox_cgroup || run.container)) {
        run.programs->remove_sandbox(sandbox_id_of(run));
    }
    if (run.proxy && !run.proxy->exited()) {
        // The stop pipe reaches the proxy even when a signal cannot; it
        // flushes its audit batch and exits at once (bounded: a wedged
        // proxy is killed below).
        bool stopped = false;
        if (run.proxy_stop) {
            run.proxy_stop.reset();
            pollfd pfd{run.proxy->pidfd(), POLLIN, 0};
            stopped = ::poll(&pfd, 1, 2000) == 1;
            if (stopped)
                log()->debug("the proxy stopped when asked (audit flushed)");
            else
                log()->warn("the proxy did not stop within 2 s of being asked; killing it");
        }
        // Without capabilities a root pinfold cannot signal the proxy
        // (uid nobody): then waiting for a SIGTERM that never went out
        // would only add its timeout to every run. Its cgroup can still be
        // killed.
        if (!stopped && run.proxy->signal(SIGTERM)) {
            pollfd pfd{run.proxy->pidfd(), POLLIN, 0};
            ::poll(&pfd, 1, 2000);
            run.proxy->signal(SIGKILL);
        }
        if (run.proxy_cgroup)
            (void)run.proxy_cgroup->kill_all(std::chrono::seconds(2));
        run.proxy->reap();
    }
    if (run.programs)
        run.programs->drain_events();
    (void)audit;
}

bool proxy_has_exited(const ChildProcess& proxy)
{
    pollfd p{proxy.pidfd(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

// Fail closed: without the proxy the sandbox has no network anyway
// (connects land on a closed port); the run ends loudly.
int end_run_without_proxy(ChildProcess& proxy, AuditLog& audit)
{
    auto status = proxy.try_reap();
    AuditRecord r;
    r.event = "proxy";
    r.verdict = "deny";
    r.reason = "proxy exited (status " + std::to_string(status ? exit_code_of(*status) : -1) + "); ending the run";
    audit.write(r);
    log()->error("{}", r.reason);
    return exit_internal;
}

int run_loop(Run& run, AuditLog& audit, int signal_fd, int timer_fd)
{
    ChildProcess& command = *run.command;
    ChildProcess& proxy = *run.proxy;
    int listener = command.seccomp_listener();
    for (;;) {
        pollfd fds[7] = {
            {signal_fd, POLLIN, 0},
            {command.pidfd(), POLLIN, 0},
            {proxy.pidfd(), POLLIN, 0},
            {run.programs->events_fd(), POLLIN, 0},
            {timer_fd, POLLIN, 0},
            {listener, POLLIN, 0},
            {run.exe_lookup ? run.exe_lookup->fd() : -1, POLLIN, 0},
        };
        int n = ::poll(fds, 7, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log()->error("poll: {}", std::strerror(errno));
            return exit_internal;
        }
        if (fds[3].revents & POLLIN)
            run.programs->drain_events();
        if (fds[6].revents & POLLIN)
            run.exe_lookup->serve();
        if (fds[0].revents & POLLIN) {
            signalfd_siginfo info{};
            if (::read(signal_fd, &info, sizeof info) == sizeof info) {
                log()->info("forwarding signal {} to the command", info.ssi_signo);
                command.signal(static_cast<int>(info.ssi_signo));
            }
        }
        // The proxy's end is looked at before the command's: a command that
        // ends right after the proxy died (its connects were refused) must
        // not turn the run into a success.
        if ((fds[2].revents & POLLIN) || (fds[1].revents & POLLIN && proxy_has_exited(proxy)))
            return end_run_without_proxy(proxy, audit);
        if (fds[1].revents & POLLIN) {
            if (auto status = command.try_reap())
                return exit_code_of(*status);
        }
        if (fds[5].revents & POLLIN) {
            if (auto call = refuse_notified_call(listener)) {
                AuditRecord r;
                r.event = "syscall";
                r.verdict = "deny";
                r.sandbox = sandbox_id_of(run);
                r.cgroup = sandbox_id_of(run);
                r.pid = call->pid;
                r.reason = "refused by the sandbox's seccomp filter: " + describe_refused_call(*call);
                audit.write(r);
                log()->info("{}", r.reason);
            }
        } else if (fds[5].revents & (POLLHUP | POLLERR)) {
            listener = -1;   // no filtered process is left; poll ignores -1
        }
        if (fds[4].revents & POLLIN) {
            // The whole sandbox goes, not just the command: cgroup.kill.
            AuditRecord r;
            r.event = "timeout";
            r.verdict = "deny";
            r.sandbox = sandbox_id_of(run);
            r.reason = "the run reached its --timeout; every process of the sandbox was killed";
            audit.write(r);
            log()->error("{}", r.reason);
            if (auto k = kill_job(run, std::chrono::seconds(5)); !k)
                log()->warn("{}", k.error().what());
            command.reap();
            return exit_timeout;
        }
    }
}

int run_sandbox_checked(const RunOptions& options)
{
    // 1. Everything that can be validated is validated before the kernel
    //    is touched: nothing is half-applied on bad input.
    auto policy_text = read_file(options.policy_path);
    if (!policy_text) {
        log()->error("{}", policy_text.error().what());
        return exit_internal;
    }
    auto parsed = policy::parse_policy(*policy_text, options.policy_path);
    if (!parsed) {
        log()->error("{}", parsed.error().what());
        return exit_internal;
    }
    for (const auto& warning : parsed->warnings)
        log()->warn("{}", warning);
    // binaries: are resolved here, with the sandbox's PATH and our view of
    // the files, and handed to the proxy (which may not even see them).
    std::vector<std::string> binary_warnings;
    auto binaries = policy::resolve_policy_binaries(*parsed, sandbox_binary_search(), binary_warnings);
    if (!binaries) {
        log()->error("{}", binaries.error().what());
        return exit_internal;
    }
    for (const auto& warning : binary_warnings)
        log()->warn("{}", warning);
    if (auto compiled = policy::CompiledPolicy::compile(*parsed, *binaries); !compiled) {
        log()->error("{}", compiled.error().what());
        return exit_internal;
    }
    bool capture_exe = exe_capture_permitted();
    if (!capture_exe)
        log()->warn("executable identity cannot be captured at connect time (loading the capture needs "
                    "CAP_PERFMON): binaries: rules cannot be enforced by the kernel");
    if (auto r = check_identity_capability(*parsed, capture_exe, options.allow_degraded_identity); !r) {
        log()->error("{}", r.error().what());
        return exit_internal;
    }
    // Secrets are read once, here; only the proxy ever gets them.
    auto credentials = load_credentials(options.providers, options.services, *parsed);
    if (!credentials) {
        log()->error("{}", credentials.error().what());
        return exit_internal;
    }
    if (!credentials->set.empty() && !options.sandbox.enabled) {
        // Without the namespace sandbox CMD inherits our environment and
        // sees our files: the secret would be in reach.
        log()->error("--provider needs the namespace sandbox (not --sandbox off)");
        return exit_internal;
    }
    // Where this run keeps its state (root's system directories, or a
    // delegated user's): checked now, created only once all input is valid.
    auto cgroup2_mount = find_cgroup2_root();
    if (!cgroup2_mount) {
        log()->error("{}", cgroup2_mount.error().what());
        return exit_internal;
    }
    auto locations = resolve_runtime_locations(options.locations, *cgroup2_mount);
    if (!locations) {
        log()->error("{}", locations.error().what());
        return exit_internal;
    }
    // Named now so the sandbox plan can carry its variables; written once
    // the proxy has made the CA.
    TrustBundle trust = plan_trust_bundle("run-" + std::to_string(::getpid()), locations->trust_parent);
    std::optional<WrittenTrustBundle> trust_files;
    // The policy's limits (the agent profile) unless a flag says otherwise.
    SandboxLimits limits_wanted = options.sandbox.limits;
    if (options.sandbox.enabled) {
        limits_wanted.cpus = limits_wanted.cpus ? limits_wanted.cpus : parsed->limits.cpus;
        limits_wanted.memory_bytes = limits_wanted.memory_bytes ? limits_wanted.memory_bytes : parsed->limits.memory_bytes;
        limits_wanted.pids = limits_wanted.pids ? limits_wanted.pids : parsed->limits.pids;
    } else if (parsed->limits.cpus || parsed->limits.memory_bytes || parsed->limits.pids) {
        log()->warn("--sandbox off: the policy's cpus, memory and pids limits are not applied");
    }
    if (!limits_wanted.timeout)
        limits_wanted.timeout = parsed->limits.timeout;
    std::optional<SandboxPlan> sandbox_plan;
    if (options.sandbox.enabled) {
        // Clients that ignore the variables read the distribution's path.
        std::vector<MountStep> trust_mounts;
        if (::access(std::string(system_ca_bundle).c_str(), F_OK) == 0)
            trust_mounts.push_back({MountKind::bind_ro, trust.bundle_path, std::string(system_ca_bundle), {}});
        std::vector<std::string> sandbox_env = trust.environment();
        sandbox_env.insert(sandbox_env.end(), credentials->sandbox_env.begin(), credentials->sandbox_env.end());
        SandboxOptions sandbox_options = options.sandbox;
        sandbox_options.state_paths = locations->hidden;
        sandbox_options.user_runtime_dir = locations->user_runtime_dir;
        sandbox_options.revealed_dir = trust.directory;
        auto plan = make_sandbox_plan(sandbox_options, sandbox_env, trust_mounts);
        if (!plan) {
            log()->error("{}", plan.error().what());
            return exit_internal;
        }
        if (auto r = check_sandbox_environment(credentials->set, plan->env); !r) {
            log()->error("{}", r.error().what());
            return exit_internal;
        }
        sandbox_plan.emplace(std::move(*plan));
    }
    // Roots for the proxy's upstream TLS, read here: the proxy opens no file.
    auto upstream_roots = read_file(options.upstream_ca_path.empty() ? std::string(system_ca_bundle)
                                                                     : options.upstream_ca_path);
    if (!upstream_roots) {
        log()->error("--upstream-ca: {}", upstream_roots.error().what());
        return exit_internal;
    }
    // Where the sandbox's allowed DNS queries go: read here, the proxy
    // opens no file.
    std::string dns_upstream = options.dns_upstream;
    if (dns_upstream.empty()) {
        auto resolv = read_file("/etc/resolv.conf");
        auto upstream = resolv ? dns::first_nameserver(*resolv) : std::unexpected(resolv.error());
        if (!upstream) {
            log()->error("DNS upstream: {}", upstream.error().what());
            return exit_internal;
        }
        dns_upstream = *upstream;
    }
    std::string proxy_path = proxy_binary(options);
    if (::access(proxy_path.c_str(), X_OK) != 0) {
        log()->error("cannot execute the proxy {}: {}", proxy_path, std::strerror(errno));
        return exit_internal;
    }
    auto audit_fd = open_audit(options.audit_path);
    if (!audit_fd) {
        log()->error("{}", audit_fd.error().what());
        return exit_internal;
    }
    AuditLog audit(*audit_fd);

    auto cgroup_root = find_cgroup2_root();
    if (!cgroup_root) {
        log()->error("{}", cgroup_root.error().what());
        return exit_internal;
    }
    // A read-only cgroup2 mount: container mode (container_mode.hpp).
    auto container = detect_container_mode(*cgroup_root);
    if (!container) {
        log()->error("{}", container.error().what());
        return exit_internal;
    }
    if (auto r = *container ? check_container_sandbox(options.sandbox.enabled) : Result<void>{}; !r) {
        log()->error("{}", r.error().what());
        return exit_internal;
    }
    if (*container && !capture_exe && options.allow_degraded_identity) {
        // The kernel records host-wide pids; this container's /proc numbers
        // its own, so a lookup would read whichever process holds that
        // number here - one the job can arrange to be an allowed binary.
        log()->error("container mode: --allow-degraded-identity cannot be used: the recorded pids are the host's, "
                     "not this container's; give the container CAP_PERFMON for kernel-captured identity");
        return exit_internal;
    }
    if (auto r = check_unconfined_command(options.sandbox.enabled, options.trusted_command, ::geteuid() == 0,
                                          container->has_value());
        !r) {
        log()->error("{}", r.error().what());
        return exit_internal;
    }
    if (auto r = check_private_netns_mode(options.allow_private_netns, options.sandbox.enabled, container->has_value()); !r) {
        log()->error("{}", r.error().what());
        return exit_internal;
    }
    const RunPaths& paths = locations->run;
    const std::string cgroup_prefix =
        locations->cgroup_parent_relative.empty() ? "" : locations->cgroup_parent_relative + "/";
    if (auto r = *container ? Result<void>{} : prepare_runtime_locations(*locations); !r) {
        log()->error("{}", r.error().what());
        return exit_internal;
    }
    if (int stale = *container ? 0 : clean_stale_runs(paths); stale > 0)
        log()->info("removed {} stale run(s)", stale);

    // Signals are taken over before any child exists, so none is lost
    // between spawning the command and entering the loop.
    sigset_t forwarded;
    sigemptyset(&forwarded);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2})
        sigaddset(&forwarded, sig);
    ::sigprocmask(SIG_BLOCK, &forwarded, nullptr);
    UniqueFd signal_fd(::signalfd(-1, &forwarded, SFD_CLOEXEC));
    if (signal_fd.get() < 0) {
        log()->error("signalfd: {}", std::strerror(errno));
        return exit_internal;
    }

    Run run;
    auto fail_run = [&](const Error& e) {
        log()->error("{}", e.what());
        teardown(run, audit);
        return exit_internal;
    };
    std::string run_name = "run-" + std::to_string(::getpid());
    if (*container) {
        run.container.emplace(std::move(**container));
        bool limits_requested = limits_wanted.cpus || limits_wanted.memory_bytes || limits_wanted.pids;
        for (const auto& what : container_mode_limitations(limits_requested, options.sandbox.enabled)) {
            log()->warn("{}", what);
            AuditRecord r;
            r.event = "container-mode";
            r.verdict = "info";
            r.sandbox = run.container->id;
            r.reason = what;
            audit.write(r);
        }
    } else {
    auto state = RunState::create(paths, run_name);
    if (!state)
        return fail_run(state.error());
    run.state.emplace(std::move(*state));
    auto run_cgroup = CgroupDir::create(*cgroup_root, cgroup_prefix + run_name);
    if (!run_cgroup)
        return fail_run(run_cgroup.error());
    run.run_cgroup.emplace(std::move(*run_cgroup));
    if (auto r = run.state->note_cgroup(run.run_cgroup->id()); !r)
        return fail_run(r.error());
    auto proxy_cgroup = CgroupDir::create(*cgroup_root, cgroup_prefix + run_name + "/proxy");
    if (!proxy_cgroup)
        return fail_run(proxy_cgroup.error());
    run.proxy_cgroup.emplace(std::move(*proxy_cgroup));
    auto sandbox_cgroup = CgroupDir::create(*cgroup_root, cgroup_prefix + run_name + "/sandbox");
    if (!sandbox_cgroup)
        return fail_run(sandbox_cgroup.error());
    run.sandbox_cgroup.emplace(std::move(*sandbox_cgroup));
    auto limits = ResourceLimits::apply(limits_wanted, *cgroup_root, run.sandbox_cgroup->path(), run_name,
                                        paths.lock_dir);
    if (!limits)
        return fail_run(limits.error());
    run.limits.emplace(std::move(*limits));
    log()->info("limits: {}", run.limits->describe());
    } // host mode
    unsigned sandbox_level = run.container ? run.container->level : run.sandbox_cgroup->level();
    int sandbox_cgroup_fd = run.container ? run.container->fd : run.sandbox_cgroup->fd();

    // 3. The proxy, in its own cgroup, without capabilities. In host mode it
    //    starts here, before the programs are loaded (step 2), and gets the maps over
    //    `handover` once they are (pinfold/proxy_handover.hpp): its start
    //    overlaps the load. It opens no socket and reports no readiness
    //    before that, and nothing of the command runs before its readiness.
    //    Container mode shares one cgroup with the job and pinfold: the
    //    proxy starts after the attach, with every fd on its command line.
    struct ProxyStart {
        UniqueFd ready_read;
        UniqueFd ca_read;
        UniqueFd handover;   // our end; -1 without a handover
        SpawnSpec spec;     // its exec is confirmed after the load
    };
    auto start_proxy = [&](bool handover) -> Result<ProxyStart> {
        UniqueFd handover_theirs;
        UniqueFd handover_ours;
        if (handover) {
            int pair[2];
            if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
                return std::unexpected(Error{errno, "socketpair"});
            handover_ours = UniqueFd(pair[0]);
            handover_theirs = UniqueFd(pair[1]);
        }
        auto memfd = policy_memfd(*policy_text);
        if (!memfd)
            return std::unexpected(memfd.error());
        UniqueFd policy_fd(*memfd);
        auto binaries_memfd = policy_memfd(policy::serialize_binary_table(*binaries));
        if (!binaries_memfd)
            return std::unexpected(binaries_memfd.error());
        UniqueFd binaries_fd(*binaries_memfd);
        int ready_pipe[2];
        if (::pipe2(ready_pipe, O_CLOEXEC) != 0)
            return std::unexpected(Error{errno, "pipe"});
        ProxyStart started;
        started.ready_read = UniqueFd(ready_pipe[0]);
        UniqueFd ready_write(ready_pipe[1]);
        UniqueFd proxy_audit(::fcntl(*audit_fd, F_DUPFD_CLOEXEC, 3));
        if (proxy_audit.get() < 0)
            return std::unexpected(Error{errno, "dup audit fd"});
        SpawnSpec proxy_spec;
        proxy_spec.argv = {proxy_path,
                           handover ? "--handover-fd" : "--origin-map-fd",
                           std::to_string(handover ? handover_theirs.get() : run.programs->origin_map_fd()),
                           "--audit-fd", std::to_string(proxy_audit.get()),
                           "--policy-fd", std::to_string(policy_fd.get()),
                           "--policy-source", options.policy_path,
                           "--ready-fd", std::to_string(ready_write.get()),
                           "--sandbox-id", std::to_string(sandbox_id_of(run)),
                           "--log-level", options.log_level};
        for (const auto& host : options.hosts) {
            proxy_spec.argv.push_back("--host");
            proxy_spec.argv.push_back(host);
        }
        for (const auto& host : credentials->service_hosts) {
            proxy_spec.argv.push_back("--host");
            proxy_spec.argv.push_back(host);
        }
        proxy_spec.argv.insert(proxy_spec.argv.end(), {"--dns-upstream", dns_upstream});
        proxy_spec.argv.insert(proxy_spec.argv.end(), {"--binaries-fd", std::to_string(binaries_fd.get())});
        if (options.busy_poll_us > 0)
            proxy_spec.argv.insert(proxy_spec.argv.end(), {"--busy-poll-us", std::to_string(options.busy_poll_us)});
        if (!handover && !capture_exe)
            proxy_spec.argv.push_back("--degraded-identity");
        proxy_spec.cgroup_fd = run.proxy_cgroup ? run.proxy_cgroup->fd() : -1;
        proxy_spec.inherit_fds = {handover ? handover_theirs.get() : run.programs->origin_map_fd(), proxy_audit.get(),
                                  policy_fd.get(), ready_write.get()};
        int stop_pipe[2];
        if (::pipe2(stop_pipe, O_CLOEXEC) != 0)
            return std::unexpected(Error{errno, "pipe"});
        UniqueFd stop_read(stop_pipe[0]);
        run.proxy_stop.emplace(stop_pipe[1]);
        proxy_spec.argv.insert(proxy_spec.argv.end(), {"--stop-fd", std::to_string(stop_read.get())});
        proxy_spec.inherit_fds.push_back(stop_read.get());
        // The proxy makes the run CA and sends back its certificate only.
        auto roots_memfd = policy_memfd(*upstream_roots);
        if (!roots_memfd)
            return std::unexpected(roots_memfd.error());
        UniqueFd roots_fd(*roots_memfd);
        int ca_pipe[2];
        if (::pipe2(ca_pipe, O_CLOEXEC) != 0)
            return std::unexpected(Error{errno, "pipe"});
        started.ca_read = UniqueFd(ca_pipe[0]);
        UniqueFd ca_write(ca_pipe[1]);
        proxy_spec.argv.insert(proxy_spec.argv.end(), {"--upstream-ca-fd", std::to_string(roots_fd.get()),
                                                        "--ca-out-fd", std::to_string(ca_write.get())});
        proxy_spec.inherit_fds.push_back(roots_fd.get());
        // Secrets: a sealed memfd, like the policy; never argv or environment.
        auto credentials_memfd = credentials->set.empty() ? Result<int>(-1) : policy_memfd(credentials->set.serialize());
        if (!credentials_memfd)
            return std::unexpected(credentials_memfd.error());
        UniqueFd credentials_fd(*credentials_memfd);
        if (credentials_fd.get() >= 0) {
            proxy_spec.argv.insert(proxy_spec.argv.end(), {"--credentials-fd", std::to_string(credentials_fd.get())});
            proxy_spec.inherit_fds.push_back(credentials_fd.get());
        }
        proxy_spec.inherit_fds.push_back(binaries_fd.get());
        proxy_spec.inherit_fds.push_back(ca_write.get());
        if (!handover && run.exe_lookup) {
            proxy_spec.argv.insert(proxy_spec.argv.end(), {"--exe-lookup-fd", std::to_string(run.exe_lookup->proxy_fd())});
            proxy_spec.inherit_fds.push_back(run.exe_lookup->proxy_fd());
        }
        if (run.container) {
            // It shares the job's cgroup: it marks its own sockets. Without
            // CAP_SETUID (a container with only the three capabilities) it keeps
            // the uid and loses every capability.
            proxy_spec.argv.insert(proxy_spec.argv.end(),
                                   {"--exempt-map-fd", std::to_string(run.programs->exempt_map_fd())});
            proxy_spec.inherit_fds.push_back(run.programs->exempt_map_fd());
            proxy_spec.drop_privileges = can_run_proxy_as_nobody();
            proxy_spec.strip_capabilities = !proxy_spec.drop_privileges;
        } else {
            proxy_spec.drop_privileges = true;
        }
        proxy_spec.stdin_null = true;
        proxy_spec.defer_exec_check = handover;
        auto proxy = ChildProcess::spawn(proxy_spec);
        if (!proxy)
            return std::unexpected(proxy.error());
        run.proxy.emplace(std::move(*proxy));
        if (!handover && run.exe_lookup)
            run.exe_lookup->close_proxy_end();
        stop_read.reset();
        ready_write.reset();
        policy_fd.reset();
        binaries_fd.reset();
        roots_fd.reset();
        credentials_fd.reset();
        ca_write.reset();
        proxy_audit.reset();
        handover_theirs.reset();
        started.handover = std::move(handover_ours);
        started.spec = std::move(proxy_spec);
        return started;
    };
    std::optional<ProxyStart> proxy_start;
    if (!run.container) {
        auto started = start_proxy(true);
        if (!started)
            return fail_run(started.error());
        proxy_start.emplace(std::move(*started));
    }

    // The command's spec, and in host mode its sandbox: namespaces, mounts
    // and seccomp are built now, while the programs load; the command
    // itself is held until they are attached and the proxy is ready (step
    // 4). Its mounts bind the trust bundle, so the (empty) files exist
    // first and are filled in place once the proxy has made the CA.
    SpawnSpec command_spec;
    command_spec.argv = options.command;
    command_spec.cgroup_fd = run.container ? -1 : run.sandbox_cgroup->fd();
    if (run.container) {
        // Same uid as pinfold (no CAP_SETUID here): without capabilities it
        // can neither load programs of its own nor ptrace us or the proxy.
        command_spec.strip_capabilities = true;
    }
    command_spec.ptrace_confined =
        private_netns_needs_confinement(options.allow_private_netns, options.sandbox.enabled, run.container.has_value());
    if (sandbox_plan) {
        command_spec.sandbox = &*sandbox_plan;
        command_spec.before_start = [&run](pid_t pid) {
            return run.limits ? run.limits->place(pid) : Result<void>{};
        };
    }
    auto command_failed = [&](const Error& e) {
        bool not_executed = e.message.starts_with("cannot execute ");
        int code = !not_executed ? exit_internal : e.code == ENOENT ? 127 : 126;
        log()->error("{}", e.what());
        teardown(run, audit);
        return code;
    };
    if (sandbox_plan && !run.container) {
        if (auto r = create_trust_bundle_files(trust, paths.lock_dir, system_ca_bundle); !r)
            return fail_run(r.error());
        trust_files.emplace(trust);
        command_spec.hold_command = true;
        auto command = ChildProcess::spawn(command_spec);
        if (!command)
            return command_failed(command.error());
        run.command.emplace(std::move(*command));
    }

    // 2. Programs are attached before anything of the job runs in the
    //    cgroups (a held sandbox's init is pinfold's code and opens no
    //    socket), and the sandbox has no configuration until the proxy is
    //    ready: a connect before that is refused, never let through.
    // The BTF subset is root's only (core_btf_cache.hpp): a non-root
    // runtime directory is writable by every process of the user. Container
    // mode keeps no state of its own on the host.
    const std::string btf_cache_dir = run.container || ::geteuid() != 0 ? std::string() : paths.lock_dir;
    auto programs = SteeringPrograms::load(sandbox_level, capture_exe, btf_cache_dir);
    if (!programs && capture_exe) {
        // A kernel without the BTF the capture relocates against, say.
        log()->warn("cannot load the executable identity capture ({}); loading without it",
                    programs.error().what());
        capture_exe = false;
        if (auto r = check_identity_capability(*parsed, false, options.allow_degraded_identity); !r)
            return fail_run(r.error());
        programs = SteeringPrograms::load(sandbox_level, false, btf_cache_dir);
    }
    if (!programs)
        return fail_run(programs.error());
    run.programs = std::move(*programs);
    if (!capture_exe && options.allow_degraded_identity) {
        // The proxy cannot read /proc/<pid>/exe of the sandbox; we answer.
        auto lookup = ExeLookupService::create();
        if (!lookup)
            return fail_run(lookup.error());
        run.exe_lookup.emplace(std::move(*lookup));
        log()->warn("degraded identity: binaries: rules are matched against /proc/<pid>/exe when the proxy "
                    "accepts, which a process that connects and then execs an allowed binary defeats "
                    "(docs/identity.md)");
    }
    // Container mode: one cgroup for all, whose hooks include the sockops
    // the proxy side needs; no pins.
    std::string pin_dir = run.state ? run.state->pin_dir() : std::string();
    if (run.proxy_cgroup) {
        if (auto r = run.programs->attach_proxy(run.proxy_cgroup->fd(), pin_dir); !r)
            return fail_run(r.error());
    }
    if (auto r = run.programs->attach_sandbox(sandbox_cgroup_fd, pin_dir); !r)
        return fail_run(r.error());
    if (auto r = run.programs->open_events([&audit](const pf_event& ev) { audit.write(record_of(ev)); }); !r)
        return fail_run(r.error());

    if (proxy_start) {
        if (auto r = run.proxy->confirm_exec(proxy_start->spec); !r)
            return fail_run(r.error());
        ProxyHandover maps;
        maps.origin_map_fd = run.programs->origin_map_fd();
        maps.degraded_identity = !capture_exe;
        maps.exe_lookup_fd = run.exe_lookup ? run.exe_lookup->proxy_fd() : -1;
        if (auto r = send_proxy_handover(proxy_start->handover.get(), maps); !r) {
            bool gone = r.error().code == EPIPE || r.error().code == ECONNRESET;
            return fail_run(gone ? Error{0, "the proxy exited before it was ready (its error is above)"} : r.error());
        }
        proxy_start->handover.reset();
        if (run.exe_lookup)
            run.exe_lookup->close_proxy_end();
    } else {
        auto started = start_proxy(false);
        if (!started)
            return fail_run(started.error());
        proxy_start.emplace(std::move(*started));
    }
    std::uint16_t dns_port = 0;
    auto port = wait_for_proxy(proxy_start->ready_read.get(), *run.proxy, dns_port);
    if (!port)
        return fail_run(port.error());
    // Written before the proxy reported ready, and its end is closed: the
    // read ends at EOF without waiting.
    std::string ca_pem;
    for (char buf[4096];;) {
        ssize_t got = ::read(proxy_start->ca_read.get(), buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0 || ca_pem.size() > 65536)
            break;
        ca_pem.append(buf, static_cast<std::size_t>(got));
    }
    if (auto r = trust_files ? fill_trust_bundle(trust, ca_pem)
                             : write_trust_bundle(trust, ca_pem, system_ca_bundle, paths.lock_dir);
        !r)
        return fail_run(r.error());
    if (!trust_files)
        trust_files.emplace(trust);
    // Without the namespace sandbox CMD inherits this environment.
    for (const std::string& entry : trust.environment()) {
        auto eq = entry.find('=');
        ::setenv(entry.substr(0, eq).c_str(), entry.c_str() + eq + 1, 1);
    }

    auto netns = own_netns_cookie();
    if (!netns)
        return fail_run(netns.error());
    pf_sandbox_config config{};
    config.netns_cookie = *netns;
    config.proxy_port = *port;
    config.dns_port = dns_port;
    if (options.allow_private_netns) {
        config.flags |= PF_SANDBOX_PRIVATE_NETNS;
        AuditRecord r;
        r.event = "private-netns";
        r.verdict = "info";
        r.sandbox = sandbox_id_of(run);
        r.reason = private_netns_notice;
        audit.write(r);
        log()->warn("{}", private_netns_notice);
    }
    if (auto r = run.programs->configure_sandbox(sandbox_id_of(run), config); !r)
        return fail_run(r.error());
    log()->info("sandbox {} steered to proxy port {}", sandbox_id_of(run), *port);

    // 4. The command, born inside the sandbox cgroup (a held sandbox was
    //    built during the load: only its command starts now).
    if (run.container) {
        if (auto r = enter_container_mode(); !r)
            return fail_run(r.error());
    }
    if (run.command) {
        if (auto r = run.command->release(command_spec); !r)
            return command_failed(r.error());
    } else {
        auto command = ChildProcess::spawn(command_spec);
        if (!command)
            return command_failed(command.error());
        run.command.emplace(std::move(*command));
    }
    if (run.exe_lookup) {
        // A command that is already gone leaves nothing to look up: lookups
        // are then refused (fail closed).
        if (auto r = run.exe_lookup->set_sandbox_from(run.command->pid()); !r)
            log()->warn("degraded identity: {}", r.error().what());
    }
    // Everything that needed a capability is done. (A root pinfold with
    // --sandbox off keeps them for debugging; a file-capability one never.)
    if (options.sandbox.enabled || ::geteuid() != 0) {
        if (auto r = drop_own_capabilities(); !r)
            return fail_run(r.error());
    }

    UniqueFd timer_fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC));
    if (timer_fd.get() < 0)
        return fail_run(Error{errno, "timerfd_create"});
    if (auto timeout = limits_wanted.timeout) {
        itimerspec when{};
        when.it_value.tv_sec = static_cast<time_t>(timeout->count() / 1000);
        when.it_value.tv_nsec = static_cast<long>(timeout->count() % 1000) * 1000000L;
        if (::timerfd_settime(timer_fd.get(), 0, &when, nullptr) != 0)
            return fail_run(Error{errno, "timerfd_settime"});
    }

    int code = run_loop(run, audit, signal_fd.get(), timer_fd.get());
    teardown(run, audit);
    for (const auto& what : run.limits ? run.limits->violations() : std::vector<std::string>{}) {
        AuditRecord r;
        r.event = "limit";
        r.verdict = "deny";
        r.sandbox = sandbox_id_of(run);
        r.reason = what;
        audit.write(r);
        log()->error("{}", what);
    }
    return code;
}

} // namespace

int run_sandbox(const RunOptions& options)
{
    try {
        return run_sandbox_checked(options);
    } catch (const std::exception& e) {
        log()->critical("{}", e.what());
        return exit_internal;
    }
}

int check_policies(const CheckOptions& options)
{
    int status = 0;
    for (const auto& path : options.policy_paths) {
        auto parsed = policy::load_policy_file(path);
        if (!parsed) {
            std::cerr << parsed.error().what() << "\n";
            status = 1;
            continue;
        }
        auto compiled = policy::CompiledPolicy::compile(*parsed);
        if (!compiled) {
            std::cerr << compiled.error().what() << "\n";
            status = 1;
            continue;
        }
        bool credentials_failed = false;
        std::string credentials = check_credentials(*parsed, credentials_failed);
        if (credentials_failed)
            status = 1;
        std::cout << path << (credentials_failed ? ": ERRORS\n" : ": OK\n") << policy::describe(*parsed)
                  << policy::describe_tls(*parsed) << credentials;
        for (const auto& warning : parsed->warnings)
            std::cout << "WARNING: " << warning << "\n";
    }
    return status;
}

} // namespace pinfold::loader
