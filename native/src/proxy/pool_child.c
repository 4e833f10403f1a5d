/* The warm pool, in a parked child (pool.c forks it): parked before main until the
 * launcher claims it (argv/envp/CPU set in its slot, then the slot's eventfd), or the proxy
 * hands it a request of its own instead of forking for it (the request's ring slot and
 * instance, with its descriptors, over the slot's socket: psp_pool_hand). A claimed child
 * copies and checks its claim; a handed one decodes the request from the segment, where it
 * stays until the proxy has every child's set-up report. Either way it then goes on as a
 * freshly forked child would. It ends itself when trimmed, or when the launcher or the
 * proxy is gone. */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proxy/proxy.h"

/* Copies and checks the claim (the segment is untrusted input), as the request decoder
 * does: argc >= 1, strings within the slot, split into exactly argc + envc strings.
 * Returns 0 or EINVAL/ENOMEM. */
static int decode_claim(struct psp_pool_slot *slot, struct psp_decoded *req, cpu_set_t *cpus, size_t *cpus_size)
{
    uint32_t argc = slot->argc, envc = slot->envc, len = slot->strings_length, csize = slot->cpuset_size;
    memset(req, 0, sizeof(*req));
    if (slot->stdio_null > 7 || argc < 1 || len == 0 || len > PSP_POOL_DATA || (uint64_t)argc + envc > len ||
        (csize != 0 && (csize < 8 || csize > sizeof(*cpus) || csize % 8 != 0)))
        return EINVAL;
    CPU_ZERO(cpus);
    memcpy(cpus, slot->cpuset, csize);
    *cpus_size = csize;
    char *strings = malloc(len);
    char **pointers = malloc(((size_t)argc + envc + 2) * sizeof(char *));
    if (strings == NULL || pointers == NULL) {
        free(strings);
        free(pointers);
        return ENOMEM;
    }
    memcpy(strings, slot->strings, len);
    uint32_t want = argc + envc, found = 0;
    size_t at = 0;
    while (at < len && found < want) {
        size_t n = strnlen(strings + at, len - at);
        if (at + n == len)
            break; /* no terminator */
        pointers[found + (found >= argc ? 1 : 0)] = strings + at;
        found++;
        at += n + 1;
    }
    if (found != want || at != len) {
        free(strings);
        free(pointers);
        return EINVAL;
    }
    pointers[argc] = NULL;
    pointers[argc + 1 + envc] = NULL;
    req->count = 1;
    req->argv = pointers;
    req->argc = (int)argc;
    req->envp = pointers + argc + 1;
    req->envc = (int)envc;
    req->strings = strings;
    req->strings_length = len;
    req->pointers = pointers;
    return 0;
}

/* A parked child's placement without a claim's CPU set, as become_instance does it for a
 * forked one: done before it parks, so that a claim without a CPU set costs no system
 * call, and so that a woken child is not bound to the proxy's CPU (where the proxy may
 * be refilling). */
static void place_default(const struct psp_proxy *p)
{
    if (p->reset_mempolicy)
        (void)syscall(SYS_set_mempolicy, 0 /* MPOL_DEFAULT */, NULL, 0UL);
    if (p->reset_cpus)
        (void)sched_setaffinity(0, sizeof(p->child_cpus), &p->child_cpus);
}

/* The claim's own CPU set, if it has one. */
static int place(const cpu_set_t *cpus, size_t size)
{
    return size > 0 && sched_setaffinity(0, size, cpus) != 0 ? errno : 0;
}

/* Descriptors 0-2 named in `mask` become /dev/null, as the option does for a forked child. */
static int null_stdio(uint32_t mask)
{
    if (mask == 0)
        return 0;
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = 0;
    for (int k = 0; k < 3 && err == 0; k++)
        if ((mask & (1u << k)) && dup2(fd, k) < 0)
            err = errno;
    if (fd > 2)
        close(fd);
    return err;
}

/* Takes the claim: decodes it, places itself, tells the launcher (REPORTED, when it
 * waits) or the proxy (TAKEN: refill, when it next looks) and, on failure, exits before
 * main. */
static void take_claim(struct psp_proxy *p, struct psp_pool_slot *slot, struct psp_decoded *req)
{
    bool report = (slot->flags & PSP_POOL_REPORT) != 0;
    cpu_set_t cpus;
    size_t cpus_size = 0;
    uint32_t stdio_null = slot->stdio_null;
    int err = decode_claim(slot, req, &cpus, &cpus_size);
    if (err == 0) {
        psp_clean_environment(req->envp, p->library_path);
        err = place(&cpus, cpus_size);
    }
    if (err == 0)
        err = null_stdio(stdio_null);
    if (report) {
        atomic_store(&slot->error, err);
        atomic_store(&slot->state, PSP_POOL_REPORTED);
        (void)syscall(SYS_futex, &slot->state, FUTEX_WAKE, 1, NULL, NULL, 0);
    } else {
        atomic_store(&slot->state, PSP_POOL_TAKEN); /* the launcher rang the proxy */
    }
    if (err != 0)
        _exit(127);
}

static void drain(int fd)
{
    uint64_t value;
    while (read(fd, &value, sizeof(value)) < 0 && errno == EINTR) {
    }
}

/* The request the proxy handed over: {ring slot, instance, descriptor count} with the
 * set-up report pipe and the request's descriptors. Exits (127) if it is malformed; the
 * proxy then sees this child's report pipe close without a record, and the launcher a
 * child that exited before main. */
static void take_handed(struct psp_proxy *p, int hand_fd, struct psp_decoded *req, struct psp_handed *handed)
{
    struct psp_pool_hand msg;
    union {
        char buf[CMSG_SPACE(PSP_MAX_FDS_PER_MESSAGE * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = &msg, .iov_len = sizeof(msg)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                       .msg_controllen = sizeof(control.buf)};
    ssize_t n;
    while ((n = recvmsg(hand_fd, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
    }
    struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&m) : NULL;
    size_t got = c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS
                     ? (c->cmsg_len - CMSG_LEN(0)) / sizeof(int)
                     : 0;
    if (n != (ssize_t)sizeof(msg) || (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || got != (size_t)msg.fd_count + 1 ||
        msg.ring_slot >= PSP_RING_SLOTS)
        _exit(127);
    int *fds = malloc(((size_t)msg.fd_count + 1) * sizeof(int));
    if (fds == NULL)
        _exit(127);
    memcpy(fds, CMSG_DATA(c), ((size_t)msg.fd_count + 1) * sizeof(int));
    handed->error_fd = fds[0];
    handed->fds = fds + 1;
    handed->instance = msg.instance;
    int err = psp_decode_request(p->shared, p->size, msg.ring_slot, req);
    if (err == 0 && (req->fd_count != msg.fd_count || msg.instance >= req->count))
        err = EPROTO;
    if (err != 0) {
        int32_t record[2] = {(int32_t)msg.instance, err};
        while (write(handed->error_fd, record, sizeof(record)) < 0 && errno == EINTR) {
        }
        _exit(127);
    }
    for (uint32_t k = 0; k < req->set_count; k++)
        psp_clean_environment(req->sets[k].envp, p->library_path);
}

bool psp_pool_park(struct psp_proxy *p, uint32_t k, int hand_fd, struct psp_decoded *req, struct psp_handed *handed)
{
    struct psp_proxy_pool *pool = &p->pool;
    close(pool->death_pipe[1]);
    place_default(p);
    struct pollfd fds[4] = {
        {.fd = pool->claim_fds[k], .events = POLLIN},
        {.fd = p->launcher_pidfd, .events = POLLIN},
        {.fd = pool->death_pipe[0], .events = POLLIN},
        {.fd = hand_fd, .events = POLLIN},
    };
    for (;;) {
        if (poll(fds, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(127);
        }
        if (fds[3].revents & POLLIN) {
            take_handed(p, hand_fd, req, handed);
            return true;
        }
        if (fds[1].revents || fds[2].revents || fds[3].revents)
            _exit(0);
        if (!fds[0].revents)
            continue;
        drain(pool->claim_fds[k]);
        int32_t state = atomic_load(&pool->table[k].state);
        if (state == PSP_POOL_CLAIMED)
            break;
        if (state == PSP_POOL_TRIM)
            _exit(0);
        /* A stale wake-up meant for the slot's previous child: keep waiting. */
    }
    take_claim(p, &pool->table[k], req);
    return false;
}
