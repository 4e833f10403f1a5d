/* PSPAWN_CTX_FDS_ABOVE_LIMIT: the descriptors a context keeps, moved to numbers at or
 * above the caller's soft RLIMIT_NOFILE, so that they take nothing from its budget: a
 * caller that opens files up to its limit gets as many as it would without us (the
 * interceptor sets it; a launcher never asked for our descriptors).
 *
 * The kernel checks the limit only when it allocates a number, so the soft limit is raised
 * for the moves and put back at once. They stay where they are when that cannot be done
 * safely: the soft limit equals the hard one (it cannot be raised), it is above
 * PSP_LIFT_MAX_LIMIT (every fork copies a descriptor table sized to the highest open
 * number), or the process has other threads (one could start a child, which inherits the
 * limit, inside the window). */
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/self.h"
#include "launcher/internal.h"

#define PSP_LIFT_MAX_LIMIT 65536

void psp_lift_fds(int *const fds[], int count)
{
    struct rlimit lim;
    if (count <= 0 || getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max ||
        lim.rlim_cur > PSP_LIFT_MAX_LIMIT || psp_thread_count() != 1)
        return;
    struct rlimit raised = lim;
    raised.rlim_cur = lim.rlim_cur + (rlim_t)count + PSP_MAX_FDS_PER_MESSAGE;
    if (raised.rlim_cur > lim.rlim_max)
        raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0)
        return;
    for (int i = 0; i < count; i++) {
        int fd = *fds[i];
        if (fd < 0 || (rlim_t)fd >= lim.rlim_cur)
            continue;
        int high = fcntl(fd, F_DUPFD_CLOEXEC, (int)lim.rlim_cur);
        if (high < 0)
            break; /* the raised range is full: the rest stay */
        close(fd);
        *fds[i] = high;
    }
    (void)setrlimit(RLIMIT_NOFILE, &lim);
}

void psp_channel_lift_fds(struct psp_channel *ch)
{
    int *fds[4 + PSP_RING_SLOTS + PSP_POOL_MAX];
    int n = 0;
    fds[n++] = &ch->reply_fd;
    fds[n++] = &ch->doorbell_fd;
    fds[n++] = &ch->socket_fd;
    fds[n++] = &ch->proxy_pidfd;
    for (unsigned k = 0; k < PSP_RING_SLOTS; k++)
        fds[n++] = &ch->slot_fds[k];
    for (int k = 0; k < ch->pool_fd_count && k < (int)PSP_POOL_MAX; k++)
        fds[n++] = &ch->pool_fds[k];
    psp_lift_fds(fds, n);
}
