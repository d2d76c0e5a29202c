/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Executable identity of the task that calls connect(): the (device, inode)
 * of current->mm->exe_file, read with CO-RE at connect time, so a process
 * cannot connect and then exec something else to borrow its identity (the
 * /proc/<pid>/exe race of designs that look after the fact).
 *
 * The kernel types are declared here by hand, with only the fields we read,
 * instead of a vmlinux.h dumped from the build host: preserve_access_index
 * makes every access a CO-RE relocation resolved against the running
 * kernel's BTF at load time, so the object does not depend on the kernel
 * it was built on.
 */
#ifndef PF_IDENTITY_H
#define PF_IDENTITY_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "pinfold_abi.h"

/*
 * Reading current's task struct needs bpf_get_current_task_btf() and
 * bpf_probe_read_kernel(), which the verifier allows only with CAP_PERFMON.
 * So the capture is not behind a run-time switch: pinfold.bpf.c has one
 * connect program per variant and the loader loads only the one it may
 * (bpf_program__set_autoload). A frozen .rodata switch is not enough: on
 * 6.1 and 6.12 (measured; not on 6.18), without CAP_PERFMON the verifier
 * also walks the dead branch speculatively (Spectre v1 hardening) and
 * refuses the helper there.
 */

struct super_block {
	__u32 s_dev;		/* kernel dev_t: major << 20 | minor */
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct path {
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct mm_struct {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct task_struct {
	struct mm_struct *mm;
} __attribute__((preserve_access_index));

/*
 * The kernel's dev_t (MINORBITS = 20) in the encoding stat(2) reports as
 * st_dev (new_encode_dev: minor's low byte, major, minor's high bits), so
 * the proxy can compare it with stat() of the policy's binaries as is.
 * glibc's makedev() agrees for every major below 4096, i.e. every kernel
 * dev_t (12 bits of major).
 */
static __always_inline __u64 pf_user_dev(__u32 kdev)
{
	__u32 major = kdev >> 20;
	__u32 minor = kdev & 0xfffff;

	return (minor & 0xff) | (major << 8) | ((__u64)(minor & ~0xffu) << 12);
}

/*
 * Fills exe_dev/exe_ino/exe_name of the record; only called by the programs
 * loaded with CAP_PERFMON (see above). A task without an mm (a kernel
 * thread) or a failed read leaves them 0, which no binaries rule matches.
 * io_uring's SQPOLL and io-wq threads share the submitter's mm, so their
 * connects carry the submitter's executable.
 */
static __always_inline void pf_capture_exe_id(struct pf_origin *o)
{
	struct task_struct *task;
	struct file *exe;
	__u32 kdev;

	task = bpf_get_current_task_btf();
	exe = BPF_CORE_READ(task, mm, exe_file);
	if (!exe)
		return;
	o->exe_ino = BPF_CORE_READ(exe, f_inode, i_ino);
	kdev = BPF_CORE_READ(exe, f_inode, i_sb, s_dev);
	o->exe_dev = pf_user_dev(kdev);
	bpf_probe_read_kernel_str(o->exe_name, sizeof(o->exe_name),
				  BPF_CORE_READ(exe, f_path.dentry, d_name.name));
}

#endif /* PF_IDENTITY_H */
