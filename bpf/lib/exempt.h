/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Container mode: pinfold's proxy and resolver run in the job's own cgroup
 * (a container cannot create child cgroups), so the hooks see their
 * sockets too. They are told apart by a mark in exempt_map that only a
 * holder of the map's fd can write, on a socket it holds (the fd is the
 * key). The job never holds either: it cannot mark its own sockets, and it
 * cannot get one of the proxy's (another uid, not dumpable, no fd passing).
 *
 * An upstream mark admits one connect and is then spent, so a socket that
 * leaked anyway could not be disconnected (AF_UNSPEC) and pointed
 * elsewhere. A reply mark admits only datagrams to loopback.
 */
#ifndef PF_EXEMPT_H
#define PF_EXEMPT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "pinfold_abi.h"
#include "lib/maps.h"

/* Whether this connect is the one an upstream mark admits; spends it. */
static __always_inline int pf_exempt_connect(struct bpf_sock *sk)
{
	__u64 *mark;

	if (!sk)
		return 0;
	mark = bpf_sk_storage_get(&exempt_map, sk, 0, 0);
	if (!mark)
		return 0;
	/* Two threads connecting one socket: only one of them wins the mark. */
	return __sync_val_compare_and_swap(mark, PF_EXEMPT_CONNECT,
					   PF_EXEMPT_SPENT) == PF_EXEMPT_CONNECT;
}

/* A datagram from the resolver's own server socket back to a client. */
static __always_inline int pf_exempt_reply(struct bpf_sock *sk, int to_loopback)
{
	__u64 *mark;

	if (!sk || !to_loopback)
		return 0;
	mark = bpf_sk_storage_get(&exempt_map, sk, 0, 0);
	return mark && *mark == PF_EXEMPT_REPLY;
}

/*
 * A packet arriving at one of the proxy's marked sockets (an upstream's
 * reply, when the upstream is on loopback): the proxy's, not the job's.
 */
static __always_inline int pf_exempt_ingress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;

	if (!sk)
		return 0;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 0;
	return bpf_sk_storage_get(&exempt_map, sk, 0, 0) != 0;
}

#endif /* PF_EXEMPT_H */
