/* The warm pool, launcher side: a backend around a channel that claims children its
 * proxy forked ahead of time (parked before main, already children of this process)
 * for the instances it can serve, and hands every other instance to the channel. A
 * claim is a write into the slot's part of the segment and one eventfd write: no round
 * trip to the proxy, which refills the slot after the child took its claim (the launcher
 * rings its doorbell once per call, so that the claimed child makes no call for it). */
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launcher/internal.h"

/* How long a claim with a CPU set waits, at most, for the child's placement report. */
#define PSP_POOL_REPORT_SLICE_MS 10

size_t psp_pool_table_bytes(const struct psp_proxy_config *cfg)
{
    if (cfg->pool <= 0 || cfg->relay)
        return 0;
    return ((size_t)cfg->pool * sizeof(struct psp_pool_slot) + 63) & ~(size_t)63;
}

void psp_pool_layout(struct psp_shared *sh, const struct psp_proxy_config *cfg, uint64_t *cursor)
{
    size_t bytes = psp_pool_table_bytes(cfg);
    if (bytes == 0)
        return;
    sh->pool_offset = (*cursor + 63) & ~(uint64_t)63;
    sh->pool_capacity = (uint32_t)cfg->pool;
    sh->pool_idle_ms = (uint32_t)cfg->pool_idle_ms;
    *cursor = sh->pool_offset + bytes;
}

int psp_pool_send_fds(struct psp_channel *ch, const struct psp_shared *sh)
{
    ch->pool_fd_count = 0;
    uint32_t n = sh->pool_capacity;
    if (n == 0)
        return 0;
    for (uint32_t k = 0; k < n; k++) {
        if ((ch->pool_fds[k] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
            int err = errno;
            while (k > 0)
                psp_close_fd(&ch->pool_fds[--k]);
            return err;
        }
        ch->pool_fd_count++;
    }
    return psp_send_fds(ch->socket_fd, ch->pool_fds, (int)n);
}

/* True if `pid` is our child and has exited (a zombie); it is left unreaped. */
static bool child_exited(pid_t pid)
{
    siginfo_t info = {0};
    int r;
    while ((r = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT)) != 0 && errno == EINTR) {
    }
    return r != 0 || info.si_pid != 0; /* ECHILD: not ours any more (reaped elsewhere) */
}

static void reap(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

void psp_pool_end_parked(struct psp_channel *ch)
{
    struct psp_shared *sh = __atomic_load_n(&ch->shared, __ATOMIC_ACQUIRE);
    uint32_t n = sh != NULL ? sh->pool_capacity : 0;
    struct psp_pool_slot *table = n > 0 && n <= PSP_POOL_MAX ? psp_pool_table(sh) : NULL;
    for (uint32_t k = 0; table != NULL && k < n; k++) {
        int32_t state = atomic_load(&table[k].state);
        pid_t pid = atomic_load(&table[k].pid);
        /* The slot first, the child after, as reap_dead does: a claim racing with us wins. */
        if (psp_pool_unclaimed(state) && atomic_compare_exchange_strong(&table[k].state, &state, PSP_POOL_GONE) &&
            pid > 0)
            psp_kill_and_reap_pid(pid);
    }
}

void psp_pool_drain(struct psp_channel *ch)
{
    psp_pool_end_parked(ch);
    struct psp_shared *sh = ch->shared;
    if (sh != NULL && sh->pool_capacity > 0) {
        struct psp_pool_slot *table = psp_pool_table(sh);
        for (uint32_t k = 0; k < sh->pool_capacity; k++)
            atomic_store(&table[k].state, PSP_POOL_GONE); /* claimed children are the caller's */
    }
    for (int k = 0; k < ch->pool_fd_count; k++)
        psp_close_fd(&ch->pool_fds[k]);
    ch->pool_fd_count = 0;
}

/* Whether the pool can serve the plan's instances at all: no per-spawn option but CPU
 * sets (those become each instance's own set in the plan) and stdio inherited or
 * /dev/null, no cgroup to be born in. */
static bool plan_claimable(const struct psp_plan *plan)
{
    const pspawn_attr_t *a = plan->attr;
    if (plan->cgroup_fd >= 0)
        return false;
    if (a == NULL)
        return true;
    if ((a->set & ~(uint32_t)PSP_OPT_CPUS) != 0 || a->cwd != NULL || a->rlimit_count != 0 || a->has_cgroup)
        return false;
    for (int k = 0; k < 3; k++)
        if (a->stdio[k].kind != PSP_STDIO_INHERIT && a->stdio[k].kind != PSP_STDIO_NULL)
            return false;
    return true;
}

/* Parked children that died are reaped here, so that their slots can be refilled: those
 * the proxy marked DEAD, and trimmed ones that exited before the proxy saw it (else a caller
 * that watched them go would still find them as zombies after its next call). Called with
 * the lock held; returns how many. */
static int reap_dead(struct psp_pool_slot *table, uint32_t n)
{
    int reaped = 0;
    for (uint32_t k = 0; k < n; k++) {
        int32_t state = atomic_load(&table[k].state);
        if (state != PSP_POOL_DEAD && state != PSP_POOL_TRIM)
            continue;
        pid_t pid = atomic_load(&table[k].pid);
        if (state == PSP_POOL_TRIM && (pid <= 0 || !child_exited(pid)))
            continue;
        /* The slot first, the child after: only the side that moved the slot reaps, so a
         * pid is never waited for after it could have been reused. */
        if (!atomic_compare_exchange_strong(&table[k].state, &state, PSP_POOL_GONE))
            continue; /* the proxy moved a TRIM slot to DEAD meanwhile: next call */
        if (pid > 0 && child_exited(pid))
            (void)waitpid(pid, NULL, WNOHANG);
        reaped++;
    }
    return reaped;
}

/* A live parked child, now ours to claim (state CLAIMING), or -1. One that has died
 * since the proxy last looked is reaped and never handed out. */
static int take_parked(struct psp_pool_slot *table, uint32_t n, unsigned *cursor, int *reaped)
{
    for (uint32_t j = 0; j < n; j++) {
        uint32_t k = (*cursor + j) % n;
        int32_t parked = PSP_POOL_PARKED;
        if (atomic_load_explicit(&table[k].state, memory_order_relaxed) != PSP_POOL_PARKED ||
            !atomic_compare_exchange_strong(&table[k].state, &parked, PSP_POOL_CLAIMING))
            continue;
        pid_t pid = atomic_load(&table[k].pid);
        if (pid <= 0 || child_exited(pid)) {
            if (pid > 0)
                (void)waitpid(pid, NULL, WNOHANG);
            atomic_store(&table[k].state, PSP_POOL_GONE);
            (*reaped)++;
            continue;
        }
        *cursor = k + 1;
        return (int)k;
    }
    return -1;
}

/* Whether instance i's strings fit into a slot. */
static bool fits(const struct psp_plan *plan, int i)
{
    return plan->sets[plan->instances[i].set].bytes <= PSP_POOL_DATA;
}

/* Writes instance i's strings and CPU set into the slot. */
static void write_claim(struct psp_pool_slot *slot, const struct psp_plan *plan, int i)
{
    const struct psp_plan_set *set = &plan->sets[plan->instances[i].set];
    psp_pack(slot->strings, set->argv, set->envp);
    slot->argc = (uint32_t)set->argc;
    slot->envc = (uint32_t)set->envc;
    slot->strings_length = (uint32_t)set->bytes;
    int c = plan->instances[i].cpuset;
    slot->stdio_null = 0;
    for (int k = 0; plan->attr != NULL && k < 3; k++)
        if (plan->attr->stdio[k].kind == PSP_STDIO_NULL)
            slot->stdio_null |= 1u << k;
    slot->flags = c >= 0 || slot->stdio_null != 0 ? PSP_POOL_REPORT : 0;
    slot->cpuset_size = c >= 0 ? (uint32_t)sizeof(slot->cpuset) : 0;
    if (c >= 0) {
        _Static_assert(sizeof(((struct psp_pool_slot *)0)->cpuset) == sizeof(cpu_set_t), "one cpu_set_t");
        memcpy(slot->cpuset, &plan->cpusets[c], sizeof(slot->cpuset));
    }
    atomic_store(&slot->error, 0);
}

/* The proxy's doorbell without a request: it looks at the pool (an eventfd write; a
 * failure only delays the refill until the next doorbell). */
static void ring_proxy(struct psp_channel *ch)
{
    uint64_t one = 1;
    while (write(ch->doorbell_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

static void futex_wait(_Atomic int32_t *word, int32_t value, int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    (void)syscall(SYS_futex, word, FUTEX_WAIT, value, &ts, NULL, 0);
}

/* A claim with a CPU set or /dev/null stdio: the child reports how its set-up went, as a
 * forked child reports through the request's error pipe. A child that dies first (or a proxy
 * that recycled the slot after it died) was started: its exit says the rest. Returns the
 * errno of its placement (the child has then exited: reaped here), or 0. */
static int await_report(struct psp_channel *ch, struct psp_pool_slot *slot, pid_t pid)
{
    int timeout = ch->config.request_timeout_ms == 0 ? PSP_DEFAULT_REQUEST_TIMEOUT_MS : ch->config.request_timeout_ms;
    int64_t deadline = timeout < 0 ? INT64_MAX : psp_now_ms() + timeout;
    for (;;) {
        int32_t state = atomic_load(&slot->state);
        if (state == PSP_POOL_REPORTED) {
            int err = atomic_load(&slot->error);
            atomic_store(&slot->state, PSP_POOL_TAKEN);
            ring_proxy(ch); /* refill it */
            if (err != 0)
                reap(pid);
            return err;
        }
        if (state != PSP_POOL_CLAIMED || child_exited(pid) || psp_now_ms() >= deadline)
            return 0;
        futex_wait(&slot->state, PSP_POOL_CLAIMED, PSP_POOL_REPORT_SLICE_MS);
    }
}

/* Claims parked children for the first instances of todo[0..n), while there are some.
 * Called with the lock held; returns how many were claimed (their pid or errno is in the
 * plan). */
static int claim(struct psp_channel *ch, struct psp_plan *plan, const int *todo, int n)
{
    struct psp_shared *sh = ch->shared;
    uint32_t cap = sh->pool_capacity;
    struct psp_pool_slot *table = psp_pool_table(sh);
    static _Thread_local unsigned cursor;
    int reaped = reap_dead(table, cap);
    int done = 0;
    bool unreported = false; /* a claim the proxy has not heard of */
    while (done < n && fits(plan, todo[done])) {
        int k = take_parked(table, cap, &cursor, &reaped);
        if (k < 0)
            break;
        int i = todo[done];
        struct psp_pool_slot *slot = &table[k];
        pid_t pid = atomic_load(&slot->pid);
        write_claim(slot, plan, i);
        atomic_store(&slot->state, PSP_POOL_CLAIMED);
        int err = 0;
        if (write(ch->pool_fds[k], &(uint64_t){1}, sizeof(uint64_t)) != (ssize_t)sizeof(uint64_t)) {
            /* Cannot happen (a counter far from overflow); never hand out a child that
             * was not woken. */
            err = errno != 0 ? errno : EIO;
            psp_kill_and_reap_pid(pid);
        } else if (slot->flags & PSP_POOL_REPORT) {
            err = await_report(ch, slot, pid); /* rings the proxy on a report */
        } else {
            unreported = true;
        }
        plan->pids[i] = err == 0 ? pid : -1;
        plan->errors[i] = err;
        done++;
    }
    if (reaped > 0 || unreported)
        ring_proxy(ch); /* their slots are (or will be) free: refill them */
    return done;
}

long pspawn_context_pool_claims(const pspawn_context_t *ctx)
{
    if (ctx == NULL || ctx->impl == NULL) {
        errno = EINVAL;
        return -1;
    }
    long claims = 0;
    for (int c = 0; ctx->impl->pools != NULL && c < ctx->impl->channel_count; c++)
        claims += atomic_load(&ctx->impl->pools[c].claims);
    return claims;
}

int pspawn_context_pool_pids(const pspawn_context_t *ctx, pid_t *pids, int capacity)
{
    if (ctx == NULL || ctx->impl == NULL || capacity < 0 || (pids == NULL && capacity > 0)) {
        errno = EINVAL;
        return -1;
    }
    struct pspawn_impl *impl = ctx->impl;
    int found = 0;
    for (int c = 0; impl->pools != NULL && c < impl->channel_count; c++) {
        struct psp_channel *ch = &impl->channels[c];
        pthread_mutex_lock(&ch->lock);
        struct psp_shared *sh = ch->shared;
        if (sh != NULL && sh->pool_capacity > 0 && !ch->broken) {
            struct psp_pool_slot *table = psp_pool_table(sh);
            if (reap_dead(table, sh->pool_capacity) > 0)
                ring_proxy(ch);
            for (uint32_t k = 0; k < sh->pool_capacity; k++) {
                pid_t pid = atomic_load(&table[k].pid);
                if (atomic_load(&table[k].state) != PSP_POOL_PARKED || pid <= 0)
                    continue;
                if (found < capacity)
                    pids[found] = pid;
                found++;
            }
        }
        pthread_mutex_unlock(&ch->lock);
    }
    return found;
}

static int pool_submit(struct psp_backend *b, struct psp_plan *plan, const int *todo, int n, bool block,
                       struct psp_part *part, int *taken)
{
    struct psp_channel *ch = ((struct psp_pool_backend *)b)->channel;
    int claimed = 0;
    if (plan_claimable(plan)) {
        pthread_mutex_lock(&ch->lock);
        /* A dead proxy's parked children are dying too: the channel restarts it. */
        struct pollfd alive = {.fd = ch->proxy_pidfd, .events = POLLIN};
        if (!ch->broken && ch->shared != NULL && ch->shared->pool_capacity > 0 && ch->proxy_pidfd >= 0 &&
            poll(&alive, 1, 0) == 0 && psp_credentials_unchanged(&ch->credentials))
            claimed = claim(ch, plan, todo, n);
        pthread_mutex_unlock(&ch->lock);
    }
    if (claimed > 0) {
        atomic_fetch_add(&((struct psp_pool_backend *)b)->claims, claimed);
        part->complete = true;
        *taken = claimed;
        return 0;
    }
    return psp_channel_ops.submit(&ch->base, plan, todo, n, block, part, taken);
}

static int pool_pollfds(struct psp_backend *b, struct psp_part *part, struct pollfd *fds)
{
    if (part->complete)
        return 0;
    return psp_channel_ops.pollfds(&((struct psp_pool_backend *)b)->channel->base, part, fds);
}

static bool pool_collect(struct psp_backend *b, struct psp_plan *plan, struct psp_part *part)
{
    if (part->complete)
        return true;
    return psp_channel_ops.collect(&((struct psp_pool_backend *)b)->channel->base, plan, part);
}

static int pool_ping(struct psp_backend *b)
{
    return psp_channel_ops.ping(&((struct psp_pool_backend *)b)->channel->base);
}

static void pool_destroy(struct psp_backend *b)
{
    psp_channel_ops.destroy(&((struct psp_pool_backend *)b)->channel->base);
}

static bool pool_covers(struct psp_backend *b, const cpu_set_t *set)
{
    return psp_channel_ops.covers(&((struct psp_pool_backend *)b)->channel->base, set);
}

static bool pool_available(struct psp_backend *b)
{
    return psp_channel_ops.available(&((struct psp_pool_backend *)b)->channel->base);
}

const struct psp_backend_ops psp_pool_ops;

int psp_pool_attach(struct pspawn_impl *impl, int count)
{
    if ((impl->pools = calloc((size_t)count, sizeof(*impl->pools))) == NULL)
        return ENOMEM;
    for (int k = 0; k < count; k++) {
        impl->pools[k].base.ops = &psp_pool_ops;
        impl->pools[k].base.domain = impl->channels[k].base.domain;
        impl->pools[k].channel = &impl->channels[k];
    }
    return 0;
}

const struct psp_backend_ops psp_pool_ops = {
    .submit = pool_submit,
    .pollfds = pool_pollfds,
    .collect = pool_collect,
    .ping = pool_ping,
    .destroy = pool_destroy,
    .covers = pool_covers,
    .available = pool_available,
};
