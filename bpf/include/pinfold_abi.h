/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The only ABI shared between the BPF programs and the C++ side. Every
 * struct has fixed-width fields and explicit padding; the C++ side
 * static_asserts sizes and offsets (loader/abi_checks.hpp), so a change
 * here that forgets the other side fails to compile.
 */
#ifndef PINFOLD_ABI_H
#define PINFOLD_ABI_H

#include <linux/types.h>

/*
 * Addresses are always 16 bytes: IPv4 is stored IPv4-mapped
 * (::ffff:a.b.c.d), so the connecting side (which may be an AF_INET6
 * socket dialling a mapped address) and the proxy side (an AF_INET
 * listener) agree on one key for the same flow.
 */
#define PF_ADDR_LEN 16

/* Room for the executable's file name (truncated, NUL-terminated). */
#define PF_EXE_NAME_LEN 32

/* Written by the loader, keyed by the sandbox's cgroup id. */
struct pf_sandbox_config {
	__u64 netns_cookie;	/* the only netns the sandbox may connect from */
	__u16 proxy_port;	/* host order; proxy listens on 127.0.0.1 and ::1 */
	__u16 flags;		/* PF_SANDBOX_* */
	__u16 dns_port;		/* host order; resolver on 127.0.0.1/::1, UDP+TCP; 0: none */
	__u16 _pad0;
};

/* pf_sandbox_config.flags */
enum pf_sandbox_flag {
	/*
	 * Connects and datagrams made in a network namespace other than
	 * netns_cookie pass untouched instead of being refused (opt-in,
	 * --allow-private-netns; docs/security.md says why that is sound).
	 */
	PF_SANDBOX_PRIVATE_NETNS = 1,
};

/* Original destination and identity of one steered TCP connection. */
struct pf_origin {
	__u8 orig_addr[PF_ADDR_LEN];	/* dialled address, IPv4 mapped */
	__u16 orig_port;		/* dialled port, host order */
	__u16 orig_family;		/* AF_INET or AF_INET6 as dialled */
	__u16 proxy_port;		/* host order: the listener it was steered to */
	__u16 _pad0;
	__u32 pid;			/* tgid */
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;		/* leaf cgroup of the connecting task */
	__u64 sandbox_id;		/* cgroup id of the sandbox */
	__u64 socket_cookie;		/* of the client's socket */
	__u64 exe_dev;			/* executable identity, st_dev encoding; */
	__u64 exe_ino;			/* both 0 when not captured (lib/identity.h) */
	char exe_name[PF_EXE_NAME_LEN];	/* exe's last path component, for humans */
};

/* Key of flow_map: the client's own (address, port) as the proxy sees it. */
struct pf_flow_key {
	__u8 addr[PF_ADDR_LEN];
	__u16 port;			/* host order */
	__u16 _pad0;
	__u32 _pad1;
};

/* What the kernel refused, reported to the loader for the audit log. */
enum pf_event_kind {
	PF_EV_CONNECT_DENIED = 1,	/* connect() from a sandbox refused */
	PF_EV_SENDMSG_DENIED = 2,	/* unconnected UDP send refused */
	PF_EV_SOCKET_DENIED = 3,	/* socket() of a kind we cannot steer */
	PF_EV_BIND_DENIED = 4,		/* bind() to a non-loopback address */
	PF_EV_INBOUND_DENIED = 5,	/* SYN/datagram to a sandbox socket from outside it */
};

enum pf_deny_reason {
	PF_DENY_NO_SANDBOX = 1,		/* cgroup not (or no longer) configured */
	PF_DENY_FOREIGN_NETNS = 2,	/* connect from another network namespace */
	PF_DENY_NOT_TCP = 3,		/* UDP or other datagram connect */
	PF_DENY_SOCKET_KIND = 4,	/* raw, SCTP, MPTCP, ICMP, ... */
	PF_DENY_UDP = 5,		/* UDP datagram to anywhere */
	PF_DENY_BIND = 6,		/* bind to an address other than loopback */
	PF_DENY_INBOUND = 7,		/* from outside the sandbox (lib/local.h) */
	PF_DENY_ABSTRACT_UNIX = 8,	/* abstract unix socket (lib/unix.h) */
};

/*
 * Container mode (the proxy and resolver share the job's cgroup): the mark
 * the proxy puts on one of its own sockets, as the value of exempt_map
 * (socket storage), through a map fd only the loader and the proxy hold.
 */
enum pf_exempt_mark {
	PF_EXEMPT_CONNECT = 1,	/* its next connect is not steered: an upstream */
	PF_EXEMPT_REPLY = 2,	/* may send datagrams to loopback: resolver replies */
	PF_EXEMPT_SPENT = 3,	/* was PF_EXEMPT_CONNECT; that connect happened */
};

struct pf_event {
	__u32 kind;			/* enum pf_event_kind */
	__u32 reason;			/* enum pf_deny_reason */
	__u32 pid;
	__u32 uid;
	__u64 sandbox_id;
	__u64 cgroup_id;
	__u8 addr[PF_ADDR_LEN];		/* destination, IPv4 mapped; 0 if none */
	__u16 port;			/* host order */
	__u16 family;
	__u16 sock_type;
	__u16 protocol;
};

#endif /* PINFOLD_ABI_H */
