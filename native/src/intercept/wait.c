/* wait(), waitpid(), wait3(), wait4(), waitid(): the launcher's children without the
 * interceptor's own. A zygote's proxy is a child of the launcher (that is how the proxy's
 * children can be the launcher's), so a launcher waiting for *any* child would reap a
 * dead proxy, hear that a proxy stopped, or, once its own children are all reaped, block
 * for ever instead of failing with ECHILD (Perl's `1 while wait() != -1`, C's
 * `while (wait(NULL) > 0)`). For a wait that may return any child (pid -1, 0 or -group;
 * waitid P_ALL or P_PGID): news of a proxy is taken here and the wait goes on, and a wait
 * that finds nothing to report while no child of the launcher's own is left fails with
 * ECHILD, blocking or not (WNOHANG would say 0: a proxy still runs).
 * Waits for one pid (or a pidfd), or for clone children only, are the real calls.
 *
 * Async-signal-safe, as waitpid is (launchers call it in SIGCHLD handlers): the proxies'
 * pids are atomics, and /proc is read with system calls into stack buffers. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "intercept/intercept.h"

/* Whether the child `pid` is one the wait for (type, id) could return. */
static bool selected(pid_t pid, idtype_t type, id_t id)
{
    return type == P_ALL || (pid_t)syscall(SYS_getpgid, pid) == (pid_t)id;
}

/* Scans /proc/self/task/<tid>/children (pids separated by spaces) for a child of the
 * launcher's own that the wait selects. Returns 1 if one is there, 0 if not, -1 if the
 * file cannot be read (a kernel without CONFIG_PROC_CHILDREN). */
static int scan_children(const char *tid, idtype_t type, id_t id)
{
    char path[64] = "/proc/self/task/";
    char *at = path + strlen(path);
    size_t len = strnlen(tid, 16);
    memcpy(at, tid, len);
    memcpy(at + len, "/children", sizeof("/children"));
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[1024];
    long pid = 0;
    bool digits = false;
    int found = 0;
    ssize_t n;
    while (found == 0 && (n = (ssize_t)syscall(SYS_read, fd, buf, sizeof(buf))) > 0)
        for (ssize_t i = 0; i < n && found == 0; i++) {
            if (buf[i] >= '0' && buf[i] <= '9') {
                pid = pid * 10 + (buf[i] - '0');
                digits = true;
                continue;
            }
            if (digits && !psi_own_process((pid_t)pid) && selected((pid_t)pid, type, id))
                found = 1;
            pid = 0;
            digits = false;
        }
    if (found == 0 && digits && !psi_own_process((pid_t)pid) && selected((pid_t)pid, type, id))
        found = 1;
    syscall(SYS_close, fd);
    return found;
}

/* Whether the launcher has a child of its own (living or a zombie) that the wait could
 * return: 1, 0, or 1 when it cannot tell (then the wait is the real one). */
static int own_children_left(idtype_t type, id_t id)
{
    /* The calling thread's children first: usually the launcher's children are there. */
    char tid[16];
    char *end = tid + sizeof(tid);
    *--end = '\0';
    long t = syscall(SYS_gettid);
    do
        *--end = (char)('0' + t % 10);
    while ((t /= 10) > 0);
    if (scan_children(end, type, id) == 1)
        return 1;
    int dir = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return 1;
    char buf[2048];
    long n;
    int found = 0;
    while (found == 0 && (n = syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0)
        for (long off = 0; off < n && found == 0;) {
            struct linux_dirent64 {
                uint64_t d_ino;
                int64_t d_off;
                unsigned short d_reclen;
                unsigned char d_type;
                char d_name[];
            } *d = (struct linux_dirent64 *)(buf + off);
            off += d->d_reclen;
            if (d->d_name[0] >= '0' && d->d_name[0] <= '9') {
                int r = scan_children(d->d_name, type, id);
                found = r != 0; /* -1: cannot tell */
            }
        }
    syscall(SYS_close, dir);
    return found;
}

static pid_t real_wait4(pid_t pid, int *status, int options, struct rusage *usage)
{
    return (pid_t)syscall(SYS_wait4, pid, status, options, usage);
}

static int real_waitid(idtype_t type, id_t id, siginfo_t *info, int options)
{
    return (int)syscall(SYS_waitid, type, id, info, options, NULL);
}

/* A wait that may return one of our proxies. */
static bool may_see_own(bool any_child, int options)
{
    bool clone_only = (options & __WCLONE) && !(options & __WALL);
    return any_child && !clone_only && psi_own_any();
}

/* The event waitid left pending (WNOWAIT) for one of our proxies, taken. */
static void take_own_event(const siginfo_t *si, int options)
{
    int kind = si->si_code == CLD_STOPPED || si->si_code == CLD_TRAPPED ? WSTOPPED
               : si->si_code == CLD_CONTINUED                          ? WCONTINUED
                                                                        : WEXITED;
    siginfo_t ignored;
    memset(&ignored, 0, sizeof(ignored));
    (void)real_waitid(P_PID, (id_t)si->si_pid, &ignored, kind | WNOHANG | (options & (__WALL | __WCLONE)));
}

/* One wait4 or waitid call and what it returned. */
struct one_wait {
    bool waitid;
    pid_t pid; /* wait4 */
    int status;
    struct rusage *usage;
    idtype_t type; /* waitid */
    id_t id;
    siginfo_t info;
};

/* The pid the call returned: a child's, 0 when none was ready (WNOHANG), -1 on failure. */
static pid_t wait_once(struct one_wait *w, int options)
{
    if (!w->waitid)
        return real_wait4(w->pid, &w->status, options, w->usage);
    memset(&w->info, 0, sizeof(w->info));
    return real_waitid(w->type, w->id, &w->info, options) == 0 ? w->info.si_pid : -1;
}

/* A wait for any child in (type, id), without our processes: first without blocking;
 * nothing ready and no child of the launcher's own left is ECHILD; our processes' news is
 * taken and the wait goes on. errno is the caller's again unless it fails. */
static pid_t wait_without_own(struct one_wait *w, idtype_t type, id_t id, int options)
{
    int saved = errno;
    for (;;) {
        pid_t r = wait_once(w, options | WNOHANG);
        if (r == 0) {
            if (own_children_left(type, id) == 0) {
                errno = ECHILD;
                return -1;
            }
            if (!(options & WNOHANG))
                r = wait_once(w, options);
        }
        if (r > 0 && psi_own_process(r)) {
            if (w->waitid && (options & WNOWAIT))
                take_own_event(&w->info, options);
            continue; /* a proxy's news, taken: the launcher never had this child */
        }
        if (r >= 0)
            errno = saved;
        return r;
    }
}

__attribute__((visibility("default"))) pid_t wait4(pid_t pid, int *status, int options, struct rusage *usage)
{
    if (!may_see_own(pid <= 0, options))
        return real_wait4(pid, status, options, usage);
    struct one_wait w = {.pid = pid, .usage = usage};
    pid_t r = wait_without_own(&w, pid == -1 ? P_ALL : P_PGID, pid == 0 ? (id_t)getpgrp() : (id_t)-pid, options);
    if (r > 0 && status != NULL)
        *status = w.status;
    return r;
}

__attribute__((visibility("default"))) pid_t waitpid(pid_t pid, int *status, int options)
{
    return wait4(pid, status, options, NULL);
}

__attribute__((visibility("default"))) pid_t wait(int *status)
{
    return wait4(-1, status, 0, NULL);
}

__attribute__((visibility("default"))) pid_t wait3(int *status, int options, struct rusage *usage)
{
    return wait4(-1, status, options, usage);
}

__attribute__((visibility("default"))) int waitid(idtype_t type, id_t id, siginfo_t *info, int options)
{
    if (!may_see_own(type == P_ALL || type == P_PGID, options))
        return real_waitid(type, id, info, options);
    if (type == P_PGID && id == 0)
        id = (id_t)getpgrp(); /* waitid's "the caller's group" (Linux 5.4) */
    struct one_wait w = {.waitid = true, .type = type, .id = id};
    if (wait_without_own(&w, type, id, options) < 0)
        return -1;
    if (info != NULL)
        *info = w.info; /* all zero when nothing was ready (WNOHANG), as waitid leaves it */
    return 0;
}
