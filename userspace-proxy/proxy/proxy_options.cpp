#include "proxy_options.hpp"

#include <string>

#include <boost/program_options.hpp>

namespace pinfold::proxy {

namespace po = boost::program_options;

Result<ProxyOptions> parse_proxy_options(const std::vector<std::string>& args)
{
    ProxyOptions o;
    po::options_description desc("pinfold-proxy options");
    desc.add_options()
        ("origin-map-fd", po::value(&o.origin_map_fd), "fd of the origin socket-storage map")
        ("handover-fd", po::value(&o.handover_fd),
         "instead of --origin-map-fd: SOCK_SEQPACKET the loader sends the maps over once they are loaded")
        ("audit-fd", po::value(&o.audit_fd)->required(), "fd to append audit JSON lines to")
        ("policy-fd", po::value(&o.policy_fd)->required(), "fd holding the policy YAML")
        ("policy-source", po::value(&o.policy_source)->required(), "policy file name, for messages")
        ("ready-fd", po::value(&o.ready_fd)->required(), "fd to report the listening port on")
        ("stop-fd", po::value(&o.stop_fd), "pipe from the loader; its end (EOF) stops the proxy cleanly")
        ("binaries-fd", po::value(&o.binaries_fd), "fd holding the resolved binaries: table (JSON)")
        ("degraded-identity", po::bool_switch(&o.degraded_identity),
         "no kernel executable identity: say so on every decision")
        ("exe-lookup-fd", po::value(&o.exe_lookup_fd),
         "degraded identity: fd of pinfold's executable lookup (SOCK_SEQPACKET)")
        ("sandbox-id", po::value(&o.sandbox_id)->required(), "cgroup id of the sandbox")
        ("host", po::value(&o.hosts)->composing(), "NAME=ADDR[,ADDR]")
        ("upstream-ca-fd", po::value(&o.upstream_ca_fd), "fd holding PEM roots for upstream TLS")
        ("credentials-fd", po::value(&o.credentials_fd), "fd holding the credential providers and their secrets")
        ("ca-out-fd", po::value(&o.ca_out_fd), "fd to write the run CA certificate (PEM) to")
        ("dns-upstream", po::value(&o.dns_upstream), "ADDR:PORT: serve DNS and forward allowed names there")
        ("log-level", po::value(&o.log_level), "trace|debug|info|warn|error")
        ("busy-poll-us", po::value(&o.busy_poll_us),
         "after events, poll for this many microseconds before sleeping (0-1000; default 0)")
        ("exempt-map-fd", po::value(&o.exempt_map_fd),
         "container mode: fd of the map that exempts this process's own sockets");
    try {
        po::variables_map vm;
        po::store(po::command_line_parser(args).options(desc).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        return fail(std::string("pinfold-proxy: ") + e.what());
    }
    if (auto r = check_busy_poll_us(o.busy_poll_us, "pinfold-proxy"); !r)
        return std::unexpected(r.error());
    if ((o.origin_map_fd >= 0) == (o.handover_fd >= 0))
        return fail("pinfold-proxy: exactly one of --origin-map-fd and --handover-fd is needed");
    return o;
}

} // namespace pinfold::proxy
