/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Where a sandbox's connect() goes: the HTTP proxy, pinfold's resolver
 * (anything to port 53, TCP or UDP, whatever resolver address was dialled),
 * straight through (a loopback server the same sandbox bound: lib/local.h,
 * or, when opted in, anything dialled inside a private network namespace),
 * or nowhere. Plain values in, so it can be test-run.
 */
#ifndef PF_DNS_H
#define PF_DNS_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "pinfold_abi.h"
#include "lib/steer.h"

#define PF_DNS_PORT 53

enum pf_route {
	PF_ROUTE_DENY = 0,
	PF_ROUTE_PROXY = 1,	/* rewrite to loopback:proxy_port */
	PF_ROUTE_DNS = 2,	/* rewrite to loopback:dns_port */
	PF_ROUTE_DIRECT = 3,	/* leave the destination alone */
};

static __always_inline int pf_is_udp(__u32 type, __u32 protocol)
{
	return type == SOCK_DGRAM && (protocol == IPPROTO_UDP || protocol == 0);
}

/*
 * `own_local`: the destination is a loopback socket bound by this same
 * sandbox. On PF_ROUTE_DENY, *reason says why.
 */
static __always_inline __u32
pf_connect_route(const struct pf_sandbox_config *cfg, __u64 netns_cookie,
		 __u32 type, __u32 protocol, __u16 orig_port, int own_local,
		 __u32 *reason)
{
	*reason = 0;
	if (pf_private_netns_passes(cfg, netns_cookie))
		return PF_ROUTE_DIRECT;
	*reason = pf_connect_verdict(cfg, netns_cookie, type, protocol);
	if (cfg && *reason == PF_DENY_NOT_TCP && pf_is_udp(type, protocol) &&
	    (own_local || (orig_port == PF_DNS_PORT && cfg->dns_port)))
		*reason = 0;
	if (*reason || !cfg)
		return PF_ROUTE_DENY;
	if (own_local)
		return PF_ROUTE_DIRECT;
	if (orig_port == PF_DNS_PORT && cfg->dns_port)
		return PF_ROUTE_DNS;
	if (pf_is_udp(type, protocol)) {
		*reason = PF_DENY_NOT_TCP;
		return PF_ROUTE_DENY;
	}
	return PF_ROUTE_PROXY;
}

/*
 * Unconnected datagrams: to the resolver when they go to port 53, straight
 * through to the sandbox's own loopback UDP socket, refused otherwise.
 */
static __always_inline __u32
pf_sendmsg_route(const struct pf_sandbox_config *cfg, __u64 netns_cookie,
		 __u16 orig_port, int own_local, __u32 *reason)
{
	*reason = 0;
	if (pf_private_netns_passes(cfg, netns_cookie))
		return PF_ROUTE_DIRECT;
	if (!cfg || cfg->proxy_port == 0)
		*reason = PF_DENY_NO_SANDBOX;
	else if (netns_cookie != cfg->netns_cookie)
		*reason = PF_DENY_FOREIGN_NETNS;
	else if (own_local)
		return PF_ROUTE_DIRECT;
	else if (orig_port == PF_DNS_PORT && cfg->dns_port)
		return PF_ROUTE_DNS;
	else
		*reason = PF_DENY_UDP;
	return PF_ROUTE_DENY;
}

#endif /* PF_DNS_H */
