/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Every map of pinfold, declared in one place. */
#ifndef PF_MAPS_H
#define PF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "pinfold_abi.h"

#define PF_MAX_SANDBOXES 1024
#define PF_MAX_PENDING 65536

/* Sandbox cgroup id -> configuration. Absent means deny: fail closed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PF_MAX_SANDBOXES);
	__type(key, __u64);
	__type(value, struct pf_sandbox_config);
} sandbox_map SEC(".maps");

/*
 * Client socket cookie -> origin, between connect4/6 (which knows the
 * dialled address but not yet the source port) and TCP_CONNECT_CB (which
 * knows the port). LRU: a connect that fails before the SYN never reaches
 * TCP_CONNECT_CB, and its entry must not pin memory forever. Eviction only
 * costs the evicting sandbox its own connections (no record -> refused).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PF_MAX_PENDING);
	__type(key, __u64);
	__type(value, struct pf_origin);
} pending_map SEC(".maps");

/* Client (address, port) -> origin, until the proxy side's accept. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PF_MAX_PENDING);
	__type(key, struct pf_flow_key);
	__type(value, struct pf_origin);
} flow_map SEC(".maps");

/*
 * Origin attached to the proxy's accepted socket. The proxy reads it with
 * the accepted fd as key: no capability, and it dies with the socket.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pf_origin);
} origin_map SEC(".maps");

/* Refusals, for the audit log. Dropped (and counted) when full. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events_map SEC(".maps");

/*
 * Socket cookie -> the resolver address a sandbox socket sent DNS to
 * (lib/dns.h). recvmsg4/6 put it back as the reply's source, so clients
 * that check who answered accept pinfold's resolver. LRU: sockets that
 * die leave entries behind.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PF_MAX_PENDING);
	__type(key, __u64);
	__type(value, struct pf_flow_key);
} dns_peer_map SEC(".maps");

/*
 * Sandbox id on every socket a sandbox bound explicitly (post_bind4/6).
 * Socket storage dies with the socket, so a port the sandbox released and
 * a host service took again is never mistaken for the sandbox's own.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} bound_map SEC(".maps");

/*
 * Client (address, port, protocol in _pad0) -> sandbox id, for every SYN and
 * datagram a sandbox sends to a loopback address (cgroup_skb egress). A
 * sandbox's listener accepts a SYN (and its UDP sockets a datagram) only
 * from a flow of its own sandbox (lib/local.h).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PF_MAX_PENDING);
	__type(key, struct pf_flow_key);
	__type(value, __u64);
} local_flow_map SEC(".maps");

/*
 * Container mode: marks on the proxy's and resolver's own sockets
 * (enum pf_exempt_mark, lib/exempt.h). Written from user space with the
 * socket's fd as key, so only a holder of this map's fd can mark, and only
 * a socket it holds; the mark dies with the socket.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} exempt_map SEC(".maps");

#endif /* PF_MAPS_H */
