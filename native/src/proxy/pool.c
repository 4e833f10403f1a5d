/* The warm pool, proxy side: children forked ahead of time and parked before main, each
 * in a slot of the segment's pool table, waiting for the launcher to claim it (its
 * argv/envp/CPU set in the slot, then a write of the slot's eventfd). The proxy watches
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
        pool->claim_fds[k] = pool->pidfds[k] = -1;
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

/* ---- In a parked child -------------------------------------------------------------- */

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

/* Parked until claimed (then returns, ready for psp_child_prepare); exits when trimmed,
 * or when the launcher or the proxy is gone. */
static void park(struct psp_proxy *p, uint32_t k, struct psp_decoded *req)
{
    struct psp_proxy_pool *pool = &p->pool;
    close(pool->death_pipe[1]);
    place_default(p);
    struct pollfd fds[3] = {
        {.fd = pool->claim_fds[k], .events = POLLIN},
        {.fd = p->launcher_pidfd, .events = POLLIN},
        {.fd = pool->death_pipe[0], .events = POLLIN},
    };
    for (;;) {
        if (poll(fds, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(127);
        }
        if (fds[1].revents || fds[2].revents)
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
}

/* ---- In the proxy ------------------------------------------------------------------- */

static void release(struct psp_proxy_pool *pool, uint32_t k)
{
    if (pool->pidfds[k] >= 0)
        close(pool->pidfds[k]);
    pool->pidfds[k] = -1;
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
        if (dead && atomic_compare_exchange_strong(&slot->state, &state, PSP_POOL_DEAD) && pool->pidfds[k] >= 0) {
            close(pool->pidfds[k]);
            pool->pidfds[k] = -1;
        }
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
    atomic_store(&slot->pid, 0);
    atomic_store(&slot->state, PSP_POOL_FORKING);
    pid_t pid = psp_clone_child(p, &slot->pid, -1);
    if (pid == 0) {
        park(p, k, req);
        psp_child_prepare(p, req, 0, NULL, -1);
        return true;
    }
    if (pid < 0) {
        atomic_store(&slot->state, PSP_POOL_FREE);
        pool->retry_at_ms = now_ms() + PSP_POOL_RETRY_MS;
        return false;
    }
    pool->pidfds[k] = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pool->pidfds[k] < 0) {
        /* Not watchable, so never handed out: it is the launcher's to reap. */
        kill(pid, SIGKILL);
        atomic_store(&slot->state, PSP_POOL_DEAD);
        pool->retry_at_ms = now_ms() + PSP_POOL_RETRY_MS;
        return false;
    }
    atomic_store(&slot->state, PSP_POOL_PARKED);
    return false;
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
