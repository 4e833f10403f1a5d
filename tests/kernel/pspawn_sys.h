/* A tiny user-space wrapper of the pspawn/ipspawn system calls: detection through
 * /sys/kernel/pspawn (the numbers are never hard-coded) and the raw calls. */
#ifndef PSPAWN_SYS_H
#define PSPAWN_SYS_H

#include <stddef.h>

#include "../../native/kernel/uapi/pspawn_syscall.h"

struct pspawn_sys {
    long pspawn_nr;
    long ipspawn_nr;
    int abi_version;
};

/* 1: the calls are there (sys filled in); 0: absent (no PSPAWN_SYSFS_DIR); -errno: the
 * directory is there but unusable (unreadable, malformed, or an ABI this code predates). */
int pspawn_sys_detect(struct pspawn_sys *sys);

/* Like the C library's wrappers: -1 with errno set on failure. size is sizeof *args
 * unless a test wants another one. */
long pspawn_sys_pspawn(const struct pspawn_sys *sys, struct pspawn_args *args, size_t size);
long pspawn_sys_ipspawn(const struct pspawn_sys *sys, struct pspawn_args *args, size_t size);

#endif
