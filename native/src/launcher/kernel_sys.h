/* The pspawn/ipspawn system calls of the patched kernel (native/kernel/): detection
 * through sysfs and the raw calls. Kept apart from pspawn.h, whose PSPAWN_MAX_SPAWNS is
 * the library's limit, not the kernel's. */
#ifndef PSPAWN_LAUNCHER_KERNEL_SYS_H
#define PSPAWN_LAUNCHER_KERNEL_SYS_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

struct psp_kernel_sys {
    long pspawn_nr;
    long ipspawn_nr;
    int max_spawns;   /* instances per call */
};

/* True if $PSPAWN_SYSFS_ROOT/sys/kernel/pspawn describes the calls with this library's
 * ABI version and numbers that answer a harmless probe as only these calls do (an
 * oversized argument block: E2BIG before anything is read). Absent, unreadable,
 * malformed, another ABI, numbers out of range, or a probe answered otherwise (ENOSYS,
 * EINVAL, anything): false. */
bool psp_kernel_detect(struct psp_kernel_sys *sys);

/* One call for n instances of `path`: argv[i]/envp[i] per instance; masks NULL (the
 * caller's affinity) or n cpu_set_t. Sync (pspawn): fills results[i] with pid or
 * -errno and returns 0. Async (ipspawn): returns 0 with *session_fd (non-blocking,
 * close-on-exec). A failure of the whole call: its errno. */
int psp_kernel_launch(const struct psp_kernel_sys *sys, bool async, const char *path, char *const *const *argv,
                      char *const *const *envp, const cpu_set_t *masks, int n, int32_t *results, int *session_fd);

/* Reads a session's n results once it is done: 0, EAGAIN (not yet), or an errno. */
int psp_kernel_read_session(int session_fd, int32_t *results, int n);

#endif
