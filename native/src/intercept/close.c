/* close, close_range, closefrom, dup2, dup3. In a child armed by the fork handoff, the
 * closes spare the handoff socket (handoff.c), which the child does not know it has: a
 * child that closes "all descriptors above 2" before exec (Python's close_fds=True,
 * daemons) can still be served. In the launcher they first tell own.c which numbers it is
 * taking back, so that a zygote holding one of them is abandoned instead of using (or
 * later closing) a descriptor that is now the launcher's; the call itself is libc's. May
 * run in a vfork child: no allocation, no lock. */
#include <errno.h>
#include <linux/close_range.h>
#include <unistd.h>

#include "intercept/intercept.h"

#define API __attribute__((visibility("default")))

/* The launcher (not the interceptor itself) takes first..last back. */
static void taken(unsigned first, unsigned last)
{
    if (!psi_busy)
        psi_own_fds_taken(first, last);
}

API int close(int fd)
{
    if (psi_real.close == NULL)
        psi_real_load();
    if (fd >= 0 && fd == psi_handoff_fd())
        return 0;
    if (fd >= 0)
        taken((unsigned)fd, (unsigned)fd);
    return psi_real.close(fd);
}

API int dup2(int oldfd, int newfd)
{
    if (psi_real.dup2 == NULL)
        psi_real_load();
    if (newfd >= 0 && newfd != oldfd)
        taken((unsigned)newfd, (unsigned)newfd);
    return psi_real.dup2(oldfd, newfd);
}

API int dup3(int oldfd, int newfd, int flags)
{
    if (psi_real.dup3 == NULL)
        psi_real_load();
    if (newfd >= 0 && newfd != oldfd)
        taken((unsigned)newfd, (unsigned)newfd);
    return psi_real.dup3(oldfd, newfd, flags);
}

/* [first, last] without the handoff socket at `keep`. */
static int close_around(unsigned first, unsigned last, int flags, unsigned keep)
{
    int rc = 0;
    if (keep > first)
        rc = psi_real.close_range(first, keep - 1, flags);
    if (rc == 0 && keep < last)
        rc = psi_real.close_range(keep + 1, last, flags);
    return rc;
}

API int close_range(unsigned first, unsigned last, int flags)
{
    if (psi_real.close_range == NULL)
        psi_real_load();
    if (psi_real.close_range == NULL) {
        errno = ENOSYS;
        return -1;
    }
    if (!(flags & CLOSE_RANGE_CLOEXEC))
        taken(first, last);
    int keep = psi_handoff_fd();
    if (keep >= 0 && (unsigned)keep >= first && (unsigned)keep <= last)
        return close_around(first, last, flags, (unsigned)keep);
    return psi_real.close_range(first, last, flags);
}

API void closefrom(int lowfd)
{
    if (psi_real.closefrom == NULL)
        psi_real_load();
    if (lowfd >= 0)
        taken((unsigned)lowfd, ~0u);
    int keep = psi_handoff_fd();
    if (keep >= 0 && lowfd >= 0 && keep >= lowfd)
        close_around((unsigned)lowfd, ~0u, 0, (unsigned)keep);
    else
        psi_real.closefrom(lowfd);
}
