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
 * CAP_PERFMON at load. The loader sets pf_read_sun_path exactly when it has
 * it (as for the executable capture of lib/identity.h); with 0 the check is
 * dead code the verifier never looks at, and the hooks allow everything
 * (Landlock's abstract-unix scope, 6.12, is then the only barrier - see
 * docs/security.md).
 */
#ifndef PF_UNIX_H
#define PF_UNIX_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* Frozen .rodata: with 0 the verifier prunes the PERFMON-only branch. */
const volatile __u32 pf_read_sun_path = 0;

struct sockaddr {
	unsigned short sa_family;
	char sa_data[14];
} __attribute__((preserve_access_index));

struct bpf_sock_addr_kern {
	struct sockaddr *uaddr;
	__u32 uaddrlen;
} __attribute__((preserve_access_index));

/*
 * Weak: on kernels before 6.2 the kfunc does not exist and the unix programs
 * are not loaded (no 6.7 hooks either); a strong extern would make libbpf
 * refuse the whole object there (seen on Debian's 6.1).
 */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

/* 1 when the unix address of this connect/sendmsg is abstract (sun_path[0] == 0). */
static __always_inline int pf_unix_is_abstract(struct bpf_sock_addr *ctx)
{
	struct bpf_sock_addr_kern *kctx;
	struct sockaddr *sa;
	__u32 len;
	char first = 1;

	if (!pf_read_sun_path)
		return 0;
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

#endif /* PF_UNIX_H */
