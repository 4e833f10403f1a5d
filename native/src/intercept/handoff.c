/* The forked child's side of the fork handoff (fork.c has the launcher's): at exec, it
 * sends the launcher what the exec'd program would start with, and exits unseen if the
 * launcher served it from a zygote. It runs in a fork child (not a vfork child: the
 * handoff is armed only by fork.c, in the child's own memory), so it may allocate. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <termios.h>
#include <unistd.h>

#include "common/protocol.h"
#include "intercept/intercept.h"

static int armed_fd = -1;
static pid_t armed_pid;
static ino_t armed_ino;
static unsigned armed_ns_epoch; /* psi_namespace_epoch() at the fork */
static bool settle_pending;     /* the launcher's note that it set our slice is still to come (slice.c) */

/* The socket moves up, out of the way of a child that closes or reuses low numbers;
 * close, close_range and closefrom (close.c) keep it open. Not higher: the child's state
 * is read by scanning its descriptor table (state.c), which a high number would grow. */
#define HIGH_FD 64

/* Still our socket: not closed by a raw system call, nor replaced by dup2. */
static bool still_ours(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == armed_ino;
}

void psi_handoff_arm(int fd, bool settle)
{
    struct rlimit files;
    int floor = getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur > 2 * HIGH_FD ? HIGH_FD : -1;
    int high = floor > fd ? fcntl(fd, F_DUPFD_CLOEXEC, floor) : -1;
    if (high >= 0) {
        close(fd);
        fd = high;
    }
    struct stat st;
    armed_fd = fstat(fd, &st) == 0 ? fd : -1;
    armed_ino = st.st_ino;
    armed_pid = getpid();
    armed_ns_epoch = psi_namespace_epoch();
    settle_pending = settle && armed_fd >= 0;
    if (armed_fd < 0)
        close(fd);
}

void psi_handoff_settle(void)
{
    if (!settle_pending || getpid() != armed_pid)
        return; /* nothing to wait for, or a vfork child (the memory is its parent's) */
    settle_pending = false;
    if (armed_fd < 0 || !still_ours(armed_fd))
        return;
    int saved = errno;
    char note;
    while (recv(armed_fd, &note, 1, 0) < 0 && errno == EINTR)
        ;
    errno = saved;
}

void psi_handoff_after_fork(void)
{
    /* A child of an armed child: the socket is its parent's (which still waits for its own
     * exec on it); holding it open would hide that exec's end-of-file from the launcher. */
    if (armed_fd >= 0 && getpid() != armed_pid && still_ours(armed_fd))
        close(armed_fd); /* ours: psi_handoff_fd() no longer names it in this process */
    armed_fd = -1;
    settle_pending = false;
}

int psi_handoff_fd(void)
{
    return armed_fd >= 0 && getpid() == armed_pid ? armed_fd : -1;
}

/* Why this child must make the real exec whatever the launcher has, or NULL. */
static const char *must_exec_itself(void)
{
    sigset_t pending;
    if (sigpending(&pending) != 0 || !sigisemptyset(&pending))
        return "pending signals (they survive exec)";
    static const int timers[] = {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF};
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
        struct itimerval t;
        if (getitimer(timers[i], &t) != 0 || t.it_value.tv_sec != 0 || t.it_value.tv_usec != 0)
            return "an armed interval timer (it survives exec)";
    }
    /* Job control: the terminal's foreground group is one this child leads; the zygote
     * child's new group would not be it. */
    pid_t self = getpid();
    if (getpgrp() == self)
        for (int fd = 0; fd <= 2; fd++)
            if (isatty(fd) && tcgetpgrp(fd) == self)
                return "it leads the terminal's foreground group";
    return NULL;
}

static size_t strings_size(char *const list[], uint32_t *count)
{
    size_t n = 0;
    *count = 0;
    for (; list[*count] != NULL; (*count)++)
        n += strlen(list[*count]) + 1;
    return n;
}

static char *put_strings(char *at, char *const list[], uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        size_t len = strlen(list[i]) + 1;
        memcpy(at, list[i], len);
        at += len;
    }
    return at;
}

/* The request for exe (its descriptors: the working directory, then every inherited
 * one, in *fds), or NULL. */
static struct psi_handoff_request *build_request(const char *exe, char *const argv[], char *const envp[],
                                                 size_t *size, int *fds, int *nfds)
{
    uint32_t argc, envc;
    size_t strings = strlen(exe) + 1 + strings_size(argv, &argc) + strings_size(envp, &envc);
    struct psi_handoff_request *req = malloc(sizeof(*req) + strings);
    const char *why = NULL;
    if (req == NULL || psi_state_take(&req->state, PSI_FD_SCAN_MAX_FORKED, &why) != 0) {
        free(req);
        return NULL;
    }
    struct psi_state *st = &req->state;
    int kept = 0;
    *nfds = 1;
    for (int i = 0; i < st->fd_count; i++) {
        if (st->fds[i].cloexec)
            continue;
        if (*nfds == PSP_MAX_FDS_PER_MESSAGE) {
            free(req);
            return NULL;
        }
        fds[(*nfds)++] = st->fds[i].target;
        st->fds[kept++] = st->fds[i];
    }
    st->fd_count = kept;
    st->own_group_is_new = true;
    size_t head = offsetof(struct psi_handoff_request, state.fds) + (size_t)kept * sizeof(struct psi_fd);
    *size = head + strings;
    if (*size > PSI_HANDOFF_MAX_MESSAGE) {
        free(req);
        return NULL;
    }
    req->magic = PSI_HANDOFF_MAGIC;
    req->argc = argc;
    req->envc = envc;
    req->strings = (uint32_t)strings;
    /* In the launcher's namespaces unless it moved since the fork: then the launcher,
     * which knows its own, fills them in (fork.c); ten reads saved here (~70 µs). */
    req->namespaces_inherited = PSI_SEES_NAMESPACE_SYSCALLS && psi_namespace_epoch() == armed_ns_epoch;
    if (req->namespaces_inherited)
        psi_identity_take_but_namespaces(&req->identity);
    else
        psi_identity_take(&req->identity);
    char *at = (char *)req + head;
    size_t len = strlen(exe) + 1;
    memcpy(at, exe, len);
    put_strings(put_strings(at + len, argv, argc), envp, envc);
    return req;
}

static int send_request(int sock, const struct psi_handoff_request *req, size_t size, const int *fds, int nfds)
{
    struct iovec iov = {.iov_base = (void *)req, .iov_len = size};
    union {
        char buf[CMSG_SPACE(sizeof(int) * PSP_MAX_FDS_PER_MESSAGE)];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds)};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)nfds);
    ssize_t n;
    do
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)size ? 0 : -1;
}

/* The launcher's verdict: the pid it served, or 0 (it gave up, refused, or is gone). */
static pid_t await_reply(int sock)
{
    struct psi_handoff_reply reply;
    ssize_t n;
    do
        n = recv(sock, &reply, sizeof(reply), 0);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof(reply) && reply.magic == PSI_HANDOFF_MAGIC && reply.pid > 0 ? reply.pid : 0;
}

void psi_handoff_exec(const char *file, char *const argv[], char *const envp[], bool search)
{
    if (armed_fd < 0 || getpid() != armed_pid) {
        psi_slice_undo();
        return; /* not armed, or a vfork child of an armed one (its memory is the parent's) */
    }
    psi_handoff_settle(); /* the launcher's note first: the reply comes after it */
    int sock = armed_fd;
    armed_fd = -1;
    int saved = errno;
    psi_busy++;
    bool relative = false;
    char *exe = NULL;
    struct psi_handoff_request *req = NULL;
    int fds[PSP_MAX_FDS_PER_MESSAGE], nfds = 0;
    size_t size = 0;
    const char *why = NULL;
    if (!still_ours(sock))
        why = "the child closed or replaced the handoff socket";
    else if (argv == NULL || argv[0] == NULL || envp == NULL)
        why = "argv or envp NULL or empty";
    else if ((why = must_exec_itself()) != NULL)
        ;
    else if ((exe = psi_resolve(file, search, &relative)) == NULL)
        why = "no executable file found (the real exec reports the error)";
    else if (!psi_config_allows(exe))
        why = "not allowed (PSPAWN_INTERCEPT_ALLOW / _DENY)";
    else if ((fds[0] = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
        why = "working directory unreadable";
    else if ((req = build_request(exe, argv, envp, &size, fds, &nfds)) == NULL) {
        why = "state unreadable, or too large for one message";
        close(fds[0]);
    }
    if (why != NULL)
        psi_log("fork+exec %s: real exec: %s", exe != NULL ? exe : file, why);
    if (req != NULL) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        bool sent = send_request(sock, req, size, fds, nfds) == 0;
        pid_t served = sent ? await_reply(sock) : 0;
        if (served > 0)
            _exit(0); /* the zygote's child is the launcher's child now; the launcher reaps us */
        if (!sent)
            psi_log("fork+exec %s: real exec: the launcher no longer waits for this child", exe);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        close(fds[0]);
    }
    free(req);
    free(exe);
    if (still_ours(sock))
        close(sock);
    psi_slice_undo(); /* the real exec follows */
    psi_busy--;
    errno = saved;
}
