/* fork(): the launcher's side of the fork handoff (intercept.h). fork() returns only
 * once its child has exec'd, exited, sent its exec to be served, or taken longer than
 * PSPAWN_INTERCEPT_FORK_WAIT_MS (the wait a vfork parent makes anyway, bounded). All
 * signals stay blocked meanwhile, so no handler of the launcher can reap the forked
 * child, which must vanish unseen when a zygote child takes its place. Only for
 * single-threaded launchers, unless PSPAWN_INTERCEPT_THREADS=1: another thread could
 * wait for any child and see the vanishing one. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/protocol.h"
#include "common/self.h"
#include "intercept/intercept.h"

/* Children that took longer than the wait: after this many, fork is only fork. */
#define MAX_TIMEOUTS 16
/* How often a waiting fork looks whether its child sleeps. */
#define CHECK_MS 2

static int timeouts;

static bool sigchld_reaps(void)
{
    struct sigaction act;
    return sigaction(SIGCHLD, NULL, &act) != 0 || act.sa_handler == SIG_IGN || (act.sa_flags & SA_NOCLDWAIT);
}

static bool eligible(void)
{
    return psi_loaded() && !psi_config.disabled && psi_config.fork && psi_busy == 0 &&
           __atomic_load_n(&timeouts, __ATOMIC_RELAXED) < MAX_TIMEOUTS && !sigchld_reaps() &&
           (psi_config.threads || psp_thread_count() == 1);
}

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* One request from the child, with its descriptors (closed here); the pid served or 0.
 * -1: nothing came (the child exec'd or exited, or the wait is over). */
static pid_t receive_and_serve(int sock)
{
    size_t cap = PSI_HANDOFF_MAX_MESSAGE;
    void *buf = malloc(cap);
    if (buf == NULL)
        return 0;
    union {
        char buf[CMSG_SPACE(sizeof(int) * PSP_MAX_FDS_PER_MESSAGE)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf)};
    ssize_t n;
    do
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    int fds[PSP_MAX_FDS_PER_MESSAGE], nfds = 0;
    for (struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL; c != NULL; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < k && nfds < PSP_MAX_FDS_PER_MESSAGE; i++)
                memcpy(&fds[nfds++], CMSG_DATA(c) + (size_t)i * sizeof(int), sizeof(int));
        }
    pid_t served = -1;
    if (n > 0)
        served = (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ? 0 : psi_handoff_serve(buf, (size_t)n, fds, nfds);
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    free(buf);
    return served;
}

/* The child is gone and reaped; a SIGCHLD it left pending is taken back unless another
 * child has something to report too (asked with the system call itself: not through our
 * waitid, which would scan /proc for the launcher's children; news of a proxy only makes
 * a SIGCHLD whose waits find nothing). */
static void reap_unseen(pid_t child)
{
    int status;
    while (waitpid(child, &status, __WALL) < 0 && errno == EINTR)
        ;
    sigset_t pending, only;
    if (sigpending(&pending) != 0 || sigismember(&pending, SIGCHLD) != 1)
        return;
    sigemptyset(&only);
    sigaddset(&only, SIGCHLD);
    struct timespec zero = {0, 0};
    sigtimedwait(&only, NULL, &zero);
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    if (syscall(SYS_waitid, P_ALL, 0, &info, WEXITED | WSTOPPED | WCONTINUED | WNOHANG | WNOWAIT, NULL) == 0 &&
        info.si_pid != 0)
        kill(getpid(), SIGCHLD);
}

/* True if `child` sleeps (state S) or is stopped: it waits for something — often for
 * this parent, which waits for it (bash with job control makes each job's first child
 * wait until the parent has forked the whole pipeline). */
static bool waits_for_something(pid_t child)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)child);
    if (psi_read_text(path, buf, sizeof(buf)) <= 0)
        return false;
    const char *end = strrchr(buf, ')');
    return end != NULL && end[1] == ' ' && (end[2] == 'S' || end[2] == 'T' || end[2] == 't');
}

/* The pid fork() returns for `child`. */
static pid_t await_exec(pid_t child, int sock, bool until_exec)
{
    int64_t start = now_us(), deadline = start + (int64_t)psi_config.fork_wait_ms * 1000;
    for (;;) {
        int64_t left = deadline - now_us();
        struct pollfd p = {.fd = sock, .events = POLLIN};
        int slice = left > 0 ? (int)((left + 999) / 1000) : 0;
        int n = until_exec ? poll(&p, 1, -1) : slice > 0 ? poll(&p, 1, slice < CHECK_MS ? slice : CHECK_MS) : 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 && !until_exec && slice > CHECK_MS) {
            if (!waits_for_something(child))
                continue;
            /* It may sleep waiting for our reply: its request came in since the poll. */
            if (poll(&p, 1, 0) != 1) {
                psi_log("fork: child %d sleeps before exec (waiting for its parent?): it execs by itself",
                        (int)child);
                return child;
            }
            n = 1;
        }
        if (n <= 0) {
            if (n == 0) {
                int late = __atomic_add_fetch(&timeouts, 1, __ATOMIC_RELAXED);
                psi_log("fork: child %d did not exec within %d ms: it execs by itself", (int)child,
                        psi_config.fork_wait_ms);
                if (late == MAX_TIMEOUTS)
                    psi_log("fork: %d children did not exec in time: fork is no longer intercepted", late);
            }
            return child; /* closing the socket tells the child to exec for real */
        }
        int64_t asked = now_us();
        pid_t served = receive_and_serve(sock);
        if (served < 0)
            return child; /* it exec'd or exited by itself */
        struct psi_handoff_reply reply = {.magic = PSI_HANDOFF_MAGIC, .pid = served};
        ssize_t sent;
        do
            sent = send(sock, &reply, sizeof(reply), MSG_NOSIGNAL);
        while (sent < 0 && errno == EINTR);
        if (served == 0)
            return child;
        int64_t replied = now_us();
        reap_unseen(child); /* it exits on the reply, or died waiting for it: either way */
        psi_log("fork: pid %d served in %lld us (child's request after %lld us, served in %lld us)", (int)served,
                (long long)(now_us() - start), (long long)(asked - start), (long long)(replied - asked));
        return served;
    }
}

/* A real fork whose parent waits for the handoff; until_exec: as long as the child
 * needs (vfork's suspension), else at most the fork wait. */
static pid_t handoff_fork(bool until_exec)
{
    int saved = errno;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        errno = saved;
        return psi_real.fork();
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    psi_slice_undo(); /* a forked child forking: its own slice first, then its child's */
    uint64_t slice = 0;
    bool shorten = psi_slice_applies(&slice);
    pid_t child = psi_real.fork();
    if (child == 0) {
        if (shorten)
            psi_slice_inherit(slice);
        close(sv[0]);
        psi_handoff_arm(sv[1], shorten);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        errno = saved;
        return 0;
    }
    int err = errno;
    if (shorten && child > 0) {
        psi_slice_shorten(child, slice);
        while (send(sv[0], "s", 1, MSG_NOSIGNAL) < 0 && errno == EINTR) /* the note (psi_handoff_settle) */
            ;
    }
    close(sv[1]);
    pid_t result = child;
    if (child > 0) {
        psi_busy++;
        result = await_exec(child, sv[0], until_exec);
        psi_busy--;
        if (shorten && result == child) /* not served: it runs on, or exec'd by a raw system call */
            psi_slice_restore(child, slice);
    }
    close(sv[0]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = child > 0 ? saved : err;
    return result;
}

__attribute__((visibility("default"))) pid_t fork(void)
{
    if (psi_real.fork == NULL)
        psi_real_load();
    return eligible() ? handoff_fork(false) : psi_real.fork();
}

bool psi_vfork_takes_handoff(void)
{
    if (psi_real.fork == NULL || psi_real_vfork == NULL)
        psi_real_load();
    psi_slice_undo(); /* in the parent, before its vfork child shares this thread's state */
    return psi_config.vfork && eligible();
}

pid_t psi_vfork_handoff(void)
{
    return handoff_fork(true);
}

/* NUL-terminated strings from *at (count of them, within end) into list[]; false if cut. */
static bool take_strings(const char **at, const char *end, char **list, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        const char *nul = memchr(*at, '\0', (size_t)(end - *at));
        if (nul == NULL)
            return false;
        list[i] = (char *)*at;
        *at = nul + 1;
    }
    list[count] = NULL;
    return true;
}

/* The request's state with `source`s naming our copies of its descriptors, and its
 * strings; NULL if malformed. */
static struct psi_state *unpack(const struct psi_handoff_request *req, size_t size, const int *fds, int nfds,
                                const char **exe, char ***argv, char ***envp)
{
    size_t head = offsetof(struct psi_handoff_request, state.fds);
    if (size < head || req->magic != PSI_HANDOFF_MAGIC || req->state.fd_count < 0 ||
        req->state.fd_count > PSI_MAX_STATE_FDS || nfds != req->state.fd_count + 1 || req->argc == 0 ||
        req->argc > size || req->envc > size)
        return NULL;
    size_t fd_bytes = (size_t)req->state.fd_count * sizeof(struct psi_fd);
    if (size != head + fd_bytes + req->strings)
        return NULL;
    struct psi_state *st = malloc(sizeof(*st));
    *argv = calloc((size_t)req->argc + 1, sizeof(char *));
    *envp = calloc((size_t)req->envc + 1, sizeof(char *));
    const char *at = (const char *)req + head + fd_bytes, *end = (const char *)req + size;
    const char *nul = memchr(at, '\0', (size_t)(end - at));
    if (st == NULL || *argv == NULL || *envp == NULL || nul == NULL) {
        free(st);
        return NULL;
    }
    *exe = at;
    at = nul + 1;
    if (!take_strings(&at, end, *argv, req->argc) || !take_strings(&at, end, *envp, req->envc) || at != end) {
        free(st);
        return NULL;
    }
    memcpy(st, &req->state, head - offsetof(struct psi_handoff_request, state) + fd_bytes);
    st->cwd_fd = fds[0];
    for (int i = 0; i < st->fd_count; i++)
        st->fds[i].source = fds[i + 1];
    return st;
}

/* Through the zygote: the pid, or 0 (*why). */
static pid_t serve(const char *exe, const struct psi_state *st, const struct psi_identity *id,
                   bool namespaces_inherited, char *const argv[], char *const envp[], const char **why)
{
    struct psi_zygote *z = psi_zygote_get(exe, envp);
    if (z == NULL)
        return 0; /* logged by psi_zygote_get */
    struct psi_child child;
    struct psi_actions none = {.count = 0, .items = NULL};
    pid_t p = 0;
    const struct psi_snapshot *snap = psi_zygote_snapshot(z);
    struct psi_identity child_id = *id;
    if (namespaces_inherited) /* ours: this launcher waits in fork(), single-threaded */
        psi_namespaces_take_since(child_id.ns, &snap->identity, snap->ns_mark);
    if ((*why = psi_identity_differs(&child_id, &snap->identity)) == NULL &&
        psi_child_build(&child, snap, st, &none, NULL, why) == 0)
        p = psi_zygote_spawn(z, exe, argv, envp, &child, why);
    psi_zygote_put(z);
    return p;
}

pid_t psi_handoff_serve(const struct psi_handoff_request *req, size_t size, int *fds, int nfds)
{
    const char *exe = NULL, *why = NULL;
    char **argv = NULL, **envp = NULL;
    struct psi_state *st = unpack(req, size, fds, nfds, &exe, &argv, &envp);
    pid_t p = 0;
    if (st == NULL) {
        psi_log("fork+exec: malformed handoff request (%zu bytes, %d descriptors): real exec", size, nfds);
    } else {
        char *edited = NULL;
        char **child_env = psi_child_environment(envp, &edited);
        p = serve(exe, st, &req->identity, req->namespaces_inherited, argv, child_env, &why);
        if (p > 0)
            psi_log("fork+exec %s: served by zygote, pid %d", exe, (int)p);
        else if (why != NULL)
            psi_log("fork+exec %s: real exec: %s", exe, why);
        if (child_env != envp)
            free(child_env);
        free(edited);
    }
    free(st);
    free(argv);
    free(envp);
    return p;
}
