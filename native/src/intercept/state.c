/* What a child of this process inherits from it, read from the process itself. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "intercept/intercept.h"

/* What /proc/self/status says that system calls would take many calls to learn. */
struct status_facts {
    int fd_table_size; /* FDSize: every open descriptor is below it */
    uint64_t ignored;  /* SigIgn: bit s - 1 for signal s */
};

static bool take_status(struct status_facts *facts)
{
    char status[8192];
    if (psi_read_text("/proc/self/status", status, sizeof(status)) <= 0)
        return false;
    const char *size = strstr(status, "\nFDSize:");
    const char *ignored = strstr(status, "\nSigIgn:");
    if (size == NULL || ignored == NULL)
        return false;
    facts->fd_table_size = atoi(size + sizeof("\nFDSize:") - 1);
    facts->ignored = strtoull(ignored + sizeof("\nSigIgn:") - 1, NULL, 16);
    return facts->fd_table_size > 0;
}

static int add_descriptor(struct psi_state *st, int fd, int flags)
{
    if (st->fd_count == PSI_MAX_STATE_FDS)
        return -1;
    st->fds[st->fd_count++] = (struct psi_fd){.target = fd, .source = fd, .cloexec = (flags & FD_CLOEXEC) != 0};
    return 0;
}

/* Every open descriptor from /proc/self/fd (see PSI_FD_SCAN_MAX_*). */
static int list_descriptors(struct psi_state *st)
{
    int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return -1;
    char buf[8192];
    long n;
    int rc = 0;
    while (rc == 0 && (n = syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0) {
        for (long off = 0; off < n && rc == 0;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            if (d->d_name[0] < '0' || d->d_name[0] > '9')
                continue;
            int fd = atoi(d->d_name);
            int flags = fd == dir ? -1 : fcntl(fd, F_GETFD);
            if (flags >= 0)
                rc = add_descriptor(st, fd, flags);
        }
    }
    close(dir);
    return n < 0 ? -1 : rc;
}

/* Every open descriptor (the child's table at clone time), with its close-on-exec flag:
 * an F_GETFD of each number below the table's size (~0.2 µs each; poll() would be one
 * call, but it reports O_PATH descriptors as closed), or the /proc listing for a large
 * table. */
static int take_descriptors(struct psi_state *st, int fd_table_size, int scan_max)
{
    st->fd_count = 0;
    if (fd_table_size > scan_max)
        return list_descriptors(st);
    for (int fd = 0; fd < fd_table_size; fd++) {
        int flags = fcntl(fd, F_GETFD);
        if (flags >= 0 && add_descriptor(st, fd, flags) != 0)
            return -1;
    }
    return 0;
}

/* Handled signals are reset by exec; the ignored ones stay ignored. */
static void take_signals(struct psi_state *st, uint64_t ignored)
{
    pthread_sigmask(SIG_BLOCK, NULL, &st->mask);
    sigemptyset(&st->ignored);
    for (int s = 1; s < NSIG && s <= 64; s++)
        if (ignored & (UINT64_C(1) << (s - 1)))
            sigaddset(&st->ignored, s); /* refuses glibc's internal signals, which it never ignores */
    struct sigaction act;
    st->sigchld_ignored =
        sigaction(SIGCHLD, NULL, &act) == 0 && (act.sa_handler == SIG_IGN || (act.sa_flags & SA_NOCLDWAIT) != 0);
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
    st->slice = psi_slice_current();
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

int psi_state_take(struct psi_state *st, int scan_max, const char **why)
{
    st->pid = getpid();
    st->pgrp = getpgrp();
    st->sid = getsid(0);
    st->own_group_is_new = false;
    st->cwd_fd = -1;
    struct status_facts facts;
    if (!take_status(&facts)) {
        *why = "/proc/self/status unreadable";
        return -1;
    }
    if (take_descriptors(st, facts.fd_table_size, scan_max) != 0) {
        *why = "/proc/self/fd unreadable or too many descriptors";
        return -1;
    }
    take_signals(st, facts.ignored);
    take_limits_and_scheduling(st);
    take_root(st);
    return 0;
}
