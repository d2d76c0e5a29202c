// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Wraps the steering decisions of lib/steer.h in programs that
 * BPF_PROG_TEST_RUN can execute: cgroup sock_addr programs cannot be
 * test-run, so the shared logic is exercised here instead, compiled by the
 * same clang and checked by the same verifier as the real hooks.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "pinfold_abi.h"
#include "lib/steer.h"
#include "lib/dns.h"
#include "lib/identity.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Inputs and output of one decision; layout mirrored in the test. */
struct steer_case {
	struct pf_sandbox_config config;
	__u64 netns_cookie;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 has_config;
	__u32 ip6[4];
	__u32 verdict;		/* out */
	__u32 mapped;		/* out */
	__u8 addr[PF_ADDR_LEN];	/* out: pf_addr_from_ip4(ip6[3]) */
};

SEC("syscall")
int test_connect_verdict(struct steer_case *c)
{
	c->verdict = pf_connect_verdict(c->has_config ? &c->config : 0,
					c->netns_cookie, c->type, c->protocol);
	return 0;
}

/* Routes: verdict = enum pf_route, mapped = reason; ip6[0] = port, ip6[1] = own_local. */
SEC("syscall")
int test_connect_route(struct steer_case *c)
{
	c->verdict = pf_connect_route(c->has_config ? &c->config : 0,
				      c->netns_cookie, c->type, c->protocol,
				      (__u16)c->ip6[0], c->ip6[1], &c->mapped);
	return 0;
}

SEC("syscall")
int test_sendmsg_route(struct steer_case *c)
{
	c->verdict = pf_sendmsg_route(c->has_config ? &c->config : 0,
				      c->netns_cookie, (__u16)c->ip6[0],
				      c->ip6[1], &c->mapped);
	return 0;
}

SEC("syscall")
int test_socket_kind(struct steer_case *c)
{
	c->verdict = pf_socket_kind_verdict(c->family, c->type, c->protocol);
	return 0;
}

SEC("syscall")
int test_addresses(struct steer_case *c)
{
	c->mapped = pf_addr_is_mapped(c->ip6);
	pf_addr_from_ip4(c->addr, c->ip6[3]);
	return 0;
}

/* The kernel dev_t of a captured executable, in stat(2)'s st_dev encoding. */
struct dev_case {
	__u32 kdev;
	__u32 pad;
	__u64 user;		/* out */
};

SEC("syscall")
int test_user_dev(struct dev_case *c)
{
	c->user = pf_user_dev(c->kdev);
	return 0;
}
