/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The sandbox a hook runs for, and refusal events to the loader
 * (pinfold.bpf.c).
 */
#ifndef PF_REPORT_H
#define PF_REPORT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "pinfold_abi.h"
#include "maps.h"

/*
 * Depth of sandbox cgroups below the cgroup2 root, set by the loader
 * before load. Looking the sandbox up by ancestor (not by the leaf) keeps
 * a process that moves into a child cgroup of its sandbox inside it.
 */
const volatile __u32 pf_sandbox_level = 0;

static __always_inline __u64 pf_sandbox_id(void)
{
	if (pf_sandbox_level == 0)
		return 0;
	return bpf_get_current_ancestor_cgroup_id(pf_sandbox_level);
}

/*
 * `from_task` is a constant at every call site, so clang drops the task
 * helpers from programs that run without a meaningful current task:
 * cgroup_skb ingress runs in softirq, and 6.1 (get_current_pid_tgid) and
 * 6.12 (get_current_uid_gid) refuse those helpers there outright.
 */
static __always_inline void pf_emit(__u32 kind, __u32 reason, __u64 sandbox,
				    const __u8 addr[PF_ADDR_LEN], __u16 port,
				    __u16 family, __u16 type, __u16 protocol,
				    const int from_task)
{
	struct pf_event *ev;

	ev = bpf_ringbuf_reserve(&events_map, sizeof(*ev), 0);
	if (!ev)
		return;
	ev->kind = kind;
	ev->reason = reason;
	if (from_task) {
		ev->pid = bpf_get_current_pid_tgid() >> 32;
		ev->uid = (__u32)bpf_get_current_uid_gid();
		ev->cgroup_id = bpf_get_current_cgroup_id();
	} else {
		ev->pid = 0;
		ev->uid = 0;
		ev->cgroup_id = 0;
	}
	ev->sandbox_id = sandbox;
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

static __always_inline void pf_report(__u32 kind, __u32 reason, __u64 sandbox,
				      const __u8 addr[PF_ADDR_LEN], __u16 port,
				      __u16 family, __u16 type, __u16 protocol)
{
	pf_emit(kind, reason, sandbox, addr, port, family, type, protocol, 1);
}

#endif /* PF_REPORT_H */
