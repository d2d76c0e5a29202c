// Runs the steering decisions of bpf/lib/steer.h inside the kernel with
// BPF_PROG_TEST_RUN (label `bpf`, needs root). The same header is also the
// one the real hooks use, so a verdict change shows up here first.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>

#include <cstring>
#include <memory>

#include "pinfold_abi.h"
#include "steer_test.skel.h"

namespace {

struct SteerCase {
    pf_sandbox_config config{};
    __u64 netns_cookie = 0;
    __u32 family = 0;
    __u32 type = 0;
    __u32 protocol = 0;
    __u32 has_config = 0;
    __u32 ip6[4] = {};
    __u32 verdict = 0;
    __u32 mapped = 0;
    __u8 addr[PF_ADDR_LEN] = {};
};

struct SkeletonDeleter {
    void operator()(steer_test* s) const { steer_test__destroy(s); }
};

std::unique_ptr<steer_test, SkeletonDeleter> load()
{
    std::unique_ptr<steer_test, SkeletonDeleter> skel(steer_test__open_and_load());
    REQUIRE_MESSAGE(skel, "loading the test programs needs root (CAP_BPF): ", std::strerror(errno));
    return skel;
}

SteerCase run(bpf_program* prog, SteerCase in)
{
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &in, .ctx_size_in = sizeof in);
    int err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts);
    REQUIRE_MESSAGE(err == 0, "BPF_PROG_TEST_RUN: ", std::strerror(-err));
    // Syscall programs write through the context pointer into `in`.
    return in;
}

} // namespace

TEST_CASE("connect verdicts")
{
    auto skel = load();
    SteerCase c;
    c.config.netns_cookie = 42;
    c.config.proxy_port = 3128;
    c.netns_cookie = 42;
    c.type = SOCK_STREAM;
    c.protocol = IPPROTO_TCP;
    c.has_config = 1;
    CHECK(run(skel->progs.test_connect_verdict, c).verdict == 0);

    SteerCase no_config = c;
    no_config.has_config = 0;
    CHECK(run(skel->progs.test_connect_verdict, no_config).verdict == PF_DENY_NO_SANDBOX);

    SteerCase no_port = c;
    no_port.config.proxy_port = 0;
    CHECK(run(skel->progs.test_connect_verdict, no_port).verdict == PF_DENY_NO_SANDBOX);

    SteerCase other_netns = c;
    other_netns.netns_cookie = 43;
    CHECK(run(skel->progs.test_connect_verdict, other_netns).verdict == PF_DENY_FOREIGN_NETNS);

    SteerCase udp = c;
    udp.type = SOCK_DGRAM;
    udp.protocol = IPPROTO_UDP;
    CHECK(run(skel->progs.test_connect_verdict, udp).verdict == PF_DENY_NOT_TCP);

    SteerCase mptcp = c;
    mptcp.protocol = 262;
    CHECK(run(skel->progs.test_connect_verdict, mptcp).verdict == PF_DENY_NOT_TCP);
}

TEST_CASE("private network namespaces pass only when opted in")
{
    enum { deny = 0, proxy = 1, dns = 2, direct = 3 }; // enum pf_route (lib/dns.h)
    auto skel = load();
    SteerCase c;
    c.config.netns_cookie = 42;
    c.config.proxy_port = 3128;
    c.config.dns_port = 5353;
    c.netns_cookie = 43;
    c.type = SOCK_STREAM;
    c.protocol = IPPROTO_TCP;
    c.has_config = 1;
    c.ip6[0] = 443;
    SteerCase out = run(skel->progs.test_connect_route, c);
    CHECK(out.verdict == deny);
    CHECK(out.mapped == PF_DENY_FOREIGN_NETNS);
    out = run(skel->progs.test_sendmsg_route, c);
    CHECK(out.verdict == deny);
    CHECK(out.mapped == PF_DENY_FOREIGN_NETNS);

    SteerCase opted = c;
    opted.config.flags = PF_SANDBOX_PRIVATE_NETNS;
    out = run(skel->progs.test_connect_route, opted);
    CHECK(out.verdict == direct);
    CHECK(out.mapped == 0);
    SteerCase udp = opted;
    udp.type = SOCK_DGRAM;
    udp.protocol = IPPROTO_UDP;
    udp.ip6[0] = 9999;
    CHECK(run(skel->progs.test_connect_route, udp).verdict == direct);
    CHECK(run(skel->progs.test_sendmsg_route, udp).verdict == direct);

    // The host's namespace is steered as ever, flag or not.
    SteerCase host = opted;
    host.netns_cookie = 42;
    CHECK(run(skel->progs.test_connect_route, host).verdict == proxy);
    SteerCase host_udp = udp;
    host_udp.netns_cookie = 42;
    out = run(skel->progs.test_sendmsg_route, host_udp);
    CHECK(out.verdict == deny);
    CHECK(out.mapped == PF_DENY_UDP);
    host_udp.ip6[0] = 53;
    CHECK(run(skel->progs.test_sendmsg_route, host_udp).verdict == dns);

    // A sandbox being torn down (no proxy) passes nothing.
    SteerCase gone = opted;
    gone.config.proxy_port = 0;
    out = run(skel->progs.test_connect_route, gone);
    CHECK(out.verdict == deny);
    CHECK(out.mapped == PF_DENY_NO_SANDBOX);
    gone.has_config = 0;
    CHECK(run(skel->progs.test_sendmsg_route, gone).verdict == deny);
}

TEST_CASE("socket kinds")
{
    auto skel = load();
    struct Kind {
        __u32 family, type, protocol, verdict;
    } const kinds[] = {
        {AF_INET, SOCK_STREAM, 0, 0},
        {AF_INET6, SOCK_STREAM, IPPROTO_TCP, 0},
        {AF_INET, SOCK_DGRAM, IPPROTO_UDP, 0},
        {AF_INET6, SOCK_DGRAM, 0, 0},
        {AF_INET, SOCK_RAW, IPPROTO_TCP, PF_DENY_SOCKET_KIND},
        {AF_INET, SOCK_DGRAM, IPPROTO_ICMP, PF_DENY_SOCKET_KIND},
        {AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6, PF_DENY_SOCKET_KIND},
        {AF_INET, SOCK_STREAM, 262 /* MPTCP */, PF_DENY_SOCKET_KIND},
        {AF_INET, SOCK_STREAM, IPPROTO_SCTP, PF_DENY_SOCKET_KIND},
        {AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP, PF_DENY_SOCKET_KIND},
        {AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE, PF_DENY_SOCKET_KIND},
        // Other families never reach cgroup/sock_create (only inet_create
        // runs it): the decision lets them be, seccomp covers them.
        {AF_UNIX, SOCK_STREAM, 0, 0},
    };
    for (const auto& k : kinds) {
        SteerCase c;
        c.family = k.family;
        c.type = k.type;
        c.protocol = k.protocol;
        CAPTURE(k.family);
        CAPTURE(k.type);
        CAPTURE(k.protocol);
        CHECK(run(skel->progs.test_socket_kind, c).verdict == k.verdict);
    }
}

TEST_CASE("IPv4 is stored mapped so both ends of a flow agree")
{
    auto skel = load();
    SteerCase c;
    c.ip6[2] = htonl(0x0000ffff);
    c.ip6[3] = htonl(0x7f000001);
    auto out = run(skel->progs.test_addresses, c);
    CHECK(out.mapped == 1);
    const __u8 expected[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
    CHECK(std::memcmp(out.addr, expected, 16) == 0);

    SteerCase v6;
    v6.ip6[3] = htonl(1);
    CHECK(run(skel->progs.test_addresses, v6).mapped == 0);
}

TEST_CASE("a captured executable's kernel dev_t compares equal to stat()'s st_dev (glibc makedev)")
{
    // bpf/lib/identity.h: the kernel keeps major << 20 | minor (12-bit
    // major, 20-bit minor); stat() reports new_encode_dev(), which is what
    // glibc's makedev() builds. Large minors (NVMe partitions, device-mapper,
    // anonymous devices of overlayfs and btrfs) use the split high bits.
    struct DevCase {
        __u32 kdev;
        __u32 pad;
        __u64 user;
    };
    auto skel = load();
    const unsigned majors[] = {0, 1, 8, 253, 254, 259, 511, 4095};
    const unsigned minors[] = {0, 1, 255, 256, 4096, 65535, 65536, 0xabcde, 0xfffff};
    for (unsigned major : majors) {
        for (unsigned minor : minors) {
            DevCase c{(major << 20) | minor, 0, 0};
            LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &c, .ctx_size_in = sizeof c);
            REQUIRE(bpf_prog_test_run_opts(bpf_program__fd(skel->progs.test_user_dev), &opts) == 0);
            CAPTURE(major);
            CAPTURE(minor);
            CHECK(c.user == static_cast<__u64>(makedev(major, minor)));
        }
    }
}
