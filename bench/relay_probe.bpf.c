// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bench only, never loaded by pinfold: the kernel-side relay that
 * bench/relay_probe.cpp measures against splice(). Two slots, one
 * connection at a time; a segment that arrives on one side is sent out of
 * the other by the kernel, with no user-space wake-up.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum { slot_client = 0, slot_origin = 1 };

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} relay_slots SEC(".maps");

/* Set before load: the client side is the socket accepted on this port. */
const volatile __u32 listen_port;

SEC("sk_skb/stream_verdict")
int relay_verdict(struct __sk_buff *skb)
{
	__u32 to = skb->local_port == listen_port ? slot_origin : slot_client;

	return bpf_sk_redirect_map(skb, &relay_slots, to, 0);
}
