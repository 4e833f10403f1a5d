/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * pspawn(2) and ipspawn(2): launch many instances of one executable in one system call.
 *
 * The one definition of what the kernel and user space share. The kernel patch carries a
 * verbatim copy of this file as include/uapi/linux/pspawn.h (tests/kernel/run.sh checks
 * that the two are identical); user space includes it without any kernel header.
 *
 *   long pspawn(struct pspawn_args *args, size_t size);
 *   long ipspawn(struct pspawn_args *args, size_t size);
 *
 * The system call numbers are not fixed: read them from PSPAWN_SYSFS_DIR/pspawn_nr and
 * PSPAWN_SYSFS_DIR/ipspawn_nr, and PSPAWN_SYSFS_DIR/abi_version, on the running kernel.
 */
#ifndef _UAPI_LINUX_PSPAWN_H
#define _UAPI_LINUX_PSPAWN_H

#ifdef __KERNEL__
#include <linux/types.h>
#define __PSPAWN_U64 __aligned_u64
#define __PSPAWN_U32 __u32
#define __PSPAWN_S32 __s32
#else
#include <stdint.h>
#define __PSPAWN_U64 uint64_t __attribute__((aligned(8)))
#define __PSPAWN_U32 uint32_t
#define __PSPAWN_S32 int32_t
#endif

#define PSPAWN_ABI_VERSION	1
#define PSPAWN_SYSFS_DIR	"/sys/kernel/pspawn"

/*
 * The argument block, passed with its size (clone3 style): a kernel accepts any size from
 * PSPAWN_ARGS_SIZE_VER0 up, as long as the bytes it does not know are zero. Pointers are
 * user addresses stored in 64 bits.
 */
struct pspawn_args {
	/* const char *: the executable, resolved as execve(2) does (relative to the cwd). */
	__PSPAWN_U64 filename;
	/*
	 * const char *const *const *: nspawns argument vectors, one per instance, each a
	 * NULL-terminated array of strings with at least argv[0]. With PSPAWN_SHARED_ARGV,
	 * a single vector (const char *const *) used by every instance.
	 */
	__PSPAWN_U64 argv;
	/* The environments, as argv (PSPAWN_SHARED_ENVP). 0: every instance's is empty. */
	__PSPAWN_U64 envp;
	/*
	 * nspawns CPU masks of cpumask_size bytes each, in sched_setaffinity(2) format:
	 * instance i runs on mask i from before its first instruction. With
	 * PSPAWN_SHARED_CPUMASK, one mask for all. 0: the caller's affinity is inherited.
	 */
	__PSPAWN_U64 cpumasks;
	/* pspawn only: int32_t[nspawns], filled with each instance's pid or -errno. */
	__PSPAWN_U64 pids;
	__PSPAWN_U64 flags;		/* PSPAWN_* below */
	__PSPAWN_U32 nspawns;		/* 1 .. PSPAWN_MAX_SPAWNS */
	__PSPAWN_U32 cpumask_size;	/* bytes per mask, 1 .. PSPAWN_MAX_CPUMASK_SIZE; 0 without masks */
};

#define PSPAWN_ARGS_SIZE_VER0	56	/* sizeof first published struct */

/* flags */
#define PSPAWN_SHARED_ARGV	(1ULL << 0)	/* argv is one vector for all instances */
#define PSPAWN_SHARED_ENVP	(1ULL << 1)	/* envp is one vector for all instances */
#define PSPAWN_SHARED_CPUMASK	(1ULL << 2)	/* cpumasks is one mask for all instances */
#define PSPAWN_SESSION_NONBLOCK	(1ULL << 3)	/* ipspawn: the session fd is O_NONBLOCK */
#define PSPAWN_FLAGS_ALL	(PSPAWN_SHARED_ARGV | PSPAWN_SHARED_ENVP | \
				 PSPAWN_SHARED_CPUMASK | PSPAWN_SESSION_NONBLOCK)

/* Limits: a call outside them fails as a whole (EINVAL). */
#define PSPAWN_MAX_SPAWNS	8192
#define PSPAWN_MAX_CPUMASK_SIZE	4096
/*
 * Bytes of strings and pointers copied per call (all instances together) and per
 * instance: an instance beyond them fails alone with E2BIG, as does one with a string
 * longer than 32 pages (MAX_ARG_STRLEN) or arguments execve(2) would refuse.
 */
#define PSPAWN_MAX_TOTAL_BYTES		(32U << 20)
#define PSPAWN_MAX_INSTANCE_BYTES	(6U << 20)

/*
 * ipspawn returns a session file descriptor (close-on-exec). It polls readable
 * (POLLIN) once every instance has exec'd or failed. read(2) blocks until then (or fails
 * with EAGAIN on a non-blocking descriptor) and returns one pspawn_result_t per instance,
 * in instance order, from the file position on; 0 (end of file) after the last. The count
 * must be at least sizeof(pspawn_result_t); only whole results are returned.
 */
typedef __PSPAWN_S32 pspawn_result_t;	/* pid (> 0) or -errno */

#endif /* _UAPI_LINUX_PSPAWN_H */
