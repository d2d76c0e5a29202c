// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Cgroup hooks that force every TCP connection of a sandbox into the
 * proxy and refuse what cannot be proxied. Entry points stay thin; the
 * decisions live in lib/steer.h.
 *
 * Flow of one connection:
 *   connect4/6 (sandbox)      record origin by socket cookie, rewrite to proxy
 *   TCP_CONNECT_CB (sandbox)  source port now known: move record to flow_map
 *   PASSIVE_ESTABLISHED_CB    (proxy) move record into accepted socket storage
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "pinfold_abi.h"
#include "lib/maps.h"
#include "lib/steer.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * Depth of sandbox cgroups below the cgroup2 root, set by the loader
 * before load. Looking the sandbox up by ancestor (not by the leaf) keeps
 * a process that moves into a child cgroup of its sandbox inside it.
 */
const volatile __u32 pf_sandbox_level = 0;

/*
 * Context fields must be read with their own 4-byte loads: clang merges
 * neighbouring u32 reads of user_ip6/local_ip6 into 8-byte loads, which
 * the verifier rejects ("invalid bpf_context access").
 */
static __always_inline __u32 pf_ctx_u32(const __u32 *field)
{
	return *(const volatile __u32 *)field;
}

static __always_inline __u64 pf_sandbox_id(void)
{
	if (pf_sandbox_level == 0)
		return 0;
	return bpf_get_current_ancestor_cgroup_id(pf_sandbox_level);
}

static __always_inline void pf_report(__u32 kind, __u32 reason, __u64 sandbox,
				      const __u8 addr[PF_ADDR_LEN], __u16 port,
				      __u16 family, __u16 type, __u16 protocol)
{
	struct pf_event *ev;

	ev = bpf_ringbuf_reserve(&events_map, sizeof(*ev), 0);
	if (!ev)
		return;
	ev->kind = kind;
	ev->reason = reason;
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	ev->uid = (__u32)bpf_get_current_uid_gid();
	ev->sandbox_id = sandbox;
	ev->cgroup_id = bpf_get_current_cgroup_id();
	if (addr)
		__builtin_memcpy(ev->addr, addr, PF_ADDR_LEN);
	else
		__builtin_memset(ev->addr, 0, PF_ADDR_LEN);
	ev->port = port;
	ev->family = family;
	ev->sock_type = type;
	ev->protocol = protocol;
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline void pf_fill_identity(struct pf_origin *o, __u64 sandbox,
					     __u16 proxy_port)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	o->proxy_port = proxy_port;
	o->pid = pid_tgid >> 32;
	o->tid = (__u32)pid_tgid;
	o->uid = (__u32)uid_gid;
	o->gid = uid_gid >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->sandbox_id = sandbox;
}

/* Shared by connect4 and connect6 once the origin is filled in. */
static __always_inline int pf_steer(struct bpf_sock_addr *ctx,
				    struct pf_origin *o, __u64 sandbox)
{
	struct pf_sandbox_config *cfg;
	__u32 reason;

	cfg = bpf_map_lookup_elem(&sandbox_map, &sandbox);
	reason = pf_connect_verdict(cfg, bpf_get_netns_cookie(ctx), ctx->type,
				    ctx->protocol);
	if (reason || !cfg) {
		pf_report(PF_EV_CONNECT_DENIED, reason ? reason : PF_DENY_NO_SANDBOX,
			  sandbox, o->orig_addr, o->orig_port, o->orig_family,
			  ctx->type, ctx->protocol);
		return 0;
	}
	pf_fill_identity(o, sandbox, cfg->proxy_port);
	o->socket_cookie = bpf_get_socket_cookie(ctx);
	/* Without a record the proxy refuses the connection: fail closed. */
	if (bpf_map_update_elem(&pending_map, &o->socket_cookie, o, BPF_ANY))
		return 0;
	ctx->user_port = bpf_htons(cfg->proxy_port);
	return 1;
}

SEC("cgroup/connect4")
int pf_connect4(struct bpf_sock_addr *ctx)
{
	struct pf_origin o = {};
	__u64 sandbox = pf_sandbox_id();
	int verdict;

	pf_addr_from_ip4(o.orig_addr, ctx->user_ip4);
	o.orig_port = bpf_ntohs((__u16)ctx->user_port);
	o.orig_family = AF_INET;
	verdict = pf_steer(ctx, &o, sandbox);
	if (verdict)
		ctx->user_ip4 = bpf_htonl(0x7f000001);
	return verdict;
}

SEC("cgroup/connect6")
int pf_connect6(struct bpf_sock_addr *ctx)
{
	struct pf_origin o = {};
	__u64 sandbox = pf_sandbox_id();
	__u32 ip6[4];
	int mapped, verdict;

	ip6[0] = pf_ctx_u32(&ctx->user_ip6[0]);
	ip6[1] = pf_ctx_u32(&ctx->user_ip6[1]);
	ip6[2] = pf_ctx_u32(&ctx->user_ip6[2]);
	ip6[3] = pf_ctx_u32(&ctx->user_ip6[3]);
	__builtin_memcpy(o.orig_addr, ip6, PF_ADDR_LEN);
	o.orig_port = bpf_ntohs((__u16)ctx->user_port);
	mapped = pf_addr_is_mapped(ip6);
	o.orig_family = mapped ? AF_INET : AF_INET6;
	verdict = pf_steer(ctx, &o, sandbox);
	if (!verdict)
		return 0;
	/* Keep a mapped destination mapped so the wire stays IPv4. */
	ctx->user_ip6[0] = 0;
	ctx->user_ip6[1] = 0;
	ctx->user_ip6[2] = mapped ? bpf_htonl(0x0000ffff) : 0;
	ctx->user_ip6[3] = mapped ? bpf_htonl(0x7f000001) : bpf_htonl(1);
	return 1;
}

/*
 * Unconnected datagrams cannot be steered into a TCP proxy. DNS gets its
 * own resolver later; until then every datagram send is refused.
 */
static __always_inline int pf_refuse_datagram(struct bpf_sock_addr *ctx,
					      const __u8 addr[PF_ADDR_LEN],
					      __u16 family)
{
	pf_report(PF_EV_SENDMSG_DENIED, PF_DENY_UDP, pf_sandbox_id(), addr,
		  bpf_ntohs((__u16)ctx->user_port), family, ctx->type,
		  ctx->protocol);
	return 0;
}

SEC("cgroup/sendmsg4")
int pf_sendmsg4(struct bpf_sock_addr *ctx)
{
	__u8 addr[PF_ADDR_LEN];

	pf_addr_from_ip4(addr, ctx->user_ip4);
	return pf_refuse_datagram(ctx, addr, AF_INET);
}

SEC("cgroup/sendmsg6")
int pf_sendmsg6(struct bpf_sock_addr *ctx)
{
	__u32 ip6[4];

	ip6[0] = pf_ctx_u32(&ctx->user_ip6[0]);
	ip6[1] = pf_ctx_u32(&ctx->user_ip6[1]);
	ip6[2] = pf_ctx_u32(&ctx->user_ip6[2]);
	ip6[3] = pf_ctx_u32(&ctx->user_ip6[3]);
	return pf_refuse_datagram(ctx, (const __u8 *)ip6, AF_INET6);
}

SEC("cgroup/sock_create")
int pf_sock_create(struct bpf_sock *sk)
{
	__u32 reason = pf_socket_kind_verdict(sk->family, sk->type, sk->protocol);

	if (!reason)
		return 1;
	pf_report(PF_EV_SOCKET_DENIED, reason, pf_sandbox_id(), 0, 0,
		  sk->family, sk->type, sk->protocol);
	return 0;
}

static __always_inline void pf_flow_key_of(struct pf_flow_key *key,
					   __u32 family, const __u32 ip4_be,
					   const __u32 ip6_be[4], __u16 port)
{
	if (family == AF_INET)
		pf_addr_from_ip4(key->addr, ip4_be);
	else
		__builtin_memcpy(key->addr, ip6_be, PF_ADDR_LEN);
	key->port = port;
}

/* Client side: the source port is chosen and the SYN not yet sent. */
static __always_inline void pf_on_connect(struct bpf_sock_ops *skops)
{
	struct pf_flow_key key = {};
	struct pf_origin *o;
	__u64 cookie;
	__u32 ip6[4];

	cookie = bpf_get_socket_cookie(skops);
	o = bpf_map_lookup_elem(&pending_map, &cookie);
	if (!o)
		return;
	ip6[0] = pf_ctx_u32(&skops->local_ip6[0]);
	ip6[1] = pf_ctx_u32(&skops->local_ip6[1]);
	ip6[2] = pf_ctx_u32(&skops->local_ip6[2]);
	ip6[3] = pf_ctx_u32(&skops->local_ip6[3]);
	pf_flow_key_of(&key, skops->family, skops->local_ip4, ip6,
		       (__u16)skops->local_port);
	bpf_map_update_elem(&flow_map, &key, o, BPF_ANY);
	bpf_map_delete_elem(&pending_map, &cookie);
}

/* Proxy side: the handshake completed on a listener's child socket. */
static __always_inline void pf_on_accept(struct bpf_sock_ops *skops)
{
	struct pf_flow_key key = {};
	struct pf_origin *o, *stored;
	struct bpf_sock *sk;
	__u32 ip6[4];

	ip6[0] = pf_ctx_u32(&skops->remote_ip6[0]);
	ip6[1] = pf_ctx_u32(&skops->remote_ip6[1]);
	ip6[2] = pf_ctx_u32(&skops->remote_ip6[2]);
	ip6[3] = pf_ctx_u32(&skops->remote_ip6[3]);
	/* remote_port holds the network-order port in its upper 16 bits. */
	pf_flow_key_of(&key, skops->family, skops->remote_ip4, ip6,
		       (__u16)bpf_ntohl(skops->remote_port));
	o = bpf_map_lookup_elem(&flow_map, &key);
	if (!o)
		return;
	/* The record names the listener it was steered to; nothing else may take it. */
	if (o->proxy_port != (__u16)skops->local_port)
		return;
	sk = skops->sk;
	if (!sk)
		return;
	stored = bpf_sk_storage_get(&origin_map, sk, o,
				    BPF_SK_STORAGE_GET_F_CREATE);
	if (stored)
		__builtin_memcpy(stored, o, sizeof(*o));
	bpf_map_delete_elem(&flow_map, &key);
}

SEC("sockops")
int pf_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		pf_on_connect(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		pf_on_accept(skops);
		break;
	}
	return 1;
}
