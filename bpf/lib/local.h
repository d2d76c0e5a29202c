/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A sandbox's own loopback servers. The sandbox shares the host's network
 * namespace, so "localhost" is the host's: every loopback destination is
 * steered like any other, except a socket this same sandbox bound (test
 * suites start servers and talk to them). Binds are narrowed to loopback,
 * and a sandbox's sockets accept connections and datagrams only from flows
 * the same sandbox started.
 */
#ifndef PF_LOCAL_H
#define PF_LOCAL_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "pinfold_abi.h"
#include "lib/maps.h"
#include "lib/steer.h"

#define PF_ETH_P_IP 0x0800
#define PF_ETH_P_IPV6 0x86DD

static __always_inline int pf_is_loopback4(__u32 ip4_be)
{
	return (bpf_ntohl(ip4_be) >> 24) == 127;
}

/* ::1, or a mapped 127.0.0.0/8 address. */
static __always_inline int pf_is_loopback6(const __u32 ip6_be[4])
{
	if (pf_addr_is_mapped(ip6_be))
		return pf_is_loopback4(ip6_be[3]);
	return ip6_be[0] == 0 && ip6_be[1] == 0 && ip6_be[2] == 0 &&
	       ip6_be[3] == bpf_htonl(1);
}

static __always_inline int pf_is_any6(const __u32 ip6_be[4])
{
	return ip6_be[0] == 0 && ip6_be[1] == 0 && ip6_be[2] == 0 &&
	       ip6_be[3] == 0;
}

/*
 * Whether the socket that a connect/sendto to this loopback destination
 * would reach was bound by `sandbox`. The lookup finds what the kernel
 * would deliver to (a host listener, if the host holds the port), so a
 * sandbox cannot impersonate a host service by binding another loopback
 * address or a released port.
 */
static __always_inline int pf_owned_by(struct bpf_sock *sk, __u64 sandbox)
{
	__u64 *owner;
	int own = 0;

	if (!sk)
		return 0;
	owner = bpf_sk_storage_get(&bound_map, sk, 0, 0);
	own = owner && *owner == sandbox;
	bpf_sk_release(sk);
	return own;
}

static __always_inline int pf_own_local4(struct bpf_sock_addr *ctx, __u32 ip4_be,
					 __u16 port_be, int udp, __u64 sandbox)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	if (!pf_is_loopback4(ip4_be))
		return 0;
	t.ipv4.daddr = ip4_be;
	t.ipv4.dport = port_be;
	if (udp)
		sk = bpf_sk_lookup_udp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_tcp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	return pf_owned_by(sk, sandbox);
}

static __always_inline int pf_own_local6(struct bpf_sock_addr *ctx, const __u32 ip6_be[4],
					 __u16 port_be, int udp, __u64 sandbox)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	if (!pf_is_loopback6(ip6_be))
		return 0;
	if (pf_addr_is_mapped(ip6_be))
		return pf_own_local4(ctx, ip6_be[3], port_be, udp, sandbox);
	__builtin_memcpy(t.ipv6.daddr, ip6_be, 16);
	t.ipv6.dport = port_be;
	if (udp)
		sk = bpf_sk_lookup_udp(ctx, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_tcp(ctx, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
	return pf_owned_by(sk, sandbox);
}

/*
 * Packets of one of a sandbox's sockets: the flow key of their source
 * (egress: our side; ingress: the peer) and whether they open something a
 * listener would accept (a TCP SYN without ACK) or are a datagram.
 * Returns 0 when the packet is neither (nothing to check).
 */
static __always_inline int pf_skb_flow(struct __sk_buff *skb, int ingress,
				       struct pf_flow_key *key, __u8 *proto,
				       __u32 daddr[4], __u16 *dport)
{
	__u32 off, saddr6[4];
	__u8 l4;

	__builtin_memset(saddr6, 0, sizeof(saddr6));
	if (skb->protocol == bpf_htons(PF_ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 0;
		if (ip.ihl < 5 || (ip.frag_off & bpf_htons(0x1fff)))
			return 0;
		l4 = ip.protocol;
		off = ip.ihl * 4;
		pf_addr_from_ip4(key->addr, ip.saddr);
		daddr[0] = 0;
		daddr[1] = 0;
		daddr[2] = bpf_htonl(0x0000ffff);
		daddr[3] = ip.daddr;
	} else if (skb->protocol == bpf_htons(PF_ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return 0;
		/* Extension headers: not parsed; such packets are not ours to judge. */
		l4 = ip6.nexthdr;
		off = sizeof(ip6);
		__builtin_memcpy(key->addr, &ip6.saddr, PF_ADDR_LEN);
		__builtin_memcpy(daddr, &ip6.daddr, PF_ADDR_LEN);
	} else {
		return 0;
	}
	(void)ingress;
	if (l4 == IPPROTO_TCP) {
		struct tcphdr th;

		if (bpf_skb_load_bytes(skb, off, &th, sizeof(th)))
			return 0;
		if (!th.syn || th.ack)
			return 0;
		key->port = bpf_ntohs(th.source);
		*dport = bpf_ntohs(th.dest);
	} else if (l4 == IPPROTO_UDP) {
		struct udphdr uh;

		if (bpf_skb_load_bytes(skb, off, &uh, sizeof(uh)))
			return 0;
		key->port = bpf_ntohs(uh.source);
		*dport = bpf_ntohs(uh.dest);
	} else {
		return 0;
	}
	*proto = l4;
	key->_pad0 = l4;
	return 1;
}

#endif /* PF_LOCAL_H */
