/* Exact child state for the interceptor (PSP_OPT_FDMAP, PSP_OPT_SIGMASK, PSP_OPT_SIGIGN):
 * the descriptors, signal mask and ignored signals a posix_spawn child would have had. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proxy/proxy.h"

static const int32_t *fdmap_targets(const struct psp_wire_options *o)
{
    return (const int32_t *)((const char *)o + o->fdmap_offset);
}

/* One above the highest target (at least 3): everything kept is moved there first. */
int psp_fdmap_floor(const struct psp_wire_options *o)
{
    const int32_t *targets = fdmap_targets(o);
    int floor = 3;
    for (uint32_t i = 0; i < o->fdmap_count; i++)
        if (targets[i] + 1 > floor)
            floor = targets[i] + 1;
    return floor;
}

int psp_child_place_fds(const struct psp_wire_options *o, const int *fds, int *error_fd)
{
    int floor = psp_fdmap_floor(o);
    if (*error_fd >= 0 && (*error_fd = fcntl(*error_fd, F_DUPFD_CLOEXEC, floor)) < 0)
        return errno;
    int moved[PSP_MAX_FDMAP];
    for (uint32_t i = 0; i < o->fdmap_count; i++)
        if ((moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, floor)) < 0)
            return errno;
    const int32_t *targets = fdmap_targets(o);
    for (uint32_t i = 0; i < o->fdmap_count; i++)
        if (dup2(moved[i], targets[i]) < 0) /* the target loses FD_CLOEXEC, as exec keeps it */
            return errno;
    return 0;
}

void psp_child_close_unmapped(const struct psp_wire_options *o)
{
    unsigned char keep[PSP_MAX_FD_TARGET / 8];
    memset(keep, 0, sizeof(keep));
    const int32_t *targets = fdmap_targets(o);
    for (uint32_t i = 0; i < o->fdmap_count; i++)
        keep[targets[i] / 8] |= (unsigned char)(1u << (targets[i] % 8));
    int floor = psp_fdmap_floor(o);
    int gap = -1;
    for (int fd = 0; fd < floor; fd++) {
        bool kept = (keep[fd / 8] >> (fd % 8)) & 1u;
        if (!kept && gap < 0)
            gap = fd;
        if (kept && gap >= 0) {
            syscall(SYS_close_range, (unsigned)gap, (unsigned)(fd - 1), 0u);
            gap = -1;
        }
    }
    syscall(SYS_close_range, (unsigned)(gap >= 0 ? gap : floor), ~0u, 0u);
}

static void mask_from_bits(uint64_t bits, sigset_t *set)
{
    sigemptyset(set);
    for (int s = 1; s <= 64; s++)
        if (bits & (1ull << (s - 1)))
            sigaddset(set, s);
}

void psp_child_restore_signals(const struct psp_proxy *p, const struct psp_wire_options *o)
{
    if (o != NULL && (o->set & PSP_OPT_SIGIGN)) {
        struct sigaction ignore = {.sa_handler = SIG_IGN};
        for (int s = 1; s <= 64; s++)
            if ((o->sigignore & (1ull << (s - 1))) && s != SIGKILL && s != SIGSTOP)
                sigaction(s, &ignore, NULL); /* glibc's internal signals refuse: harmless */
    }
    if (o != NULL && (o->set & PSP_OPT_SIGMASK)) {
        sigset_t mask;
        mask_from_bits(o->sigmask, &mask);
        sigprocmask(SIG_SETMASK, &mask, NULL);
    } else {
        sigprocmask(SIG_SETMASK, &p->saved_mask, NULL);
    }
}
