/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Steering decisions on plain values, so they can be tested without a
 * hook context. The .bpf.c entry points only gather inputs and apply.
 */
#ifndef PF_STEER_H
#define PF_STEER_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/socket.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "pinfold_abi.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#ifndef SOCK_STREAM
#define SOCK_STREAM 1
#endif
#ifndef SOCK_DGRAM
#define SOCK_DGRAM 2
#endif

/*
 * Only TCP can be steered into the proxy; UDP sockets may exist (libc
 * resolvers create them) but every send is refused elsewhere. Anything
 * else - raw, SCTP, MPTCP, ICMP "ping" sockets - is refused at socket().
 */
static __always_inline __u32 pf_socket_kind_verdict(__u32 family, __u32 type,
						     __u32 protocol)
{
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (type == SOCK_STREAM && (protocol == IPPROTO_TCP || protocol == 0))
		return 0;
	if (type == SOCK_DGRAM && (protocol == IPPROTO_UDP || protocol == 0))
		return 0;
	return PF_DENY_SOCKET_KIND;
}

/* 0 to steer the connect into the proxy, else the reason to refuse it. */
static __always_inline __u32
pf_connect_verdict(const struct pf_sandbox_config *cfg, __u64 netns_cookie,
		   __u32 type, __u32 protocol)
{
	if (!cfg || cfg->proxy_port == 0)
		return PF_DENY_NO_SANDBOX;
	/*
	 * A process that made itself a new network namespace is still in
	 * our cgroup; redirecting it would land on its own empty loopback.
	 * Refuse instead so the failure is clean and audited.
	 */
	if (netns_cookie != cfg->netns_cookie)
		return PF_DENY_FOREIGN_NETNS;
	if (type != SOCK_STREAM ||
	    (protocol != IPPROTO_TCP && protocol != 0))
		return PF_DENY_NOT_TCP;
	return 0;
}

/*
 * Opt-in: a namespace the sandbox made itself (a rootless container's)
 * only reaches its own interfaces; its exits are host-namespace processes
 * of the sandbox (slirp4netns, pasta), which are policed like any other.
 * Sound only while nothing in the sandbox can give such a namespace a way
 * out of its own (docs/security.md), which the loader checks.
 */
static __always_inline int
pf_private_netns_passes(const struct pf_sandbox_config *cfg, __u64 netns_cookie)
{
	return cfg && cfg->proxy_port != 0 &&
	       netns_cookie != cfg->netns_cookie &&
	       (cfg->flags & PF_SANDBOX_PRIVATE_NETNS);
}

static __always_inline void pf_addr_from_ip4(__u8 out[PF_ADDR_LEN], __u32 ip4_be)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(&out[12], &ip4_be, 4);
}

static __always_inline int pf_addr_is_mapped(const __u32 ip6_be[4])
{
	return ip6_be[0] == 0 && ip6_be[1] == 0 &&
	       ip6_be[2] == bpf_htonl(0x0000ffff);
}

#endif /* PF_STEER_H */
