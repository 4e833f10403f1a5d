/* What a posix_spawn child would have: the caller's descriptors after the file actions,
 * its working directory, signal mask and ignored signals, process group, session, limits,
 * umask and CPUs, expressed as options of the launcher core (launcher/attr_exact.c). File
 * actions run here, in the caller, in order, on a model of the child's descriptor table:
 * opens really open (in the caller: the same credentials, umask and working directory the
 * child would have), the rest only edit the model. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "intercept/intercept.h"
#include "launcher/internal.h"

#define MAX_MODEL 1024

struct slot {
    int target;   /* the child's descriptor number */
    int source;   /* the caller's descriptor that refers to the same file */
    bool cloexec; /* closed by exec: not in the child */
};

struct model {
    struct slot slots[MAX_MODEL];
    int count;
    int cwd_fd; /* -1: the caller's working directory */
};

static struct slot *find_slot(struct model *m, int target)
{
    for (int i = 0; i < m->count; i++)
        if (m->slots[i].target == target)
            return &m->slots[i];
    return NULL;
}

static void drop_slot(struct model *m, int target)
{
    struct slot *s = find_slot(m, target);
    if (s != NULL)
        *s = m->slots[--m->count];
}

static int put_slot(struct model *m, int target, int source, bool cloexec)
{
    drop_slot(m, target);
    if (m->count == MAX_MODEL)
        return -1;
    m->slots[m->count++] = (struct slot){.target = target, .source = source, .cloexec = cloexec};
    return 0;
}

static int keep_temp(struct psi_child *c, int fd)
{
    if (c->temp_count == PSI_MAX_TEMP_FDS) {
        close(fd);
        return -1;
    }
    c->temps[c->temp_count++] = fd;
    return 0;
}

/* A directory the child could chdir into: open it (O_PATH) and check search permission. */
static int open_directory(int at, const char *path, int *out)
{
    int fd = openat(at, path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    if (faccessat(fd, "", X_OK, AT_EACCESS | AT_EMPTY_PATH) != 0) {
        int err = errno;
        close(fd);
        return err;
    }
    *out = fd;
    return 0;
}

/* One file action, as glibc's child applies it (sysdeps/unix/sysv/linux/spawni.c). */
static int apply_action(struct psi_child *c, struct model *m, const struct psi_action *a)
{
    int at = m->cwd_fd >= 0 ? m->cwd_fd : AT_FDCWD;
    struct slot *s;
    int fd = -1, err;
    switch (a->kind) {
    case PSI_CLOSE: /* closing a descriptor that is not open is not an error */
        drop_slot(m, a->fd);
        return 0;
    case PSI_OPEN: {
        drop_slot(m, a->fd);
        if ((fd = openat(at, a->path, a->oflag | O_CLOEXEC, a->mode)) < 0)
            return errno;
        if (keep_temp(c, fd) != 0)
            return -1;
        return put_slot(m, a->fd, fd, false); /* O_CLOEXEC opens are left to the real call */
    }
    case PSI_DUP2:
        if ((s = find_slot(m, a->fd)) == NULL)
            return EBADF;
        if (a->fd == a->newfd) {
            s->cloexec = false; /* glibc: dup2 onto itself clears FD_CLOEXEC */
            return 0;
        }
        return put_slot(m, a->newfd, s->source, false);
    case PSI_CHDIR:
        if ((err = open_directory(at, a->path, &fd)) != 0)
            return err;
        if (keep_temp(c, fd) != 0)
            return -1;
        m->cwd_fd = fd;
        return 0;
    case PSI_FCHDIR:
        if ((s = find_slot(m, a->fd)) == NULL)
            return EBADF;
        if ((err = open_directory(s->source, ".", &fd)) != 0)
            return err;
        if (keep_temp(c, fd) != 0)
            return -1;
        m->cwd_fd = fd;
        return 0;
    case PSI_CLOSEFROM:
        for (int i = m->count - 1; i >= 0; i--)
            if (m->slots[i].target >= a->fd)
                m->slots[i] = m->slots[--m->count];
        return 0;
    case PSI_TCSETPGRP:
        return -1; /* refused by the precheck */
    }
    return -1;
}

int psi_child_precheck(const struct psi_actions *fa, const posix_spawnattr_t *sa, bool exe_relative,
                       const char **why)
{
    short flags = 0;
    if (sa != NULL && posix_spawnattr_getflags(sa, &flags) != 0) {
        *why = "attributes unreadable";
        return -1;
    }
    const short known = POSIX_SPAWN_RESETIDS | POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
                        POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSCHEDPARAM | POSIX_SPAWN_SETSCHEDULER |
                        POSIX_SPAWN_USEVFORK | POSIX_SPAWN_SETSID;
    if (flags & ~known) {
        *why = "unknown posix_spawnattr flag";
        return -1;
    }
    if (flags & (POSIX_SPAWN_SETSCHEDPARAM | POSIX_SPAWN_SETSCHEDULER)) {
        *why = "POSIX_SPAWN_SETSCHEDULER/SETSCHEDPARAM (not expressed by the core)";
        return -1;
    }
    if ((flags & POSIX_SPAWN_SETSID) && (flags & POSIX_SPAWN_SETPGROUP)) {
        *why = "SETSID with SETPGROUP (glibc's child fails setpgid)";
        return -1;
    }
    if ((flags & POSIX_SPAWN_RESETIDS) && (getuid() != geteuid() || getgid() != getegid())) {
        *why = "POSIX_SPAWN_RESETIDS with effective ids that differ";
        return -1;
    }
    bool leader = (flags & POSIX_SPAWN_SETSID) || getsid(0) == getpid();
    for (int i = 0; i < fa->count; i++) {
        const struct psi_action *a = &fa->items[i];
        if (a->kind == PSI_TCSETPGRP) {
            *why = "addtcsetpgrp_np (not expressed by the core)";
            return -1;
        }
        if ((a->kind == PSI_CHDIR || a->kind == PSI_FCHDIR) && exe_relative) {
            *why = "relative executable path after a chdir action";
            return -1;
        }
        /* glibc keeps O_CLOEXEC only when open returns the target itself, the lowest free
         * number, and our own descriptors are among the caller's: not modelled. */
        if (a->kind == PSI_OPEN && (a->oflag & O_CLOEXEC)) {
            *why = "addopen with O_CLOEXEC (its outcome depends on the lowest free descriptor)";
            return -1;
        }
        struct stat st;
        if (a->kind == PSI_OPEN && leader && !(a->oflag & O_NOCTTY) &&
            (stat(a->path, &st) != 0 || S_ISCHR(st.st_mode))) {
            *why = "open of a possible terminal by a session leader (would become its controlling tty)";
            return -1;
        }
    }
    return 0;
}

/* The child's working directory when it differs from the proxy's, as a path. */
static int working_directory(const struct model *m, const struct psi_snapshot *snap, const struct psi_state *st,
                             char *buf, size_t size, bool *set, const char **why)
{
    *set = false;
    int dir = m->cwd_fd >= 0 ? m->cwd_fd : st->cwd_fd;
    struct stat now;
    if (dir >= 0 ? fstat(dir, &now) != 0 : stat(".", &now) != 0) {
        *why = "working directory unreadable";
        return -1;
    }
    if (m->cwd_fd < 0 && now.st_dev == snap->cwd_dev && now.st_ino == snap->cwd_ino)
        return 0;
    if (dir >= 0) {
        char link[64];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", dir);
        ssize_t n = readlink(link, buf, size - 1);
        if (n <= 0 || (size_t)n >= size - 1 || buf[0] != '/' || strstr(buf, " (deleted)") != NULL) {
            *why = "the child's working directory has no path";
            return -1;
        }
        buf[n] = '\0';
    } else if (getcwd(buf, size) == NULL) {
        *why = "working directory has no path";
        return -1;
    }
    *set = true;
    return 0;
}

static int signal_state(pspawn_attr_t *attr, const struct psi_state *st, const posix_spawnattr_t *sa, short flags,
                        const char **why)
{
    if (st->sigchld_ignored) {
        *why = "SIGCHLD ignored or SA_NOCLDWAIT (children are auto-reaped)";
        return -1;
    }
    sigset_t mask = st->mask, ignored = st->ignored, defaults;
    sigemptyset(&defaults);
    if (flags & POSIX_SPAWN_SETSIGMASK)
        posix_spawnattr_getsigmask(sa, &mask);
    if (flags & POSIX_SPAWN_SETSIGDEF)
        posix_spawnattr_getsigdefault(sa, &defaults);
    for (int s = 1; s < NSIG; s++)
        if (sigismember(&defaults, s) == 1)
            sigdelset(&ignored, s);
    return psp_attr_set_signals(attr, &mask, &ignored);
}

/* Process group and session: the proxy's are the caller's at context creation. */
static int group_and_session(pspawn_attr_t *attr, const struct psi_state *st, const posix_spawnattr_t *sa,
                             short flags, const struct psi_snapshot *snap, const char **why)
{
    if (st->sid != snap->sid && !(flags & POSIX_SPAWN_SETSID)) {
        *why = "the caller changed session since the proxy started";
        return -1;
    }
    if (flags & POSIX_SPAWN_SETSID)
        return pspawn_attr_set_new_session(attr);
    if (flags & POSIX_SPAWN_SETPGROUP) {
        pid_t pgroup = 0;
        posix_spawnattr_getpgroup(sa, &pgroup);
        return pspawn_attr_set_process_group(attr, pgroup);
    }
    if (st->own_group_is_new && st->pgrp == st->pid)
        return pspawn_attr_set_process_group(attr, 0);
    return st->pgrp == snap->pgrp ? 0 : pspawn_attr_set_process_group(attr, st->pgrp);
}

/* Limits, umask, CPUs, priority: options where they changed since the proxy started. */
static int inherited_state(pspawn_attr_t *attr, const struct psi_state *st, const struct psi_snapshot *snap,
                           const char **why)
{
    for (int r = 0; r < RLIM_NLIMITS; r++) {
        const struct rlimit *now = &st->limits[r];
        if ((now->rlim_cur != snap->limits[r].rlim_cur || now->rlim_max != snap->limits[r].rlim_max) &&
            pspawn_attr_add_rlimit(attr, r, now->rlim_cur, now->rlim_max) != 0) {
            *why = "resource limits";
            return -1;
        }
    }
    if (st->umask < 0) {
        *why = "umask unknown";
        return -1;
    }
    if (st->umask != snap->umask && pspawn_attr_set_umask(attr, (mode_t)st->umask) != 0)
        return -1;
    if (CPU_COUNT(&st->affinity) > 0 && !CPU_EQUAL(&st->affinity, &snap->affinity) &&
        pspawn_attr_set_cpus(attr, &st->affinity) != 0)
        return -1;
    if (st->root_dev != snap->root_dev || st->root_ino != snap->root_ino) {
        *why = "the root directory changed (chroot) since the proxy started";
        return -1;
    }
    if (st->policy != snap->policy || st->sched_priority != snap->sched_priority || st->nice != snap->nice ||
        st->slice != snap->slice || st->no_new_privs != snap->no_new_privs) {
        *why = "scheduling policy, priority, nice value, slice or no_new_privs changed since the proxy started";
        return -1;
    }
    return 0;
}

static int descriptor_map(pspawn_attr_t *attr, const struct model *m, const struct psi_state *st, const char **why)
{
    int targets[PSP_MAX_FDMAP], sources[PSP_MAX_FDMAP];
    int n = 0, highest = 2;
    for (int i = 0; i < m->count; i++) {
        if (m->slots[i].cloexec)
            continue;
        if (n == PSP_MAX_FDMAP || m->slots[i].target >= PSP_MAX_FD_TARGET) {
            *why = "too many inherited descriptors, or one numbered 4096 or above";
            return -1;
        }
        targets[n] = m->slots[i].target;
        sources[n++] = m->slots[i].source;
        if (m->slots[i].target > highest)
            highest = m->slots[i].target;
    }
    if ((rlim_t)(highest + n + 8) > st->limits[RLIMIT_NOFILE].rlim_cur) {
        *why = "RLIMIT_NOFILE too low to place the descriptors";
        return -1;
    }
    return psp_attr_set_fd_map(attr, targets, sources, n);
}

int psi_child_build(struct psi_child *c, const struct psi_snapshot *snap, const struct psi_state *st,
                    const struct psi_actions *fa, const posix_spawnattr_t *sa, const char **why)
{
    c->attr = NULL;
    c->temp_count = 0;
    short flags = 0;
    if (sa != NULL)
        posix_spawnattr_getflags(sa, &flags);
    struct model *m = malloc(sizeof(*m));
    if (m == NULL || pspawn_attr_create(&c->attr) != 0) {
        free(m);
        *why = "out of memory";
        return -1;
    }
    m->count = 0;
    m->cwd_fd = -1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < st->fd_count; i++)
        if (put_slot(m, st->fds[i].target, st->fds[i].source, st->fds[i].cloexec) != 0) {
            *why = "too many descriptors for the model";
            rc = -1;
        }
    for (int i = 0; rc == 0 && i < fa->count; i++) {
        rc = apply_action(c, m, &fa->items[i]);
        if (rc < 0)
            *why = "too many descriptors for the model";
    }
    char cwd[PATH_MAX];
    bool cwd_set = false;
    if (rc == 0 && (working_directory(m, snap, st, cwd, sizeof(cwd), &cwd_set, why) != 0 ||
                    (cwd_set && pspawn_attr_set_cwd(c->attr, cwd) != 0)))
        rc = -1;
    if (rc == 0 &&
        (signal_state(c->attr, st, sa, flags, why) != 0 || group_and_session(c->attr, st, sa, flags, snap, why) != 0 ||
         inherited_state(c->attr, st, snap, why) != 0 || descriptor_map(c->attr, m, st, why) != 0 ||
         psp_attr_reply_early(c->attr) != 0)) {
        if (*why == NULL)
            *why = "option refused";
        rc = -1;
    }
    free(m);
    if (rc != 0)
        psi_child_done(c);
    return rc;
}

void psi_child_done(struct psi_child *c)
{
    pspawn_attr_destroy(c->attr);
    c->attr = NULL;
    for (int i = 0; i < c->temp_count; i++)
        close(c->temps[i]);
    c->temp_count = 0;
}

int psi_snapshot_take(struct psi_snapshot *s, const char *path)
{
    memset(s, 0, sizeof(*s));
    struct stat cwd;
    if (stat(path, &s->exe) != 0 || stat(".", &cwd) != 0)
        return -1;
    s->cwd_dev = cwd.st_dev;
    s->cwd_ino = cwd.st_ino;
    struct stat root;
    if (stat("/", &root) != 0)
        return -1;
    s->root_dev = root.st_dev;
    s->root_ino = root.st_ino;
    s->pgrp = getpgrp();
    s->sid = getsid(0);
    for (int r = 0; r < RLIM_NLIMITS; r++)
        getrlimit((__rlimit_resource_t)r, &s->limits[r]);
    sched_getaffinity(0, sizeof(s->affinity), &s->affinity);
    struct sched_param param = {0};
    s->policy = sched_getscheduler(0);
    sched_getparam(0, &param);
    s->sched_priority = param.sched_priority;
    s->nice = getpriority(PRIO_PROCESS, 0);
    s->slice = psi_slice_current();
    s->no_new_privs = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
    s->umask = psi_current_umask();
    s->ns_mark = psi_namespace_mark();
    psi_identity_take(&s->identity);
    return 0;
}

bool psi_root_unchanged(const struct psi_snapshot *s)
{
    struct stat root;
    return stat("/", &root) == 0 && root.st_dev == s->root_dev && root.st_ino == s->root_ino;
}
