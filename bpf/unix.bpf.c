// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Unix-socket hooks of a sandbox (lib/unix.h): their own object, because
 * they need Linux 6.7 (cgroup connect_unix/sendmsg_unix), the 6.2 kfunc
 * bpf_cast_to_kern_ctx and CAP_PERFMON, none of which the steering object
 * (pinfold.bpf.c) may require. The loader loads it only where all three
 * hold, shares pinfold.bpf.c's maps with it (events_map) and attaches it
 * to the sandbox cgroup next to the steering programs.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "pinfold_abi.h"
#include "lib/maps.h"
#include "lib/report.h"
#include "lib/unix.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * libbpf 1.1 does not know the cgroup/connect_unix and sendmsg_unix sections
 * (1.3 does): they are declared as connect4/sendmsg4 and the loader
 * retargets them to the unix attach types it finds in the kernel's BTF
 * (unix_programs.cpp).
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
