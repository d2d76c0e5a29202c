/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Every map of pinfold, declared in one place. */
#ifndef PF_MAPS_H
#define PF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "pinfold_abi.h"

#define PF_MAX_SANDBOXES 1024
/*
 * Sizes of the LRU maps. Every run loads its own object, so they hold
 * only this run's flows, and only its sandbox can fill them. An LRU preallocates
 * every element at map creation (a plain hash could skip that with
 * BPF_F_NO_PREALLOC, an LRU cannot): at 65536 entries the four LRU maps
 * there were took 36 MiB of zeroed kernel memory and an eighth of
 * `pinfold run`'s CPU. An eviction only ever removes a record, and a
 * missing record refuses (see each map), so a smaller map can cost the
 * sandbox a connection under pressure, never grant one.
 */
#define PF_MAX_FLOWS 16384
#define PF_MAX_LOCAL_FLOWS 8192

/* Sandbox cgroup id -> configuration. Absent means deny: fail closed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PF_MAX_SANDBOXES);
	__type(key, __u64);
	__type(value, struct pf_sandbox_config);
} sandbox_map SEC(".maps");

/*
 * Origin on the client's socket, between connect4/6 (which knows the
 * dialled address but not yet the source port) and TCP_CONNECT_CB (which
 * knows the port; it marks the record used with proxy_port 0). Socket
 * storage: allocated on use, nothing to evict, and a connect that fails
 * before the SYN leaves nothing behind once its socket is gone. No record
 * (storage full, optmem exhausted) -> the connect is refused.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pf_origin);
} pending_map SEC(".maps");

/*
 * Client (address, port) -> origin, from TCP_CONNECT_CB until the proxy's
 * side of the handshake completes (PASSIVE_ESTABLISHED_CB deletes it):
 * on loopback that is microseconds, longer only while the proxy's accept
 * queues (2 x 1024) are full. LRU: a SYN that never completes leaves its
 * record. An evicted record makes the proxy refuse that connection (it has
 * no origin); PF_MAX_FLOWS is eight times the accept queues.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PF_MAX_FLOWS);
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
 * The resolver address a sandbox socket sent DNS to (lib/dns.h), on the
 * socket. recvmsg4/6 put it back as the reply's source, so clients that
 * check who answered accept pinfold's resolver. Socket storage: dies with
 * the socket, nothing preallocated or evicted. No record -> the datagram
 * or connect is refused.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
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
 * from a flow of its own sandbox (lib/local.h). A record is needed only
 * from its packet's egress to its ingress on loopback (microseconds; each
 * retransmission or datagram writes it again); the rest are stale. An
 * evicted record refuses that SYN or datagram, and stale ones age out
 * sooner in a smaller map.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PF_MAX_LOCAL_FLOWS);
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
