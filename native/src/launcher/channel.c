/* Sending spawn requests to a proxy and collecting the results. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/part.h"

/* An eventfd write: no signal, so no permission check after a credential change and no
 * pending-signal quota that other processes of the user can exhaust. */
static int ring_doorbell(struct psp_channel *ch)
{
    uint64_t one = 1;
    while (write(ch->doorbell_fd, &one, sizeof(one)) < 0) {
        if (errno != EINTR)
            return errno; /* EAGAIN needs 2^64 - 2 unread rings: not transient */
    }
    return 0;
}

void psp_channel_ring(struct psp_channel *ch)
{
    pthread_mutex_lock(&ch->lock);
    if (!ch->broken)
        (void)ring_doorbell(ch);
    pthread_mutex_unlock(&ch->lock);
}

/* A pidfd polls readable once its process has exited. */
static bool pidfd_ready(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* Before a request: a proxy that died since the last one (killed, OOM) is replaced, so
 * the request does not fail for a death nobody could have prevented. A restart replaces
 * the eventfds and the segment, so it waits until no slot is in use (the requests in
 * flight on a dead proxy complete at once, with EPIPE). Called with the lock held. */
static int ensure_proxy(struct psp_channel *ch, bool block)
{
    if (!ch->broken && ch->proxy_pidfd >= 0 && !pidfd_ready(ch->proxy_pidfd))
        return 0;
    ch->broken = true;
    while (ch->busy > 0) {
        if (!block)
            return EAGAIN; /* the caller's own parts in flight must be collected first */
        pthread_cond_wait(&ch->changed, &ch->lock);
    }
    if (!ch->broken) /* another thread restarted it meanwhile */
        return 0;
    return psp_channel_restart(ch);
}

/* The largest free range of the data area (launcher-private bookkeeping: the busy
 * slots' ranges). Called with the lock held. */
static void largest_gap(const struct psp_channel *ch, uint64_t *lo, uint64_t *len)
{
    uint64_t start = psp_align64(ch->shared->data_offset), end = ch->size;
    uint64_t best_lo = start, best_len = 0;
    uint64_t cursor = start;
    for (;;) {
        /* The busy range starting lowest at or after `cursor`. */
        int next = -1;
        for (int k = 0; k < (int)PSP_RING_SLOTS; k++)
            if (ch->slot_busy[k] && ch->slot_lo[k] >= cursor && (next < 0 || ch->slot_lo[k] < ch->slot_lo[next]))
                next = k;
        uint64_t gap_end = next < 0 ? end : ch->slot_lo[next];
        if (gap_end > cursor && gap_end - cursor > best_len) {
            best_lo = cursor;
            best_len = gap_end - cursor;
        }
        if (next < 0)
            break;
        cursor = psp_align64(ch->slot_lo[next] + ch->slot_len[next]);
    }
    *lo = best_lo;
    *len = best_len;
}

static void release_slot(struct psp_channel *ch, int slot)
{
    pthread_mutex_lock(&ch->lock);
    ch->slot_busy[slot] = false;
    ch->busy--;
    pthread_cond_broadcast(&ch->changed);
    pthread_mutex_unlock(&ch->lock);
}

static int channel_submit(struct psp_backend *b, struct psp_plan *plan, const int *todo, int n, bool block,
                          struct psp_part *part, int *taken)
{
    struct psp_channel *ch = (struct psp_channel *)b;
    const pspawn_attr_t *attr = plan->attr;
    size_t option_bytes = attr != NULL ? psp_attr_wire_size(attr) : 0;
    int npipes = psp_attr_pipe_count(attr);
    int max_count = npipes > 0 ? PSP_MAX_PIPED_BATCH : (int)PSP_MAX_COUNT;
    *taken = 0;
    pthread_mutex_lock(&ch->lock);
    int err = 0;
    int slot = -1;
    struct part_size ps;
    uint64_t lo = 0, len = 0;
    if (!psp_credentials_unchanged(&ch->credentials))
        err = EPERM;
    while (err == 0) {
        if ((err = ensure_proxy(ch, block)) != 0)
            break;
        for (int k = 0; k < (int)PSP_RING_SLOTS && slot < 0; k++)
            if (!ch->slot_busy[k])
                slot = k;
        if (slot >= 0) {
            uint64_t gap_lo, gap_len;
            largest_gap(ch, &gap_lo, &gap_len);
            /* A part takes at most a quarter of the buffer when it can, so that the next
             * part (or another thread's) can be encoded while the proxy forks this one. */
            uint64_t area = ch->size - psp_align64(ch->shared->data_offset);
            uint64_t limit = gap_len < area / PSP_RING_SLOTS ? gap_len : area / PSP_RING_SLOTS;
            psp_part_fit(plan, todo, n, limit, option_bytes, max_count, &ps);
            if (ps.count == 0)
                psp_part_fit(plan, todo, n, gap_len, option_bytes, max_count, &ps);
            if (ps.count > 0) {
                lo = gap_lo;
                len = psp_part_bytes(&ps, option_bytes);
                break;
            }
            psp_part_fit(plan, todo, 1, area, option_bytes, max_count, &ps);
            if (ps.count == 0) { /* it would not fit alone, even in the whole buffer */
                *taken = 1;
                err = E2BIG;
                break;
            }
            slot = -1; /* it fits once other requests release their ranges */
        }
        if (!block) {
            err = EAGAIN;
            break;
        }
        pthread_cond_wait(&ch->changed, &ch->lock);
    }
    if (err != 0) {
        if (err != EAGAIN && err != E2BIG)
            *taken = n;
        pthread_mutex_unlock(&ch->lock);
        return err;
    }
    ch->slot_busy[slot] = true;
    ch->slot_lo[slot] = lo;
    ch->slot_len[slot] = len;
    ch->busy++;
    *part = (struct psp_part){.slot = slot, .shared = ch->shared, .reply_fd = ch->slot_fds[slot],
                              .pidfd = ch->proxy_pidfd};
    pthread_mutex_unlock(&ch->lock);

    /* Outside the lock: the slot and its range are ours. */
    struct psp_request req;
    int shared_fds[PSP_MAX_SHARED_FDS];
    int nshared = 0;
    psp_part_encode(ch, plan, todo, &ps, lo, len, option_bytes, &req, shared_fds, &nshared);
    part->results_offset = req.results_offset;
    part->errors_offset = req.errors_offset;
    part->report = attr != NULL || ps.cpusets > 0;
    part->count = ps.count;
    part->index = (int *)todo;
    *taken = ps.count;
    int cgroup_fd = psp_plan_instance_cgroup(plan, todo[0]);
    bool cgroup = cgroup_fd >= 0;
    int fd_count = nshared + npipes * ps.count + (cgroup ? 1 : 0);
    int *fds = NULL;
    if (fd_count > 0) {
        if ((fds = malloc((size_t)fd_count * sizeof(int))) == NULL) {
            err = ENOMEM;
        } else {
            memcpy(fds, shared_fds, (size_t)nshared * sizeof(int));
            for (int i = nshared; i < fd_count; i++)
                fds[i] = -1;
            if (npipes > 0)
                err = psp_make_pipes(attr, todo, ps.count, plan->stdio_fds, fds + nshared);
            if (cgroup)
                fds[fd_count - 1] = cgroup_fd; /* last: the proxy clones into it */
        }
    }
    req.fd_count = (uint32_t)fd_count;
    if (cgroup)
        req.flags |= PSP_REQ_CGROUP;

    /* Publication, under the lock: descriptors reach the socket in ticket order. */
    pthread_mutex_lock(&ch->lock);
    if (err == 0 && fd_count > 0 && (err = psp_send_fds(ch->socket_fd, fds, fd_count)) != 0)
        ch->broken = true; /* the socket may hold part of this request: unusable */
    if (err == 0) {
        struct psp_slot *s = &ch->shared->slots[slot];
        s->request = req;
        atomic_store(&s->progress, 0);
        atomic_store(&s->reply_error, 0);
        part->ticket = ++ch->next_ticket;
        atomic_store(&s->request_seq, part->ticket);
        err = ring_doorbell(ch);
        part->sent = true;
    }
    pthread_mutex_unlock(&ch->lock);
    if (fds != NULL) {
        for (int i = nshared; i < fd_count - (cgroup ? 1 : 0); i++)
            psp_close_fd(&fds[i]); /* the child ends now travel in the socket */
        free(fds);
    }
    int timeout = ch->config.request_timeout_ms == 0 ? PSP_DEFAULT_REQUEST_TIMEOUT_MS : ch->config.request_timeout_ms;
    part->timeout_ms = timeout;
    part->deadline = timeout < 0 ? INT64_MAX : psp_now_ms() + timeout;
    part->error = err;
    return 0; /* collect reports err for each instance */
}

static int channel_pollfds(struct psp_backend *b, struct psp_part *part, struct pollfd *fds)
{
    (void)b;
    fds[0] = (struct pollfd){.fd = part->reply_fd, .events = POLLIN};
    fds[1] = (struct pollfd){.fd = part->pidfd, .events = POLLIN};
    return 2;
}

/* Whatever happened, every child that exists is reported: a positive slot is a pid
 * (written by the kernel at fork), a negative one the errno of a failed fork, and a
 * zero one an instance never forked, which gets the request's error. */
static void finish(struct psp_channel *ch, struct psp_plan *plan, struct psp_part *part, int err)
{
    struct psp_slot *s = &part->shared->slots[part->slot];
    _Atomic int32_t *results = psp_results(part->shared, part->results_offset);
    _Atomic int32_t *child_errors = psp_errors(part->shared, part->errors_offset);
    uint32_t done = part->sent ? atomic_load(&s->progress) : 0;
    if (err == 0 && (err = atomic_load(&s->reply_error)) <= 0)
        err = done < (uint32_t)part->count ? EPROTO : 0;
    int npipes = psp_attr_pipe_count(plan->attr);
    for (int j = 0; j < part->count; j++) {
        int i = part->index[j];
        int32_t r = part->sent ? atomic_load_explicit(&results[j], memory_order_relaxed) : 0;
        if (r == 0)
            r = -(err != 0 ? err : EPROTO);
        int32_t child_error = r > 0 && part->report ? atomic_load_explicit(&child_errors[j], memory_order_relaxed) : 0;
        if (r > 0 && child_error != 0) {
            /* It failed before main and exited: reap it here (relay: the proxy does). */
            if (!ch->config.relay)
                while (waitpid(r, NULL, 0) < 0 && errno == EINTR) {
                }
            r = -child_error;
        }
        plan->pids[i] = r > 0 ? r : -1;
        plan->errors[i] = r > 0 ? 0 : (r < 0 ? -r : EPROTO);
        if (r <= 0 && plan->stdio_fds != NULL && npipes > 0)
            for (int k = 0; k < 3; k++)
                psp_close_fd(&plan->stdio_fds[3 * i + k]);
    }
    psp_drain_eventfd(part->reply_fd);
    release_slot(ch, part->slot);
}

/* On failure the channel is broken and the proxy is stopped, so everything it wrote is
 * final. Bounded: a proxy we cannot stop makes `progress` unreliable, but it stops
 * forking at the hang-up, which terminate sends too. */
static void fail_part(struct psp_channel *ch)
{
    pthread_mutex_lock(&ch->lock);
    ch->broken = true;
    pthread_mutex_unlock(&ch->lock);
    (void)psp_channel_terminate(ch);
}

static bool channel_collect(struct psp_backend *b, struct psp_plan *plan, struct psp_part *part)
{
    struct psp_channel *ch = (struct psp_channel *)b;
    if (!part->sent || part->error != 0) {
        if (part->sent)
            fail_part(ch);
        finish(ch, plan, part, part->error != 0 ? part->error : EPROTO);
        return true;
    }
    struct psp_slot *s = &part->shared->slots[part->slot];
    if (atomic_load(&s->reply_seq) == part->ticket) {
        finish(ch, plan, part, 0);
        return true;
    }
    int err = 0;
    if (pidfd_ready(part->pidfd)) {
        if (atomic_load(&s->reply_seq) == part->ticket) {
            finish(ch, plan, part, 0);
            return true;
        }
        err = EPIPE;
    } else if (part->timeout_ms >= 0) {
        uint32_t progress = atomic_load(&s->progress);
        int64_t now = psp_now_ms();
        if (progress != part->last_progress) {
            part->last_progress = progress;
            part->deadline = now + part->timeout_ms;
        } else if (now >= part->deadline) {
            err = ETIMEDOUT;
        }
    }
    if (err == 0)
        return false;
    fail_part(ch);
    finish(ch, plan, part, err);
    return true;
}

static bool channel_covers(struct psp_backend *b, const cpu_set_t *set)
{
    struct psp_channel *ch = (struct psp_channel *)b;
    if (!ch->pinned)
        return true;
    cpu_set_t both;
    CPU_AND(&both, &ch->domain, set);
    return CPU_EQUAL(&both, set);
}

static bool channel_available(struct psp_backend *b)
{
    return !atomic_load(&((struct psp_channel *)b)->out_of_rotation);
}

int psp_channel_ping(struct psp_channel *ch)
{
    pthread_mutex_lock(&ch->lock);
    int err = ensure_proxy(ch, true);
    int slot = -1;
    while (err == 0 && slot < 0) {
        for (int k = 0; k < (int)PSP_RING_SLOTS && slot < 0; k++)
            if (!ch->slot_busy[k])
                slot = k;
        if (slot < 0)
            pthread_cond_wait(&ch->changed, &ch->lock);
    }
    if (err != 0) {
        pthread_mutex_unlock(&ch->lock);
        return err;
    }
    ch->slot_busy[slot] = true;
    ch->slot_lo[slot] = ch->slot_len[slot] = 0;
    ch->busy++;
    struct psp_part part = {.slot = slot, .shared = ch->shared, .reply_fd = ch->slot_fds[slot],
                            .pidfd = ch->proxy_pidfd, .sent = true};
    struct psp_slot *s = &ch->shared->slots[slot];
    s->request = (struct psp_request){.count = 0};
    atomic_store(&s->progress, 0);
    atomic_store(&s->reply_error, 0);
    part.ticket = ++ch->next_ticket;
    atomic_store(&s->request_seq, part.ticket);
    err = ring_doorbell(ch);
    pthread_mutex_unlock(&ch->lock);
    int timeout = ch->config.request_timeout_ms == 0 ? PSP_DEFAULT_REQUEST_TIMEOUT_MS : ch->config.request_timeout_ms;
    int64_t deadline = timeout < 0 ? INT64_MAX : psp_now_ms() + timeout;
    while (err == 0 && atomic_load(&s->reply_seq) != part.ticket) {
        struct pollfd fds[2];
        channel_pollfds(&ch->base, &part, fds);
        int64_t left = deadline - psp_now_ms();
        if (left <= 0) {
            err = ETIMEDOUT;
            break;
        }
        int n = poll(fds, 2, (int)(left < 1000 ? left : 1000));
        if (n < 0 && errno != EINTR)
            err = errno;
        else if (n > 0 && fds[1].revents && atomic_load(&s->reply_seq) != part.ticket)
            err = EPIPE;
    }
    if (err != 0)
        fail_part(ch);
    psp_drain_eventfd(part.reply_fd);
    release_slot(ch, slot);
    return err;
}

static int channel_ping_op(struct psp_backend *b)
{
    return psp_channel_ping((struct psp_channel *)b);
}

static void channel_destroy(struct psp_backend *b)
{
    psp_channel_stop((struct psp_channel *)b);
}

const struct psp_backend_ops psp_channel_ops = {
    .submit = channel_submit,
    .pollfds = channel_pollfds,
    .collect = channel_collect,
    .ping = channel_ping_op,
    .destroy = channel_destroy,
    .covers = channel_covers,
    .available = channel_available,
};
