/* The dispatcher: runs a plan over the context's backends. Each backend has a queue of
 * the plan's instances routed to it; parts are submitted while a backend has room (ring
 * slots, buffer space) and collected as they complete, so a batch is in flight on every
 * proxy at once from one calling thread. A backend that fails during the call (its
 * proxy died, or could not be restarted, or is out of rotation) takes no more of the
 * call's instances: those it had not forked go to the others, and fail only when no
 * backend is left. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/internal.h"
#include "launcher/topology.h"

/* Parts one call keeps in flight per backend (at most the ring's slots). */
#define PSP_PARTS_PER_BACKEND ((int)PSP_RING_SLOTS)

struct queue {
    struct psp_backend *backend;
    int *todo;
    int n;
    int next;
    int inflight;
    bool owned;  /* todo was allocated for this queue (after a reroute), not the shared base */
    bool failed; /* its backend broke during this call: nothing more goes there */
    int fail_error;
};

struct dispatch {
    struct psp_plan *plan;
    int nb;
    struct psp_backend **backends;
    struct queue *queues;
    int *load;
    unsigned start;       /* routing starts here: calls rotate over the backends */
    const struct pspawn_impl *impl;
    unsigned spread_base; /* per-node layout: spreading of instances without a CPU set */
    unsigned spread_k;
    int **garbage;        /* replaced queue arrays: parts in flight may still point there */
    int ngarbage, cgarbage;
};

static void fail_instance(struct psp_plan *plan, int i, int err)
{
    plan->pids[i] = -1;
    plan->errors[i] = err;
}

/* Which backend an instance goes to: among those still usable in this call, one whose
 * CPUs cover the instance's CPU set, the least loaded of those; without a CPU set, in a
 * per-node layout, the least loaded proxy of the node the spreading policy picks; else
 * (or none there) the least loaded. Ties go to the first from `start`. -1: none left. */
static int route(struct dispatch *d, int i)
{
    int cpuset = d->plan->instances[i].cpuset;
    int best = -1, best_covering = -1, best_domain = -1;
    int want = -1;
    if (cpuset < 0 && d->impl != NULL && d->impl->domain_count > 1)
        want = psp_spread_node(d->impl->spread, d->impl->domain_cpus, d->impl->domain_count,
                               d->spread_base + d->spread_k++);
    for (int j = 0; j < d->nb; j++) {
        int b = (int)((d->start + (unsigned)j) % (unsigned)d->nb);
        struct psp_backend *be = d->backends[b];
        if (d->queues[b].failed || !be->ops->available(be))
            continue;
        if (best < 0 || d->load[b] < d->load[best])
            best = b;
        if (want >= 0 && be->domain == want && (best_domain < 0 || d->load[b] < d->load[best_domain]))
            best_domain = b;
        if (cpuset >= 0 && be->ops->covers(be, &d->plan->cpusets[cpuset]) &&
            (best_covering < 0 || d->load[b] < d->load[best_covering]))
            best_covering = b;
    }
    return best_covering >= 0 ? best_covering : (best_domain >= 0 ? best_domain : best);
}

static bool keep_garbage(struct dispatch *d, int *array)
{
    if (d->ngarbage == d->cgarbage) {
        int grown = d->cgarbage ? 2 * d->cgarbage : 8;
        int **more = realloc(d->garbage, (size_t)grown * sizeof(*more));
        if (more == NULL)
            return false;
        d->garbage = more;
        d->cgarbage = grown;
    }
    d->garbage[d->ngarbage++] = array;
    return true;
}

/* Appends instance i to queue b (a new array: parts in flight point into the old one). */
static bool queue_add(struct dispatch *d, int b, int i)
{
    struct queue *q = &d->queues[b];
    int rest = q->n - q->next;
    int *todo = malloc((size_t)(rest + 1) * sizeof(int));
    if (todo == NULL)
        return false;
    memcpy(todo, q->todo + q->next, (size_t)rest * sizeof(int));
    todo[rest] = i;
    if (q->owned && !keep_garbage(d, q->todo)) {
        free(todo);
        return false;
    }
    q->todo = todo;
    q->owned = true;
    q->next = 0;
    q->n = rest + 1;
    d->load[b]++;
    return true;
}

/* Instance i could not be served by its backend (which failed with err): another one
 * takes it, or it fails with err. */
static void reroute(struct dispatch *d, int i, int err)
{
    int b = route(d, i);
    if (b < 0 || !queue_add(d, b, i))
        fail_instance(d->plan, i, b < 0 ? err : ENOMEM);
    else
        d->plan->pids[i] = -1, d->plan->errors[i] = 0;
}

/* Backend b broke (err): it takes nothing more in this call; what it had not taken yet
 * goes elsewhere. */
static void queue_fail(struct dispatch *d, int b, int err)
{
    struct queue *q = &d->queues[b];
    if (!q->failed) {
        q->failed = true;
        q->fail_error = err;
    }
    while (q->next < q->n) {
        int i = q->todo[q->next++];
        reroute(d, i, q->fail_error);
    }
}

/* Errors that mean the backend itself failed, not the instance. */
static bool backend_error(int err)
{
    return err == EPIPE || err == ETIMEDOUT;
}

int psp_dispatch(struct pspawn_impl *impl, struct psp_plan *plan)
{
    struct psp_backend *single[1];
    struct dispatch d = {.plan = plan, .backends = single};
    if (plan->kernel) {
        single[0] = &impl->kernel.base;
        d.nb = 1;
    } else if (impl->channel_count == 0) { /* fallback or exec mode */
        single[0] = &impl->exec.base;
        d.nb = 1;
    } else if (impl->channel_count == 1) {
        single[0] = psp_context_backend(impl, 0);
        d.nb = 1;
    } else {
        d.nb = impl->channel_count;
        d.backends = malloc((size_t)d.nb * sizeof(*d.backends));
        if (d.backends == NULL)
            goto nomem_early;
        for (int b = 0; b < d.nb; b++)
            d.backends[b] = psp_context_backend(impl, b);
        d.start = atomic_fetch_add(&impl->next_route, 1u);
        if (impl->domain_count > 1) {
            d.impl = impl;
            d.spread_base = atomic_fetch_add(&impl->next_spread, (unsigned)plan->count);
        }
    }
    int nb = d.nb;
    d.queues = calloc((size_t)nb, sizeof(*d.queues));
    d.load = calloc((size_t)nb, sizeof(int));
    int *todo = malloc((size_t)plan->count * sizeof(int));
    int *owner = malloc((size_t)plan->count * sizeof(int));
    struct psp_part *parts = calloc((size_t)nb * PSP_PARTS_PER_BACKEND, sizeof(*parts));
    struct pollfd *fds = malloc((size_t)nb * PSP_PARTS_PER_BACKEND * 2 * sizeof(*fds));
    if (d.queues == NULL || d.load == NULL || todo == NULL || owner == NULL || parts == NULL || fds == NULL) {
        free(d.queues), free(d.load), free(todo), free(owner), free(parts), free(fds);
        if (d.backends != single)
            free(d.backends);
        goto nomem_early;
    }
    for (int b = 0; b < nb; b++)
        d.queues[b].backend = d.backends[b];
    /* Route, then lay the queues out contiguously in `todo`. */
    for (int i = 0; i < plan->count; i++) {
        plan->pids[i] = -1;
        plan->errors[i] = 0;
        owner[i] = -1;
        if (plan->instances[i].error != 0) {
            fail_instance(plan, i, plan->instances[i].error);
            continue;
        }
        if ((owner[i] = route(&d, i)) < 0) {
            fail_instance(plan, i, EPIPE); /* no proxy left in rotation */
            continue;
        }
        d.load[owner[i]]++;
    }
    int at = 0;
    for (int b = 0; b < nb; b++) {
        d.queues[b].todo = todo + at;
        at += d.load[b];
    }
    for (int i = 0; i < plan->count; i++)
        if (owner[i] >= 0)
            d.queues[owner[i]].todo[d.queues[owner[i]].n++] = i;

    int inflight = 0;
    for (;;) {
        /* Submit while there is room; block only when nothing of ours is in flight. */
        bool pending = false;
        for (int b = 0; b < nb; b++) {
            struct queue *q = &d.queues[b];
            while (q->next < q->n && q->inflight < PSP_PARTS_PER_BACKEND) {
                if (plan->cancel != NULL && atomic_load(plan->cancel)) {
                    for (; q->next < q->n; q->next++)
                        fail_instance(plan, q->todo[q->next], ECANCELED);
                    break;
                }
                if (q->failed || !q->backend->ops->available(q->backend)) {
                    queue_fail(&d, b, q->failed ? q->fail_error : EPIPE);
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
                    /* E2BIG: that instance alone. EPERM (credentials changed): every
                     * proxy would refuse. Anything else: this proxy could not be used
                     * (dead and not restartable, out of rotation, start-up failed). */
                    bool broke = err != E2BIG && err != EPERM && err != ENOMEM;
                    if (broke || err == EPERM) {
                        q->failed = true; /* first: reroute must not pick it again */
                        q->fail_error = err;
                    }
                    for (int k = 0; k < taken; k++) {
                        int i = q->todo[q->next + k];
                        if (broke)
                            reroute(&d, i, err);
                        else
                            fail_instance(plan, i, err);
                    }
                    q->next += taken;
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
                int b = p / PSP_PARTS_PER_BACKEND;
                struct queue *q = &d.queues[b];
                for (int k = 0; k < part->count; k++) {
                    int i = part->index[k];
                    int err = plan->errors[i];
                    if (plan->pids[i] <= 0 && backend_error(err)) {
                        /* Never forked (its proxy died or hung): elsewhere, if any. */
                        if (!q->failed) {
                            q->failed = true;
                            q->fail_error = err;
                        }
                        reroute(&d, i, err);
                    }
                }
                if (q->failed)
                    queue_fail(&d, b, q->fail_error);
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
    int started = 0;
    for (int i = 0; i < plan->count; i++)
        started += plan->pids[i] > 0;
    for (int b = 0; b < nb; b++)
        if (d.queues[b].owned)
            free(d.queues[b].todo);
    for (int g = 0; g < d.ngarbage; g++)
        free(d.garbage[g]);
    free(d.garbage);
    free(d.queues), free(d.load), free(todo), free(owner), free(parts), free(fds);
    if (d.backends != single)
        free(d.backends);
    return started;
nomem_early:
    for (int i = 0; i < plan->count; i++)
        fail_instance(plan, i, ENOMEM);
    return 0;
}
