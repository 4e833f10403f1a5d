/* close, close_range, closefrom: in a child armed by the fork handoff, every descriptor
 * but the handoff socket (handoff.c), which the child does not know it has; a child that
 * closes "all descriptors above 2" before exec (Python's close_fds=True, daemons) can
 * still be served. Everywhere else they are libc's. May run in a vfork child: no
 * allocation, no lock. */
#include <errno.h>
#include <unistd.h>

#include "intercept/intercept.h"

#define API __attribute__((visibility("default")))

API int close(int fd)
{
    if (psi_real.close == NULL)
        psi_real_load();
    return fd >= 0 && fd == psi_handoff_fd() ? 0 : psi_real.close(fd);
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
    int keep = psi_handoff_fd();
    if (keep >= 0 && (unsigned)keep >= first && (unsigned)keep <= last)
        return close_around(first, last, flags, (unsigned)keep);
    return psi_real.close_range(first, last, flags);
}

API void closefrom(int lowfd)
{
    if (psi_real.closefrom == NULL)
        psi_real_load();
    int keep = psi_handoff_fd();
    if (keep >= 0 && lowfd >= 0 && keep >= lowfd)
        close_around((unsigned)lowfd, ~0u, 0, (unsigned)keep);
    else
        psi_real.closefrom(lowfd);
}
