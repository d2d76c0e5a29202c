// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Reports the ids of the calling task's cgroup ancestors, level by level,
 * as the kernel counts them: from the global cgroup2 root, whatever cgroup
 * namespace the caller is in. Run once with BPF_PROG_TEST_RUN (a syscall
 * program runs in the caller's context). The loader compares this with the
 * namespace-relative path in /proc/self/cgroup to learn the level that
 * bpf_get_current_ancestor_cgroup_id() needs for a sandbox cgroup.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Deeper cgroup trees are refused by the loader (the C++ side reads the size from the skeleton). */
#define PF_CGROUP_MAX_LEVELS 32

char LICENSE[] SEC("license") = "Dual BSD/GPL";

__u64 pf_ancestors[PF_CGROUP_MAX_LEVELS];

SEC("syscall")
int pf_cg_levels(void *ctx)
{
	/*
	 * Fully unrolled: every store then has a constant offset. A variable
	 * offset into the map value is refused without CAP_PERFMON ("pointer
	 * arithmetic of map value goes out of range, prohibited for !root"),
	 * and pinfold must load with CAP_BPF + CAP_NET_ADMIN alone.
	 */
#pragma clang loop unroll(full)
	for (int i = 0; i < PF_CGROUP_MAX_LEVELS; i++)
		pf_ancestors[i] = bpf_get_current_ancestor_cgroup_id(i);
	return 0;
}
