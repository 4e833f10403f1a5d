/* The dispatcher: runs a plan over the context's backends. Each backend has a queue of
 * the plan's instances routed to it; parts are submitted while a backend has room (ring
 * slots, buffer space) and collected as they complete, so a batch is in flight on every
 * proxy at once from one calling thread. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/internal.h"

/* Parts one call keeps in flight per backend (at most the ring's slots). */
#define PSP_PARTS_PER_BACKEND ((int)PSP_RING_SLOTS)

struct queue {
    struct psp_backend *backend;
    int *todo;
    int n;
    int next;
    int inflight;
    bool failed; /* its proxy broke during this call: the rest fails with its error */
    int fail_error;
};

static void fail_instance(struct psp_plan *plan, int i, int err)
{
    plan->pids[i] = -1;
    plan->errors[i] = err;
}

/* Which backend an instance goes to: one whose CPUs cover the instance's CPU set, the
 * least loaded among those; without a CPU set (or none covering it), round robin. */
static int route(struct pspawn_impl *impl, struct psp_backend **backends, int nb, const struct psp_plan *plan,
                 int i, const int *load)
{
    (void)impl;
    if (nb == 1)
        return 0;
    int cpuset = plan->instances[i].cpuset;
    int best = -1;
    if (cpuset >= 0) {
        for (int b = 0; b < nb; b++)
            if (backends[b]->ops->covers(backends[b], &plan->cpusets[cpuset]) && (best < 0 || load[b] < load[best]))
                best = b;
    }
    if (best < 0) {
        best = 0;
        for (int b = 1; b < nb; b++)
            if (load[b] < load[best])
                best = b;
    }
    return best;
}

int psp_dispatch(struct pspawn_impl *impl, struct psp_plan *plan)
{
    struct psp_backend *single[1];
    struct psp_backend **backends = single;
    int nb;
    if (impl->mode == PSPAWN_MODE_FALLBACK) {
        single[0] = &impl->posix.base;
        nb = 1;
    } else if (impl->channel_count == 1) {
        single[0] = &impl->channels[0].base;
        nb = 1;
    } else {
        nb = impl->channel_count;
        backends = malloc((size_t)nb * sizeof(*backends));
        if (backends == NULL)
            goto nomem_early;
        for (int b = 0; b < nb; b++)
            backends[b] = &impl->channels[b].base;
    }
    struct queue *queues = calloc((size_t)nb, sizeof(*queues));
    int *load = calloc((size_t)nb, sizeof(int));
    int *todo = malloc((size_t)plan->count * sizeof(int));
    int *owner = malloc((size_t)plan->count * sizeof(int));
    struct psp_part *parts = calloc((size_t)nb * PSP_PARTS_PER_BACKEND, sizeof(*parts));
    struct pollfd *fds = malloc((size_t)nb * PSP_PARTS_PER_BACKEND * 2 * sizeof(*fds));
    if (queues == NULL || load == NULL || todo == NULL || owner == NULL || parts == NULL || fds == NULL) {
        free(queues), free(load), free(todo), free(owner), free(parts), free(fds);
        if (backends != single)
            free(backends);
        goto nomem_early;
    }
    /* Route, then lay the queues out contiguously in `todo`. */
    for (int i = 0; i < plan->count; i++) {
        plan->pids[i] = -1;
        plan->errors[i] = 0;
        if (plan->instances[i].error != 0) {
            fail_instance(plan, i, plan->instances[i].error);
            owner[i] = -1;
            continue;
        }
        owner[i] = route(impl, backends, nb, plan, i, load);
        load[owner[i]]++;
    }
    int at = 0;
    for (int b = 0; b < nb; b++) {
        queues[b].backend = backends[b];
        queues[b].todo = todo + at;
        at += load[b];
    }
    for (int i = 0; i < plan->count; i++)
        if (owner[i] >= 0)
            queues[owner[i]].todo[queues[owner[i]].n++] = i;

    int started = 0;
    int inflight = 0;
    for (;;) {
        /* Submit while there is room; block only when nothing of ours is in flight. */
        bool pending = false;
        for (int b = 0; b < nb; b++) {
            struct queue *q = &queues[b];
            while (q->next < q->n && q->inflight < PSP_PARTS_PER_BACKEND) {
                if (q->failed || (plan->cancel != NULL && atomic_load(plan->cancel))) {
                    int err = q->failed ? q->fail_error : ECANCELED;
                    for (; q->next < q->n; q->next++)
                        fail_instance(plan, q->todo[q->next], err);
                    break;
                }
                struct psp_part *part = NULL;
                for (int k = 0; k < PSP_PARTS_PER_BACKEND; k++)
                    if (parts[b * PSP_PARTS_PER_BACKEND + k].backend == NULL) {
                        part = &parts[b * PSP_PARTS_PER_BACKEND + k];
                        break;
                    }
                memset(part, 0, sizeof(*part));
                int taken = 0;
                int err = q->backend->ops->submit(q->backend, plan, q->todo + q->next, q->n - q->next,
                                                  inflight == 0, part, &taken);
                if (err == EAGAIN && taken == 0)
                    break;
                if (err != 0) {
                    for (int k = 0; k < taken; k++)
                        fail_instance(plan, q->todo[q->next + k], err);
                    q->next += taken;
                    if (err == EPIPE || err == EPERM) {
                        q->failed = true;
                        q->fail_error = err;
                    }
                    continue;
                }
                part->backend = q->backend;
                part->index = q->todo + q->next;
                part->count = taken;
                q->next += taken;
                q->inflight++;
                inflight++;
            }
            pending |= q->next < q->n;
        }
        if (inflight == 0 && !pending)
            break;
        /* Collect what is complete; wait on the rest. */
        int nfds = 0;
        for (int p = 0; p < nb * PSP_PARTS_PER_BACKEND; p++) {
            struct psp_part *part = &parts[p];
            if (part->backend == NULL)
                continue;
            if (part->backend->ops->collect(part->backend, plan, part)) {
                struct queue *q = &queues[p / PSP_PARTS_PER_BACKEND];
                for (int k = 0; k < part->count; k++) {
                    started += plan->pids[part->index[k]] > 0;
                    if (plan->errors[part->index[k]] == EPIPE || plan->errors[part->index[k]] == ETIMEDOUT) {
                        q->failed = true;
                        q->fail_error = plan->errors[part->index[k]];
                    }
                }
                part->backend = NULL;
                q->inflight--;
                inflight--;
                continue;
            }
            nfds += part->backend->ops->pollfds(part->backend, part, fds + nfds);
        }
        if (nfds > 0) {
            /* Bounded, so that deadlines are checked even if nothing arrives. */
            while (poll(fds, (nfds_t)nfds, 1000) < 0 && errno == EINTR) {
            }
        }
    }
    free(queues), free(load), free(todo), free(owner), free(parts), free(fds);
    if (backends != single)
        free(backends);
    return started;
nomem_early:
    for (int i = 0; i < plan->count; i++)
        fail_instance(plan, i, ENOMEM);
    return 0;
}
