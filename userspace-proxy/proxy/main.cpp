// pinfold-proxy: the capability-less L7 proxy. Started by `pinfold run`;
// not meant to be run by hand.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "pinfold/proxy_handover.hpp"
#include "pinfold/socket_exemption.hpp"
#include "policy/policy.hpp"
#include "proxy_options.hpp"
#include "degraded_origin.hpp"
#include "answered_resolver.hpp"
#include "dns/dns_server.hpp"
#include "proxy_server.hpp"
#include "tls/certificate_authority.hpp"

using namespace pinfold;

namespace {

// Writes all of `text` to a pipe, then closes it.
Result<void> write_and_close(int fd, const std::string& text)
{
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            auto err = fail_errno("write CA certificate");
            ::close(fd);
            return err;
        }
        done += static_cast<std::size_t>(n);
    }
    ::close(fd);
    return {};
}

Result<std::string> read_all(int fd)
{
    std::string text;
    char buf[8192];
    off_t offset = 0;
    for (;;) {
        ssize_t n = ::pread(fd, buf, sizeof buf, offset);
        if (n < 0)
            return fail_errno("read policy fd");
        if (n == 0)
            return text;
        text.append(buf, static_cast<std::size_t>(n));
        offset += n;
    }
}

int serve(const proxy::ProxyOptions& options)
{
    auto text = read_all(options.policy_fd);
    ::close(options.policy_fd);
    if (!text) {
        spdlog::error("{}", text.error().what());
        return 1;
    }
    auto parsed = policy::parse_policy(*text, options.policy_source);
    if (!parsed) {
        spdlog::error("{}", parsed.error().what());
        return 1;
    }
    // The loader resolved binaries: with the sandbox's view; this process
    // (uid nobody) might not even be allowed to look at those files.
    auto compiled = [&]() -> Result<policy::CompiledPolicy> {
        if (options.binaries_fd < 0)
            return policy::CompiledPolicy::compile(std::move(*parsed));
        auto table_text = read_all(options.binaries_fd);
        ::close(options.binaries_fd);
        if (!table_text)
            return std::unexpected(table_text.error());
        auto table = policy::parse_binary_table(*table_text);
        if (!table)
            return std::unexpected(table.error());
        return policy::CompiledPolicy::compile(std::move(*parsed), std::move(*table));
    }();
    if (!compiled) {
        spdlog::error("{}", compiled.error().what());
        return 1;
    }
    std::map<std::string, std::vector<MappedAddress>> overrides;
    for (const auto& h : options.hosts) {
        auto parsed_host = proxy::parse_host_override(h);
        if (!parsed_host) {
            spdlog::error("{}", parsed_host.error().what());
            return 1;
        }
        overrides[parsed_host->first] = parsed_host->second;
    }

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    ::sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    int stop_fd = ::signalfd(-1, &stop_signals, SFD_CLOEXEC);
    if (stop_fd < 0) {
        spdlog::error("signalfd: {}", std::strerror(errno));
        return 1;
    }

    // The run CA: its key is made here and lives only in this process's
    // memory (no file, no fd); only the certificate leaves, to the loader.
    auto ca = tls::CertificateAuthority::create();
    if (!ca) {
        spdlog::error("{}", ca.error().what());
        return 1;
    }
    std::string upstream_roots;
    if (options.upstream_ca_fd >= 0) {
        auto roots = read_all(options.upstream_ca_fd);
        ::close(options.upstream_ca_fd);
        if (!roots) {
            spdlog::error("{}", roots.error().what());
            return 1;
        }
        upstream_roots = std::move(*roots);
    }
    // Only a bundle without any certificate is refused here; the roots
    // themselves are parsed after the ready report (below).
    if (options.upstream_ca_fd >= 0 && upstream_roots.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
        spdlog::error("upstream CA: no PEM certificate found");
        return 1;
    }
    if (options.ca_out_fd >= 0) {
        if (auto r = write_and_close(options.ca_out_fd, ca->certificate_pem()); !r) {
            spdlog::error("{}", r.error().what());
            return 1;
        }
    }
    auto credentials = std::make_shared<policy::CredentialSet>();
    if (options.credentials_fd >= 0) {
        auto text = read_all(options.credentials_fd);
        ::close(options.credentials_fd);
        auto set = text ? policy::CredentialSet::parse(*text) : std::unexpected(text.error());
        if (!set) {
            spdlog::error("{}", set.error().what());
            return 1;
        }
        *credentials = std::move(*set);
    }
    // Started before the programs were loaded (pinfold/proxy_handover.hpp):
    // the maps arrive now. No socket of ours exists before this point.
    ProxyHandover maps{options.origin_map_fd, options.exe_lookup_fd, options.degraded_identity};
    if (options.handover_fd >= 0) {
        auto received = receive_proxy_handover(options.handover_fd, options.stop_fd, 60'000);
        ::close(options.handover_fd);
        if (!received) {
            spdlog::error("{}", received.error().what());
            return 1;
        }
        maps = *received;
    }
    if (options.exempt_map_fd >= 0) {
        // The job shares our cgroup (container mode): whoever could read our
        // fds or ptrace us could mark its own sockets. Not dumpable, on top
        // of running as another uid.
        ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        set_exemption_map(options.exempt_map_fd);
    }
    proxy::SocketStorageOrigin kernel_origins(maps.origin_map_fd);
    // Degraded identity: the executable comes from pinfold's /proc lookup
    // when we accept (proxy/degraded_origin.hpp), not from the kernel.
    std::optional<proxy::LoaderExecutableLookup> exe_lookup;
    std::optional<proxy::DegradedIdentityOrigin> degraded_origins;
    if (maps.degraded_identity && maps.exe_lookup_fd >= 0) {
        exe_lookup.emplace(maps.exe_lookup_fd);
        degraded_origins.emplace(kernel_origins, *exe_lookup);
    } else if (maps.degraded_identity) {
        kernel_origins.set_identity_note("degraded: no kernel executable identity (pinfold lacks CAP_PERFMON); "
                                         "binaries: rules admit no connection");
    }
    proxy::OriginSource& origins =
        degraded_origins ? static_cast<proxy::OriginSource&>(*degraded_origins) : kernel_origins;
    // DNS answers given to the sandbox bind names to addresses for the
    // Host check (proxy/answered_resolver.hpp).
    dns::AnswerMemory answers;
    std::unique_ptr<dns::DnsServer> dns_server;
    std::uint16_t dns_port = 0;
    if (!options.dns_upstream.empty()) {
        auto started = dns::start_dns_server(options.dns_upstream, options.sandbox_id, compiled->policy(), overrides,
                                             answers, origins, options.audit_fd);
        if (!started) {
            spdlog::error("{}", started.error().what());
            return 1;
        }
        dns_port = started->second;
        dns_server = std::move(started->first);
    }
    proxy::SystemResolver system_resolver(std::move(overrides));
    proxy::AnsweredResolver resolver(answers, system_resolver);
    AuditLog audit(options.audit_fd);
    proxy::ProxyLimits limits;
    limits.busy_poll = std::chrono::microseconds(options.busy_poll_us);
    proxy::ProxyServer server(origins, resolver, audit, limits);
    server.set_credentials(std::move(credentials));
    // Only an allow rule for https:// can lead to an intercepted session,
    // the one use of the upstream roots; without one they are not parsed at
    // all, and upstream TLS gets no context: were it ever attempted, it
    // would fail (502), never trust.
    const auto& rules = compiled->policy().rules;
    bool upstream_tls_possible = std::any_of(rules.begin(), rules.end(), [](const policy::Rule& r) {
        return r.action == policy::Action::allow && r.endpoint.scheme == "https";
    });
    server.set_policy(options.sandbox_id,
                      std::make_shared<const policy::CompiledPolicy>(std::move(*compiled)));
    auto port = server.listen_loopback();
    if (!port) {
        spdlog::error("{}", port.error().what());
        return 1;
    }
    // "HTTP_PORT DNS_PORT": DNS_PORT is 0 when no resolver runs.
    std::string ready = std::to_string(*port) + " " + std::to_string(dns_port) + "\n";
    if (::write(options.ready_fd, ready.data(), ready.size()) != static_cast<ssize_t>(ready.size())) {
        spdlog::error("cannot report readiness: {}", std::strerror(errno));
        return 1;
    }
    ::close(options.ready_fd);
    spdlog::debug("listening on 127.0.0.1:{} and [::1]:{}", *port, *port);
    if (options.busy_poll_us > 0)
        spdlog::info("busy-polling {} us after events before sleeping", options.busy_poll_us);
    // Parsing the upstream roots (the system bundle: ~150 certificates,
    // 30-70 ms here) was the slowest step of start-up: it now overlaps the
    // sandbox's set-up. Nothing is served before run(); the first
    // connections wait in the listen backlog, none is refused.
    tls::SslCtxPtr upstream_ctx;
    if (upstream_tls_possible) {
        auto made = tls::make_upstream_context(upstream_roots);
        if (!made) {
            spdlog::error("{}", made.error().what());
            return 1;
        }
        upstream_ctx = std::move(*made);
    }
    server.enable_tls(*ca, upstream_ctx.get());
    if (auto r = server.run(stop_fd, options.stop_fd); !r) {
        spdlog::error("{}", r.error().what());
        return 1;
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    auto logger = spdlog::stderr_color_mt("proxy");
    logger->set_pattern("pinfold-proxy: [%l] %v");
    spdlog::set_default_logger(logger);
    try {
        auto options = proxy::parse_proxy_options(std::vector<std::string>(argv + 1, argv + argc));
        if (!options) {
            spdlog::error("{}", options.error().what());
            return 2;
        }
        spdlog::set_level(spdlog::level::from_str(options->log_level));
        int code = serve(*options);
        // serve()'s destructors have flushed the audit, stopped the resolver
        // and closed every socket. What is left are exit handlers, OpenSSL's
        // clean-up of every table it built above all: a large part of the
        // proxy's exit, which the loader waits for at the end of each run.
        // The kernel frees that memory anyway.
        spdlog::shutdown();
        std::fflush(nullptr);
        ::_exit(code);
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }
}
