/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Abstract unix sockets. They have no file, so the mount namespace cannot
 * hide them, and the sandbox shares the host's network namespace, which is
 * what scopes them: without this hook a sandbox reaches every abstract
 * socket of the host (X11, D-Bus, systemd, containerd shims ...).
 *
 * cgroup connect_unix / sendmsg_unix (Linux 6.7) see the address but the
 * context does not expose sun_path. The context pointer is the kernel's
 * struct bpf_sock_addr_kern, so its uaddr and uaddrlen are read from it
 * with bpf_probe_read_kernel (field offsets by CO-RE); passing the context
 * pointer to that helper needs CAP_PERFMON at load. These programs live in
 * pinfold.bpf.c with autoload off, and the loader turns them on only on a
 * kernel with the hooks and with CAP_PERFMON; elsewhere the verifier never
 * sees them and pinfold says at start that abstract sockets are not refused
 * by the hooks (Landlock's abstract-unix scope, 6.12, is then the only
 * barrier - see docs/security.md). No kfunc (bpf_cast_to_kern_ctx, 6.2):
 * libbpf resolves the kfuncs of every program, loaded or not, and on 6.1 a
 * missing one sends it to the module BTFs, which needs CAP_SYS_ADMIN - the
 * reason these hooks once were a second object, whose load parsed the
 * kernel's BTF a second time.
 */
#ifndef PF_UNIX_H
#define PF_UNIX_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "pinfold_abi.h"
#include "report.h"

/*
 * UAPI layout, so no CO-RE: libbpf scans every type of the kernel's BTF once
 * per relocated type, and that scan is most of its share of the start.
 */
struct sockaddr {
	unsigned short sa_family;
	char sa_data[14];
};

struct bpf_sock_addr_kern {
	struct sockaddr *uaddr;
	__u32 uaddrlen;
} __attribute__((preserve_access_index));

/* 1 when the unix address of this connect/sendmsg is abstract (sun_path[0] == 0). */
static __always_inline int pf_unix_is_abstract(struct bpf_sock_addr *ctx)
{
	struct bpf_sock_addr_kern *kctx = (struct bpf_sock_addr_kern *)ctx;
	struct sockaddr *sa;
	__u32 len;
	char first;

	/* A read that fails cannot tell: refuse. */
	if (bpf_core_read(&len, sizeof(len), &kctx->uaddrlen))
		return 1;
	/* sa_family only (autobind-style address): nothing to connect to. */
	if (len <= sizeof(unsigned short))
		return 0;
	if (bpf_core_read(&sa, sizeof(sa), &kctx->uaddr))
		return 1;
	if (bpf_probe_read_kernel(&first, 1, &sa->sa_data[0]))
		return 1;
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
