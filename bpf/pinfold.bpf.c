// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Cgroup hooks that force every TCP connection of a sandbox into the
 * proxy and refuse what cannot be proxied. Entry points stay thin; the
 * decisions live in lib/steer.h.
 *
 * Flow of one connection:
 *   connect4/6 (sandbox)      record origin on the socket, rewrite to proxy
 *   TCP_CONNECT_CB (sandbox)  source port now known: copy record to flow_map
 *   PASSIVE_ESTABLISHED_CB    (proxy) move record into accepted socket storage
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "pinfold_abi.h"
#include "lib/maps.h"
#include "lib/report.h"
#include "lib/steer.h"
#include "lib/identity.h"
#include "lib/dns.h"
#include "lib/local.h"
#include "lib/exempt.h"
#include "lib/unix.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * Context fields must be read with their own 4-byte loads: clang merges
 * neighbouring u32 reads of user_ip6/local_ip6 into 8-byte loads, which
 * the verifier rejects ("invalid bpf_context access").
 */
static __always_inline __u32 pf_ctx_u32(const __u32 *field)
{
	return *(const volatile __u32 *)field;
}

/* `capture` is a constant per program: see lib/identity.h. */
static __always_inline void pf_fill_identity(struct pf_origin *o, __u64 sandbox,
					     __u16 proxy_port, const int capture)
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
	if (capture)
		pf_capture_exe_id(o);
}

/* What pf_steer asks its caller to do with the destination address. */
#define PF_STEER_DENY 0
#define PF_STEER_REWRITE 1	/* to loopback; the port is already set */
#define PF_STEER_DIRECT 2	/* leave it: the sandbox's own loopback server */

/* The DNS peer record of a socket (dns_peer_map); `create` makes it. */
static __always_inline struct pf_flow_key *pf_dns_peer(struct bpf_sock *sk,
							int create)
{
	if (!sk)
		return 0;
	return bpf_sk_storage_get(&dns_peer_map, sk, 0,
				  create ? BPF_SK_STORAGE_GET_F_CREATE : 0);
}

/*
 * Shared by connect4 and connect6 once the origin is filled in.
 * `own_local`: the destination is a loopback socket this sandbox bound.
 */
static __always_inline int pf_steer(struct bpf_sock_addr *ctx,
				    struct pf_origin *o, __u64 sandbox,
				    int own_local, const int capture)
{
	struct pf_sandbox_config *cfg;
	struct pf_flow_key *peer;
	struct pf_origin *pending;
	__u32 reason, route;
	__u16 port;

	cfg = bpf_map_lookup_elem(&sandbox_map, &sandbox);
	route = pf_connect_route(cfg, bpf_get_netns_cookie(ctx), ctx->type,
				 ctx->protocol, o->orig_port, own_local, &reason);
	if (route == PF_ROUTE_DENY || !cfg) {
		pf_report(PF_EV_CONNECT_DENIED, reason ? reason : PF_DENY_NO_SANDBOX,
			  sandbox, o->orig_addr, o->orig_port, o->orig_family,
			  ctx->type, ctx->protocol);
		return PF_STEER_DENY;
	}
	if (route == PF_ROUTE_DIRECT)
		return PF_STEER_DIRECT;
	port = route == PF_ROUTE_DNS ? cfg->dns_port : cfg->proxy_port;
	if (pf_is_udp(ctx->type, ctx->protocol)) {
		/* Connected UDP to port 53: recvmsg restores the reply's source. */
		peer = pf_dns_peer(ctx->sk, 1);
		if (!peer)
			return PF_STEER_DENY;
		__builtin_memcpy(peer->addr, o->orig_addr, PF_ADDR_LEN);
		peer->port = o->orig_port;
	} else {
		pf_fill_identity(o, sandbox, port, capture);
		o->socket_cookie = bpf_get_socket_cookie(ctx);
		/* Without a record the proxy refuses the connection: fail closed. */
		if (!ctx->sk)
			return PF_STEER_DENY;
		pending = bpf_sk_storage_get(&pending_map, ctx->sk, 0,
					     BPF_SK_STORAGE_GET_F_CREATE);
		if (!pending)
			return PF_STEER_DENY;
		__builtin_memcpy(pending, o, sizeof(*o));
	}
	ctx->user_port = bpf_htons(port);
	return PF_STEER_REWRITE;
}

static __always_inline int pf_do_connect4(struct bpf_sock_addr *ctx,
					  const int capture)
{
	struct pf_origin o = {};
	__u64 sandbox = pf_sandbox_id();
	int verdict;

	if (pf_exempt_connect(ctx->sk))
		return 1;
	pf_addr_from_ip4(o.orig_addr, ctx->user_ip4);
	o.orig_port = bpf_ntohs((__u16)ctx->user_port);
	o.orig_family = AF_INET;
	verdict = pf_steer(ctx, &o, sandbox,
			   pf_own_local4(ctx, ctx->user_ip4, (__u16)ctx->user_port,
					 pf_is_udp(ctx->type, ctx->protocol), sandbox),
			   capture);
	if (verdict == PF_STEER_REWRITE)
		ctx->user_ip4 = bpf_htonl(0x7f000001);
	return verdict != PF_STEER_DENY;
}

static __always_inline int pf_do_connect6(struct bpf_sock_addr *ctx,
					  const int capture)
{
	struct pf_origin o = {};
	__u64 sandbox = pf_sandbox_id();
	__u32 ip6[4];
	int mapped, verdict;

	if (pf_exempt_connect(ctx->sk))
		return 1;
	ip6[0] = pf_ctx_u32(&ctx->user_ip6[0]);
	ip6[1] = pf_ctx_u32(&ctx->user_ip6[1]);
	ip6[2] = pf_ctx_u32(&ctx->user_ip6[2]);
	ip6[3] = pf_ctx_u32(&ctx->user_ip6[3]);
	__builtin_memcpy(o.orig_addr, ip6, PF_ADDR_LEN);
	o.orig_port = bpf_ntohs((__u16)ctx->user_port);
	mapped = pf_addr_is_mapped(ip6);
	o.orig_family = mapped ? AF_INET : AF_INET6;
	verdict = pf_steer(ctx, &o, sandbox,
			   pf_own_local6(ctx, ip6, (__u16)ctx->user_port,
					 pf_is_udp(ctx->type, ctx->protocol), sandbox),
			   capture);
	if (verdict != PF_STEER_REWRITE)
		return verdict != PF_STEER_DENY;
	/* Keep a mapped destination mapped so the wire stays IPv4. */
	ctx->user_ip6[0] = 0;
	ctx->user_ip6[1] = 0;
	ctx->user_ip6[2] = mapped ? bpf_htonl(0x0000ffff) : 0;
	ctx->user_ip6[3] = mapped ? bpf_htonl(0x7f000001) : bpf_htonl(1);
	return 1;
}

/*
 * Two variants of each connect program; the loader loads one. The _exe ones
 * record the executable identity (lib/identity.h) and need CAP_PERFMON at
 * load; the others never name its helpers, so they load with CAP_BPF +
 * CAP_NET_ADMIN on every kernel.
 */
SEC("cgroup/connect4")
int pf_connect4(struct bpf_sock_addr *ctx)
{
	return pf_do_connect4(ctx, 0);
}

SEC("cgroup/connect4")
int pf_connect4_exe(struct bpf_sock_addr *ctx)
{
	return pf_do_connect4(ctx, 1);
}

SEC("cgroup/connect6")
int pf_connect6(struct bpf_sock_addr *ctx)
{
	return pf_do_connect6(ctx, 0);
}

SEC("cgroup/connect6")
int pf_connect6_exe(struct bpf_sock_addr *ctx)
{
	return pf_do_connect6(ctx, 1);
}

/*
 * Unconnected datagrams: port 53 goes to pinfold's resolver (whatever
 * resolver address was dialled), the sandbox's own loopback UDP sockets
 * are reached directly, everything else is refused.
 */
static __always_inline int pf_datagram(struct bpf_sock_addr *ctx,
				       const __u8 addr[PF_ADDR_LEN],
				       __u16 family, int own_local)
{
	struct pf_sandbox_config *cfg;
	struct pf_flow_key *peer;
	__u64 sandbox = pf_sandbox_id();
	__u32 reason, route;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);

	cfg = bpf_map_lookup_elem(&sandbox_map, &sandbox);
	route = pf_sendmsg_route(cfg, bpf_get_netns_cookie(ctx), port,
				 own_local, &reason);
	if (route == PF_ROUTE_DIRECT)
		return PF_STEER_DIRECT;
	if (route != PF_ROUTE_DNS || !cfg) {
		pf_report(PF_EV_SENDMSG_DENIED, reason ? reason : PF_DENY_UDP,
			  sandbox, addr, port, family, ctx->type, ctx->protocol);
		return PF_STEER_DENY;
	}
	/* No record, no restored source: the client would drop the reply. */
	peer = pf_dns_peer(ctx->sk, 1);
	if (!peer)
		return PF_STEER_DENY;
	__builtin_memcpy(peer->addr, addr, PF_ADDR_LEN);
	peer->port = port;
	ctx->user_port = bpf_htons(cfg->dns_port);
	return PF_STEER_REWRITE;
}

SEC("cgroup/sendmsg4")
int pf_sendmsg4(struct bpf_sock_addr *ctx)
{
	__u8 addr[PF_ADDR_LEN];
	__u32 ip4 = ctx->user_ip4;
	int verdict;

	if (pf_exempt_reply(ctx->sk, pf_is_loopback4(ip4)))
		return 1;
	pf_addr_from_ip4(addr, ip4);
	verdict = pf_datagram(ctx, addr, AF_INET,
			      pf_own_local4(ctx, ip4, (__u16)ctx->user_port, 1,
					    pf_sandbox_id()));
	if (verdict == PF_STEER_REWRITE)
		ctx->user_ip4 = bpf_htonl(0x7f000001);
	return verdict != PF_STEER_DENY;
}

SEC("cgroup/sendmsg6")
int pf_sendmsg6(struct bpf_sock_addr *ctx)
{
	__u32 ip6[4];
	int verdict;

	ip6[0] = pf_ctx_u32(&ctx->user_ip6[0]);
	ip6[1] = pf_ctx_u32(&ctx->user_ip6[1]);
	ip6[2] = pf_ctx_u32(&ctx->user_ip6[2]);
	ip6[3] = pf_ctx_u32(&ctx->user_ip6[3]);
	if (pf_exempt_reply(ctx->sk, pf_is_loopback6(ip6)))
		return 1;
	verdict = pf_datagram(ctx, (const __u8 *)ip6, AF_INET6,
			      pf_own_local6(ctx, ip6, (__u16)ctx->user_port, 1,
					    pf_sandbox_id()));
	if (verdict != PF_STEER_REWRITE)
		return verdict != PF_STEER_DENY;
	/* Mapped destinations fire sendmsg4, so this is real IPv6: ::1. */
	ctx->user_ip6[0] = 0;
	ctx->user_ip6[1] = 0;
	ctx->user_ip6[2] = 0;
	ctx->user_ip6[3] = bpf_htonl(1);
	return 1;
}

/*
 * The resolver's reply: put back the address the client sent its query
 * to, so resolvers that check who answered (glibc, musl) accept it.
 * recvmsg hooks cannot refuse; they only rewrite.
 */
static __always_inline const struct pf_flow_key *
pf_dns_peer_of(struct bpf_sock_addr *ctx, __u16 src_port)
{
	struct pf_sandbox_config *cfg;
	__u64 sandbox = pf_sandbox_id();

	cfg = bpf_map_lookup_elem(&sandbox_map, &sandbox);
	if (!cfg || !cfg->dns_port || src_port != cfg->dns_port)
		return 0;
	return pf_dns_peer(ctx->sk, 0);
}

SEC("cgroup/recvmsg4")
int pf_recvmsg4(struct bpf_sock_addr *ctx)
{
	const struct pf_flow_key *peer;
	__u32 ip4;

	if (ctx->user_ip4 != bpf_htonl(0x7f000001))
		return 1;
	peer = pf_dns_peer_of(ctx, bpf_ntohs((__u16)ctx->user_port));
	if (!peer)
		return 1;
	__builtin_memcpy(&ip4, &peer->addr[12], 4);
	ctx->user_ip4 = ip4;
	ctx->user_port = bpf_htons(peer->port);
	return 1;
}

SEC("cgroup/recvmsg6")
int pf_recvmsg6(struct bpf_sock_addr *ctx)
{
	const struct pf_flow_key *peer;
	__u32 ip6[4];

	ip6[0] = pf_ctx_u32(&ctx->user_ip6[0]);
	ip6[1] = pf_ctx_u32(&ctx->user_ip6[1]);
	ip6[2] = pf_ctx_u32(&ctx->user_ip6[2]);
	ip6[3] = pf_ctx_u32(&ctx->user_ip6[3]);
	if (!pf_is_loopback6(ip6))
		return 1;
	peer = pf_dns_peer_of(ctx, bpf_ntohs((__u16)ctx->user_port));
	if (!peer)
		return 1;
	__builtin_memcpy(ip6, peer->addr, PF_ADDR_LEN);
	ctx->user_ip6[0] = ip6[0];
	ctx->user_ip6[1] = ip6[1];
	ctx->user_ip6[2] = ip6[2];
	ctx->user_ip6[3] = ip6[3];
	ctx->user_port = bpf_htons(peer->port);
	return 1;
}

/*
 * Binds: loopback stays, the wildcard is narrowed to loopback, any other
 * address is refused, so nothing off the machine reaches a sandbox server.
 */
SEC("cgroup/bind4")
int pf_bind4(struct bpf_sock_addr *ctx)
{
	__u8 addr[PF_ADDR_LEN];
	__u32 ip4 = ctx->user_ip4;

	if (pf_is_loopback4(ip4))
		return 1;
	if (ip4 == 0) {
		ctx->user_ip4 = bpf_htonl(0x7f000001);
		return 1;
	}
	pf_addr_from_ip4(addr, ip4);
	pf_report(PF_EV_BIND_DENIED, PF_DENY_BIND, pf_sandbox_id(), addr,
		  bpf_ntohs((__u16)ctx->user_port), AF_INET, ctx->type,
		  ctx->protocol);
	return 0;
}

SEC("cgroup/bind6")
int pf_bind6(struct bpf_sock_addr *ctx)
{
	__u32 ip6[4];

	ip6[0] = pf_ctx_u32(&ctx->user_ip6[0]);
	ip6[1] = pf_ctx_u32(&ctx->user_ip6[1]);
	ip6[2] = pf_ctx_u32(&ctx->user_ip6[2]);
	ip6[3] = pf_ctx_u32(&ctx->user_ip6[3]);
	if (pf_is_loopback6(ip6))
		return 1;
	if (pf_is_any6(ip6)) {
		ctx->user_ip6[3] = bpf_htonl(1);
		return 1;
	}
	if (pf_addr_is_mapped(ip6) && ip6[3] == 0) {
		ctx->user_ip6[3] = bpf_htonl(0x7f000001);
		return 1;
	}
	pf_report(PF_EV_BIND_DENIED, PF_DENY_BIND, pf_sandbox_id(),
		  (const __u8 *)ip6, bpf_ntohs((__u16)ctx->user_port), AF_INET6,
		  ctx->type, ctx->protocol);
	return 0;
}

/* The port is chosen now: mark the socket as this sandbox's. */
static __always_inline int pf_mark_bound(struct bpf_sock *sk)
{
	__u64 sandbox = pf_sandbox_id();
	__u64 *owner;

	owner = bpf_sk_storage_get(&bound_map, sk, &sandbox,
				   BPF_SK_STORAGE_GET_F_CREATE);
	if (owner)
		*owner = sandbox;
	return 1;
}

SEC("cgroup/post_bind4")
int pf_post_bind4(struct bpf_sock *sk)
{
	return pf_mark_bound(sk);
}

SEC("cgroup/post_bind6")
int pf_post_bind6(struct bpf_sock *sk)
{
	return pf_mark_bound(sk);
}

/* Every SYN and datagram a sandbox sends to loopback starts one of its flows. */
SEC("cgroup_skb/egress")
int pf_skb_egress(struct __sk_buff *skb)
{
	struct pf_flow_key key = {};
	__u32 daddr[4];
	__u16 dport = 0;
	__u8 proto = 0;
	__u64 sandbox;

	if (!pf_skb_flow(skb, 0, &key, &proto, daddr, &dport))
		return 1;
	if (!pf_is_loopback6(daddr))
		return 1;
	sandbox = bpf_skb_ancestor_cgroup_id(skb, pf_sandbox_level);
	bpf_map_update_elem(&local_flow_map, &key, &sandbox, BPF_ANY);
	return 1;
}

/*
 * A SYN to a sandbox listener, or a datagram to a sandbox UDP socket, is
 * accepted only from a flow of the same sandbox (or, for datagrams, from
 * pinfold's resolver): host processes and other machines cannot reach a
 * server inside. Replies of established flows are not SYNs: not checked.
 */
SEC("cgroup_skb/ingress")
int pf_skb_ingress(struct __sk_buff *skb)
{
	struct pf_sandbox_config *cfg;
	struct pf_flow_key key = {};
	__u32 daddr[4];
	__u16 dport = 0;
	__u8 proto = 0;
	__u64 sandbox, *owner;
	__u32 saddr[4];

	if (!pf_skb_flow(skb, 1, &key, &proto, daddr, &dport))
		return 1;
	sandbox = bpf_skb_ancestor_cgroup_id(skb, pf_sandbox_level);
	owner = bpf_map_lookup_elem(&local_flow_map, &key);
	if (owner && *owner == sandbox)
		return 1;
	if (pf_exempt_ingress(skb))
		return 1;
	__builtin_memcpy(saddr, key.addr, PF_ADDR_LEN);
	cfg = bpf_map_lookup_elem(&sandbox_map, &sandbox);
	if (proto == IPPROTO_UDP && cfg && cfg->dns_port &&
	    key.port == cfg->dns_port && pf_is_loopback6(saddr))
		return 1;
	pf_emit(PF_EV_INBOUND_DENIED, PF_DENY_INBOUND, sandbox, key.addr,
		key.port, 0, proto == IPPROTO_TCP ? SOCK_STREAM : SOCK_DGRAM,
		proto, 0);
	return 0;
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
	struct bpf_sock *sk;
	__u32 ip6[4];

	sk = skops->sk;
	if (!sk)
		return;
	o = bpf_sk_storage_get(&pending_map, sk, 0, 0);
	/* proxy_port 0: no record, or one a connect of this socket already used. */
	if (!o || !o->proxy_port)
		return;
	ip6[0] = pf_ctx_u32(&skops->local_ip6[0]);
	ip6[1] = pf_ctx_u32(&skops->local_ip6[1]);
	ip6[2] = pf_ctx_u32(&skops->local_ip6[2]);
	ip6[3] = pf_ctx_u32(&skops->local_ip6[3]);
	pf_flow_key_of(&key, skops->family, skops->local_ip4, ip6,
		       (__u16)skops->local_port);
	/*
	 * An LRU update can fail (ENOMEM under per-CPU free-list pressure the
	 * sandbox can cause): then an older record for the same address and
	 * port must not stand in for this connection. A delete allocates
	 * nothing; no record means the proxy refuses.
	 */
	if (bpf_map_update_elem(&flow_map, &key, o, BPF_ANY))
		bpf_map_delete_elem(&flow_map, &key);
	o->proxy_port = 0;
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

/*
 * Abstract unix sockets (lib/unix.h): Linux 6.7 and CAP_PERFMON, so the
 * loader leaves these off (autoload) unless both hold. libbpf 1.1 does not
 * know the cgroup/connect_unix and sendmsg_unix sections (1.3 does): they
 * are declared as connect4/sendmsg4 and the loader retargets them to the
 * unix attach types.
 */
SEC("cgroup/connect4")
int pf_connect_unix(struct bpf_sock_addr *ctx)
{
	return pf_unix(ctx, PF_EV_CONNECT_DENIED);
}

SEC("cgroup/sendmsg4")
int pf_sendmsg_unix(struct bpf_sock_addr *ctx)
{
	return pf_unix(ctx, PF_EV_SENDMSG_DENIED);
}
