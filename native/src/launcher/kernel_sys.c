/* Detection and the raw pspawn/ipspawn calls (see kernel_sys.h). The numbers come from
 * sysfs, never from this file: a kernel that took other free numbers still works. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../kernel/uapi/pspawn_syscall.h"
#include "launcher/kernel_sys.h"
#include "launcher/topology.h"

/* The patch takes free numbers after the last x86-64 call of 6.1 (450,
 * set_mempolicy_home_node), below the x32 range (512): anything else is not it, and
 * is never probed (a wrong number could be any call). */
#define PSP_KERNEL_NR_MIN 451
#define PSP_KERNEL_NR_MAX 511
#define PSP_KERNEL_PROBE_SIZE 8192 /* above PAGE_SIZE: the calls' first check says E2BIG */

/* $root/sys/kernel/pspawn/name as one decimal number in [lo, hi]; false otherwise. */
static bool read_number(const char *name, long lo, long hi, long *value)
{
    char path[PATH_MAX], text[32], *end;
    if (snprintf(path, sizeof(path), "%s%s/%s", psp_topology_root(), PSPAWN_SYSFS_DIR, name) >= (int)sizeof(path))
        return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return false;
    text[n] = '\0';
    errno = 0;
    *value = strtol(text, &end, 10);
    return errno == 0 && end != text && (*end == '\n' || *end == '\0') && *value >= lo && *value <= hi;
}

/* The real calls refuse an argument block larger than a page before reading it. */
static bool answers_probe(long nr)
{
    long r = syscall(nr, NULL, (size_t)PSP_KERNEL_PROBE_SIZE, 0L, 0L, 0L, 0L);
    return r == -1 && errno == E2BIG;
}

bool psp_kernel_detect(struct psp_kernel_sys *sys)
{
    long abi, max_spawns;
    memset(sys, 0, sizeof(*sys));
    if (!read_number("abi_version", 1, INT_MAX, &abi) || abi != PSPAWN_ABI_VERSION ||
        !read_number("pspawn_nr", PSP_KERNEL_NR_MIN, PSP_KERNEL_NR_MAX, &sys->pspawn_nr) ||
        !read_number("ipspawn_nr", PSP_KERNEL_NR_MIN, PSP_KERNEL_NR_MAX, &sys->ipspawn_nr) ||
        sys->pspawn_nr == sys->ipspawn_nr)
        return false;
    if (!read_number("max_spawns", 1, PSPAWN_MAX_SPAWNS, &max_spawns))
        max_spawns = PSPAWN_MAX_SPAWNS; /* the header's limit, which every kernel of this ABI has */
    sys->max_spawns = (int)max_spawns;
    int saved = errno;
    bool ok = answers_probe(sys->pspawn_nr) && answers_probe(sys->ipspawn_nr);
    errno = saved;
    return ok;
}

int psp_kernel_launch(const struct psp_kernel_sys *sys, bool async, const char *path, char *const *const *argv,
                      char *const *const *envp, const cpu_set_t *masks, int n, int32_t *results, int *session_fd)
{
    struct pspawn_args a;
    memset(&a, 0, sizeof(a));
    a.filename = (uint64_t)(uintptr_t)path;
    a.argv = (uint64_t)(uintptr_t)argv;
    a.envp = (uint64_t)(uintptr_t)envp;
    a.nspawns = (uint32_t)n;
    if (masks != NULL) {
        a.cpumasks = (uint64_t)(uintptr_t)masks;
        a.cpumask_size = sizeof(cpu_set_t);
    }
    if (async) {
        a.flags = PSPAWN_SESSION_NONBLOCK;
        long fd = syscall(sys->ipspawn_nr, &a, sizeof(a));
        if (fd < 0)
            return errno;
        *session_fd = (int)fd;
        return 0;
    }
    a.pids = (uint64_t)(uintptr_t)results;
    return syscall(sys->pspawn_nr, &a, sizeof(a)) < 0 ? errno : 0;
}

int psp_kernel_read_session(int session_fd, int32_t *results, int n)
{
    size_t want = (size_t)n * sizeof(pspawn_result_t), got = 0;
    while (got < want) {
        ssize_t r = read(session_fd, (char *)results + got, want - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno; /* EAGAIN: not done yet (nothing is returned before that) */
        if (r == 0)
            return EPROTO; /* fewer results than instances */
        got += (size_t)r;
    }
    return 0;
}
