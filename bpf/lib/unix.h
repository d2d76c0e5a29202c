/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Abstract unix sockets. They have no file, so the mount namespace cannot
 * hide them, and the sandbox shares the host's network namespace, which is
 * what scopes them: without this hook a sandbox reaches every abstract
 * socket of the host (X11, D-Bus, systemd, containerd shims ...).
 *
 * cgroup connect_unix / sendmsg_unix (Linux 6.7) see the address but the
 * context does not expose sun_path; it is read through the kernel context
 * (bpf_cast_to_kern_ctx, 6.2) with bpf_probe_read_kernel, which needs
 * CAP_PERFMON at load. These hooks are therefore their own object
 * (unix.bpf.c), loaded only on a kernel with the hooks and by a loader with
 * CAP_PERFMON; elsewhere pinfold says at start that abstract sockets are not
 * refused by the hooks (Landlock's abstract-unix scope, 6.12, is then the
 * only barrier - see docs/security.md). A rodata switch inside the main
 * object did not do: libbpf resolves the kfunc of every program (6.1
 * without CAP_SYS_ADMIN fails the whole object), and the verifier of 6.1 and
 * 6.12 walks a switch's dead branch speculatively without CAP_PERFMON.
 */
#ifndef PF_UNIX_H
#define PF_UNIX_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "pinfold_abi.h"
#include "report.h"

struct sockaddr {
	unsigned short sa_family;
	char sa_data[14];
} __attribute__((preserve_access_index));

struct bpf_sock_addr_kern {
	struct sockaddr *uaddr;
	__u32 uaddrlen;
} __attribute__((preserve_access_index));

/* 6.2; the object is only loaded on 6.7+ (connect_unix). */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* 1 when the unix address of this connect/sendmsg is abstract (sun_path[0] == 0). */
static __always_inline int pf_unix_is_abstract(struct bpf_sock_addr *ctx)
{
	struct bpf_sock_addr_kern *kctx;
	struct sockaddr *sa;
	__u32 len;
	char first = 1;

	kctx = bpf_cast_to_kern_ctx(ctx);
	len = BPF_CORE_READ(kctx, uaddrlen);
	/* sa_family only (autobind-style address): nothing to connect to. */
	if (len <= sizeof(unsigned short))
		return 0;
	sa = BPF_CORE_READ(kctx, uaddr);
	if (bpf_probe_read_kernel(&first, 1, &sa->sa_data[0]))
		return 1;	/* cannot tell: refuse */
	return first == 0;
}

/* Abstract unix sockets of the host are out of reach. */
static __always_inline int pf_unix(struct bpf_sock_addr *ctx, __u32 kind)
{
	if (!pf_unix_is_abstract(ctx))
		return 1;
	pf_report(kind, PF_DENY_ABSTRACT_UNIX, pf_sandbox_id(), 0, 0, 1,
		  ctx->type, ctx->protocol);
	return 0;
}

#endif /* PF_UNIX_H */
