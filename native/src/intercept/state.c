/* What a child of this process inherits from it, read from the process itself. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "intercept/intercept.h"

/* Every open descriptor (the child's table at clone time), with its close-on-exec flag. */
static int take_descriptors(struct psi_state *st)
{
    int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return -1;
    char buf[8192];
    long n;
    int rc = 0;
    st->fd_count = 0;
    while (rc == 0 && (n = syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0) {
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            if (d->d_name[0] < '0' || d->d_name[0] > '9')
                continue;
            int fd = atoi(d->d_name);
            int flags = fd == dir ? -1 : fcntl(fd, F_GETFD);
            if (flags < 0)
                continue;
            if (st->fd_count == PSI_MAX_STATE_FDS) {
                rc = -1;
                break;
            }
            st->fds[st->fd_count++] = (struct psi_fd){.target = fd, .source = fd, .cloexec = (flags & FD_CLOEXEC) != 0};
        }
    }
    close(dir);
    return n < 0 ? -1 : rc;
}

static void take_signals(struct psi_state *st)
{
    pthread_sigmask(SIG_BLOCK, NULL, &st->mask);
    sigemptyset(&st->ignored);
    st->sigchld_ignored = false;
    for (int s = 1; s < NSIG; s++) {
        struct sigaction act;
        if (sigaction(s, NULL, &act) != 0)
            continue;
        if (s == SIGCHLD && (act.sa_handler == SIG_IGN || (act.sa_flags & SA_NOCLDWAIT)))
            st->sigchld_ignored = true;
        if (act.sa_handler == SIG_IGN)
            sigaddset(&st->ignored, s);
    }
}

static void take_limits_and_scheduling(struct psi_state *st)
{
    for (int r = 0; r < RLIM_NLIMITS; r++)
        if (getrlimit((__rlimit_resource_t)r, &st->limits[r]) != 0)
            st->limits[r].rlim_cur = st->limits[r].rlim_max = RLIM_INFINITY;
    st->umask = psi_current_umask();
    if (sched_getaffinity(0, sizeof(st->affinity), &st->affinity) != 0)
        CPU_ZERO(&st->affinity);
    struct sched_param param = {0};
    st->policy = sched_getscheduler(0);
    st->sched_priority = sched_getparam(0, &param) == 0 ? param.sched_priority : -1;
    errno = 0;
    st->nice = getpriority(PRIO_PROCESS, 0);
    st->no_new_privs = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
}

/* The root directory: a chroot after the proxy started is one a zygote child would not get. */
static void take_root(struct psi_state *st)
{
    struct stat root;
    bool known = stat("/", &root) == 0;
    st->root_dev = known ? root.st_dev : 0;
    st->root_ino = known ? root.st_ino : 0;
}

int psi_state_take(struct psi_state *st, const char **why)
{
    st->pid = getpid();
    st->pgrp = getpgrp();
    st->sid = getsid(0);
    st->own_group_is_new = false;
    st->cwd_fd = -1;
    if (take_descriptors(st) != 0) {
        *why = "/proc/self/fd unreadable or too many descriptors";
        return -1;
    }
    take_signals(st);
    take_limits_and_scheduling(st);
    take_root(st);
    return 0;
}
