/* The warm pool, proxy side: children forked ahead of time and parked before main, each
 * in a slot of the segment's pool table, waiting for the launcher to claim it (its
 * argv/envp/CPU set in the slot, then a write of the slot's eventfd) or for the proxy to
 * hand it a request it would otherwise fork for (psp_pool_hand: spawns with options, which
 * a claim cannot carry; the child's side is pool_child.c). The proxy watches
 * each parked child through a pidfd (a dead one is marked DEAD for the launcher to reap,
 * and never handed out), refills a slot once its child took its claim, one fork at a
 * time between requests, and ends parked children after pool_idle_ms without a doorbell.
 * A claimed child makes no system call for the pool on its way to main: it was placed
 * before it parked, and the launcher, not the child, rings the proxy's doorbell; the
 * proxy sees the claim taken when it looks again, PSP_POOL_TAKE_CHECK_MS later.
 * Parked children end themselves when the launcher dies (its pidfd) or the proxy dies
 * (the death pipe hangs up). */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "proxy/proxy.h"

/* A fork the kernel refused (EAGAIN at RLIMIT_NPROC or pids.max, ENOMEM) is retried
 * after this long, not in a loop. */
#define PSP_POOL_RETRY_MS 100
/* A refill waits this long after a claim, while at least half the pool is parked: the
 * fork would compete for the CPU with the child just claimed, which is starting. */
#define PSP_POOL_QUIET_MS 5
/* A claim the proxy saw before its child took it is looked at again this much later
 * (the child copies its claim within microseconds; this only bounds the refill delay). */
#define PSP_POOL_TAKE_CHECK_MS 1

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ring(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

int psp_pool_start(struct psp_proxy *p)
{
    struct psp_proxy_pool *pool = &p->pool;
    struct psp_shared *sh = p->shared;
    pool->death_pipe[0] = pool->death_pipe[1] = -1;
    for (uint32_t k = 0; k < PSP_POOL_MAX; k++)
        pool->claim_fds[k] = pool->pidfds[k] = pool->hand_fds[k] = -1;
    if (sh->pool_capacity == 0)
        return 0;
    uint64_t relay_end = sh->relay_offset + (uint64_t)sh->relay_capacity * sizeof(struct psp_relay_slot);
    if (p->relay || sh->pool_capacity > PSP_POOL_MAX || sh->pool_offset < relay_end || sh->pool_offset % 64 != 0 ||
        sh->pool_offset + (uint64_t)sh->pool_capacity * sizeof(struct psp_pool_slot) > sh->data_offset)
        return EPROTO;
    int err = psp_receive_fds(pool->claim_fds, sh->pool_capacity);
    if (err != 0)
        return err;
    if (pipe2(pool->death_pipe, O_CLOEXEC) != 0)
        return errno;
    pool->table = psp_pool_table(sh);
    pool->capacity = sh->pool_capacity;
    pool->idle_ms = sh->pool_idle_ms;
    pool->last_activity_ms = now_ms();
    return 0;
}

static void mark_activity(struct psp_proxy_pool *pool)
{
    pool->last_activity_ms = now_ms();
    pool->trimmed = false;
}

void psp_pool_activity(struct psp_proxy *p)
{
    mark_activity(&p->pool);
}

/* Slots whose child we watch for death: parked, being trimmed, or claimed but not yet
 * taken. (A DEAD slot waits for the launcher, its pidfd stays readable: not polled.) */
static bool watched(int32_t state)
{
    return state == PSP_POOL_PARKED || state == PSP_POOL_TRIM || state == PSP_POOL_CLAIMED;
}

int psp_pool_pollfds(struct psp_proxy *p, struct pollfd *fds)
{
    struct psp_proxy_pool *pool = &p->pool;
    for (uint32_t k = 0; k < pool->capacity; k++) {
        bool watch = pool->pidfds[k] >= 0 && watched(atomic_load(&pool->table[k].state));
        fds[k] = (struct pollfd){.fd = watch ? pool->pidfds[k] : -1, .events = POLLIN};
    }
    return (int)pool->capacity;
}

static bool refillable(const struct psp_proxy_pool *pool, uint32_t k)
{
    return pool->pidfds[k] < 0 && atomic_load(&pool->table[k].state) == PSP_POOL_FREE;
}

/* When the next refill may start: after a refused fork's retry time and, while half the
 * pool is parked, after the quiet time that follows a claim. */
static int64_t refill_at(const struct psp_proxy_pool *pool)
{
    uint32_t parked = 0;
    for (uint32_t k = 0; k < pool->capacity; k++)
        parked += atomic_load(&pool->table[k].state) == PSP_POOL_PARKED;
    int64_t at = pool->retry_at_ms;
    if (2 * parked >= pool->capacity && pool->quiet_until_ms > at)
        at = pool->quiet_until_ms;
    return at;
}

static int earlier(int a, int b)
{
    return a < 0 || (b >= 0 && b < a) ? b : a;
}

/* The poll timeout: a slot to release now (TAKEN, GONE: the state may have changed since
 * psp_pool_service looked, and nobody else will ring), a free slot's refill, a claim to look
 * at again (its child takes it), and the idle trim of parked children, whichever comes first. */
int psp_pool_timeout(struct psp_proxy *p)
{
    struct psp_proxy_pool *pool = &p->pool;
    if (pool->capacity == 0 || pool->trimmed)
        return -1;
    int64_t now = now_ms();
    bool parked = false, claimed = false, free_slot = false, releasable = false;
    for (uint32_t k = 0; k < pool->capacity; k++) {
        int32_t state = atomic_load(&pool->table[k].state);
        free_slot |= refillable(pool, k);
        parked |= state == PSP_POOL_PARKED;
        claimed |= state == PSP_POOL_CLAIMED;
        releasable |= state == PSP_POOL_TAKEN || state == PSP_POOL_GONE;
    }
    if (releasable)
        return 0;
    int timeout = claimed ? PSP_POOL_TAKE_CHECK_MS : -1;
    if (free_slot) {
        int64_t at = refill_at(pool);
        timeout = earlier(timeout, now >= at ? 0 : (int)(at - now));
    }
    if (parked && pool->idle_ms > 0) {
        int64_t left = pool->last_activity_ms + pool->idle_ms - now;
        timeout = earlier(timeout, left > 0 ? (int)left : 0);
    }
    return timeout;
}

/* ---- In the proxy ------------------------------------------------------------------- */

static void close_slot_fds(struct psp_proxy_pool *pool, uint32_t k)
{
    for (int *fd = &pool->pidfds[k]; fd != NULL; fd = fd == &pool->pidfds[k] ? &pool->hand_fds[k] : NULL) {
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
    }
}

static void release(struct psp_proxy_pool *pool, uint32_t k)
{
    close_slot_fds(pool, k);
    atomic_store(&pool->table[k].pid, 0);
    atomic_store(&pool->table[k].state, PSP_POOL_FREE);
}

/* One slot's child: what its state and (polled) death mean now. */
static void watch_slot(struct psp_proxy_pool *pool, uint32_t k, bool dead)
{
    struct psp_pool_slot *slot = &pool->table[k];
    int32_t state = atomic_load(&slot->state);
    switch (state) {
    case PSP_POOL_PARKED:
    case PSP_POOL_TRIM:
        /* CAS: the launcher may be claiming it right now. */
        if (dead && atomic_compare_exchange_strong(&slot->state, &state, PSP_POOL_DEAD))
            close_slot_fds(pool, k);
        break;
    case PSP_POOL_CLAIMED: /* died after its claim: it was the caller's child */
        if (dead)
            release(pool, k);
        break;
    case PSP_POOL_TAKEN: /* a claim: the pool is in use */
        mark_activity(pool);
        pool->quiet_until_ms = now_ms() + PSP_POOL_QUIET_MS;
        release(pool, k);
        break;
    case PSP_POOL_GONE:
        release(pool, k);
        break;
    default: /* FREE, FORKING, CLAIMING, REPORTED, DEAD: someone else's move */
        break;
    }
}

static void trim(struct psp_proxy_pool *pool)
{
    for (uint32_t k = 0; k < pool->capacity; k++) {
        int32_t parked = PSP_POOL_PARKED;
        if (atomic_compare_exchange_strong(&pool->table[k].state, &parked, PSP_POOL_TRIM))
            ring(pool->claim_fds[k]);
    }
    pool->trimmed = true;
}

/* Forks slot k's child. Returns true in the child once it is claimed. */
static bool refill(struct psp_proxy *p, uint32_t k, struct psp_decoded *req)
{
    struct psp_proxy_pool *pool = &p->pool;
    struct psp_pool_slot *slot = &pool->table[k];
    int hand[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, hand) != 0) {
        pool->retry_at_ms = now_ms() + PSP_POOL_RETRY_MS;
        return false;
    }
    atomic_store(&slot->pid, 0);
    atomic_store(&slot->state, PSP_POOL_FORKING);
    pid_t pid = psp_clone_child(p, &slot->pid, -1);
    if (pid == 0) {
        close(hand[0]);
        struct psp_handed handed;
        if (psp_pool_park(p, k, hand[1], req, &handed)) {
            psp_become_instance(p, req, handed.instance, handed.error_fd);
            psp_child_prepare(p, req, handed.instance, handed.fds, handed.error_fd);
        } else {
            psp_child_prepare(p, req, 0, NULL, -1);
        }
        return true;
    }
    close(hand[1]);
    if (pid < 0) {
        close(hand[0]);
        atomic_store(&slot->state, PSP_POOL_FREE);
        pool->retry_at_ms = now_ms() + PSP_POOL_RETRY_MS;
        return false;
    }
    pool->hand_fds[k] = hand[0];
    pool->pidfds[k] = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pool->pidfds[k] < 0) {
        /* Not watchable, so never handed out: it is the launcher's to reap. */
        kill(pid, SIGKILL);
        close_slot_fds(pool, k);
        atomic_store(&slot->state, PSP_POOL_DEAD);
        pool->retry_at_ms = now_ms() + PSP_POOL_RETRY_MS;
        return false;
    }
    atomic_store(&slot->state, PSP_POOL_PARKED);
    return false;
}

static int send_hand(int fd, const struct psp_pool_hand *msg, const int *fds, uint32_t fd_count, int error_fd)
{
    union {
        char buf[CMSG_SPACE(PSP_MAX_FDS_PER_MESSAGE * sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = sizeof(*msg)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                       .msg_controllen = CMSG_SPACE(((size_t)fd_count + 1) * sizeof(int))};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(((size_t)fd_count + 1) * sizeof(int));
    memcpy(CMSG_DATA(c), &error_fd, sizeof(int));
    if (fd_count > 0)
        memcpy(CMSG_DATA(c) + sizeof(int), fds, (size_t)fd_count * sizeof(int));
    ssize_t n;
    while ((n = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0 && errno == EINTR) {
    }
    return n == (ssize_t)sizeof(*msg) ? 0 : -1;
}

pid_t psp_pool_hand(struct psp_proxy *p, uint32_t ring_slot, uint32_t instance, const int *fds, uint32_t fd_count,
                    int error_fd)
{
    struct psp_proxy_pool *pool = &p->pool;
    if (pool->capacity == 0 || error_fd < 0 || fd_count + 1 > PSP_MAX_FDS_PER_MESSAGE)
        return 0;
    struct psp_pool_hand msg = {.ring_slot = ring_slot, .instance = instance, .fd_count = fd_count};
    for (uint32_t k = 0; k < pool->capacity; k++) {
        struct psp_pool_slot *slot = &pool->table[k];
        int32_t parked = PSP_POOL_PARKED;
        if (pool->hand_fds[k] < 0 || !atomic_compare_exchange_strong(&slot->state, &parked, PSP_POOL_HANDED))
            continue; /* CAS: the launcher may be claiming it right now */
        pid_t pid = atomic_load(&slot->pid);
        if (pid > 0 && send_hand(pool->hand_fds[k], &msg, fds, fd_count, error_fd) == 0) {
            mark_activity(pool);
            pool->quiet_until_ms = now_ms() + PSP_POOL_QUIET_MS;
            release(pool, k); /* the child is the request's now: the slot may be refilled */
            return pid;
        }
        /* It died parked (its socket is gone): the launcher reaps it, as any dead one. */
        close_slot_fds(pool, k);
        atomic_store(&slot->state, PSP_POOL_DEAD);
    }
    return 0;
}

bool psp_pool_fill(struct psp_proxy *p, struct psp_decoded *req)
{
    for (uint32_t k = 0; k < p->pool.capacity; k++)
        if (refill(p, k, req))
            return true;
    p->pool.retry_at_ms = 0; /* the first loop retries what the kernel refused */
    return false;
}

bool psp_pool_service(struct psp_proxy *p, const struct pollfd *fds, struct psp_decoded *req)
{
    struct psp_proxy_pool *pool = &p->pool;
    if (pool->capacity == 0)
        return false;
    for (uint32_t k = 0; k < pool->capacity; k++)
        watch_slot(pool, k, fds[k].fd >= 0 && fds[k].revents != 0);
    int64_t now = now_ms();
    if (pool->idle_ms > 0 && !pool->trimmed && now - pool->last_activity_ms >= (int64_t)pool->idle_ms) {
        trim(pool);
        return false;
    }
    if (pool->trimmed || now < refill_at(pool))
        return false;
    for (uint32_t k = 0; k < pool->capacity; k++)
        if (refillable(pool, k))
            return refill(p, k, req); /* one per turn: requests come first */
    return false;
}
