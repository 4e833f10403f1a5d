/* The kernel backend: the patched kernel's pspawn/ipspawn system calls (native/kernel/)
 * serve a plan in one call per part. Synchronous calls use pspawn (the part is complete
 * when submit returns); sessions use ipspawn, and the dispatcher (on the session's
 * thread) polls the launch-session descriptor and reads every instance's pid or -errno
 * when it becomes readable. Children are the caller's (SIGCHLD, waitpid), exec'd fresh,
 * pinned before their first instruction; an instance that failed after its process
 * existed is reaped by the kernel (pspawn) or when the session is read (ipspawn).
 *
 * What the calls cannot express (cwd, stdio, umask, process groups, rlimits,
 * parent-death signal, explicit cgroups) is never sent here: under PSPAWN_KERNEL_AUTO
 * (exec-semantics contexts only) such requests go to the exec backend, under
 * PSPAWN_KERNEL_REQUIRE they fail with ENOTSUP (psp_kernel_route). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/internal.h"

int pspawn_kernel_available(void)
{
    struct psp_kernel_sys sys;
    return psp_kernel_detect(&sys) ? 1 : 0;
}

/* Options the system calls can give: CPU sets (and the NUMA-local flag, which has no
 * effect without a node-bound proxy); nothing that needs code in the child. */
static bool expressible(const pspawn_attr_t *attr)
{
    if (attr == NULL)
        return true;
    if ((attr->set & ~(uint32_t)(PSP_OPT_CPUS | PSP_OPT_NUMA_LOCAL)) != 0 || attr->cwd != NULL ||
        attr->rlimit_count > 0 || attr->has_cgroup)
        return false;
    for (int k = 0; k < 3; k++)
        if (attr->stdio[k].kind != PSP_STDIO_INHERIT)
            return false;
    return true;
}

int psp_kernel_route(const struct pspawn_impl *impl, const pspawn_attr_t *attr)
{
    if (!impl->kernel_active)
        return 0;
    if (expressible(attr))
        return 1;
    return impl->mode == PSPAWN_MODE_KERNEL ? ENOTSUP : 0;
}

int pspawn_request_mode(const pspawn_context_t *ctx, const pspawn_attr_t *attr)
{
    if (ctx == NULL || ctx->impl == NULL) {
        errno = EINVAL;
        return -1;
    }
    int route = psp_kernel_route(ctx->impl, attr);
    if (route > 1) {
        errno = route;
        return -1;
    }
    return route == 1 ? PSPAWN_MODE_KERNEL : (int)ctx->impl->mode;
}

static void fail_all(struct psp_plan *plan, const int *todo, int n, int err)
{
    for (int j = 0; j < n; j++) {
        plan->pids[todo[j]] = -1;
        plan->errors[todo[j]] = err;
    }
}

static void store_results(struct psp_plan *plan, const int *index, int n, const int32_t *results)
{
    for (int j = 0; j < n; j++) {
        int32_t r = results[j];
        plan->pids[index[j]] = r > 0 ? (pid_t)r : -1;
        plan->errors[index[j]] = r > 0 ? 0 : (r < 0 ? -r : EPROTO);
    }
}

/* The per-instance CPU masks, or NULL when every child may inherit the caller's. */
static cpu_set_t *instance_masks(const struct psp_kernel_backend *b, const struct psp_plan *plan, const int *todo,
                                 int n, int *err)
{
    bool any = b->core_set;
    for (int j = 0; j < n && !any; j++)
        any = plan->instances[todo[j]].cpuset >= 0;
    *err = 0;
    if (!any)
        return NULL;
    cpu_set_t *masks = malloc((size_t)n * sizeof(*masks));
    cpu_set_t fallback;
    if (masks == NULL) {
        *err = ENOMEM;
        return NULL;
    }
    if (b->core_set)
        fallback = b->core;
    else if (sched_getaffinity(0, sizeof(fallback), &fallback) != 0) {
        *err = errno;
        free(masks);
        return NULL;
    }
    for (int j = 0; j < n; j++) {
        int c = plan->instances[todo[j]].cpuset;
        masks[j] = c >= 0 ? plan->cpusets[c] : fallback;
    }
    return masks;
}

/* One system call for instances index[0..n): pspawn (results filled), or ipspawn (*session
 * set). Returns 0 or the errno of the call as a whole. */
static int launch(const struct psp_kernel_backend *b, const struct psp_plan *plan, const int *index, int n,
                  bool async, int32_t *results, int *session)
{
    char *const **argv = malloc((size_t)n * sizeof(*argv));
    char *const **envp = malloc((size_t)n * sizeof(*envp));
    int err = argv == NULL || envp == NULL ? ENOMEM : 0;
    cpu_set_t *masks = err == 0 ? instance_masks(b, plan, index, n, &err) : NULL;
    for (int j = 0; err == 0 && j < n; j++) {
        const struct psp_plan_set *set = &plan->sets[plan->instances[index[j]].set];
        argv[j] = set->argv;
        envp[j] = set->envp;
    }
    if (err == 0)
        err = psp_kernel_launch(&b->sys, async, b->path, (char *const *const *)argv, (char *const *const *)envp,
                                masks, n, results, session);
    free(argv), free(envp), free(masks);
    return err;
}

/* The patched kernel does not launch while a signal is pending for the caller: ipspawn
 * reports such an instance as -ERESTARTNOINTR (a fork would be restarted transparently),
 * pspawn stops and reports the rest as -EINTR. Typically that is SIGCHLD of an earlier
 * instance, pending when the caller handles SIGCHLD. Such instances never existed; they
 * are launched again (synchronously: the signal is delivered on the way back to user
 * space between calls), a bounded number of times, then reported as EINTR. */
#define PSP_ERESTARTNOINTR 513
#define PSP_RELAUNCH_ROUNDS 100 /* without progress */

static bool interrupted(int err)
{
    return err == PSP_ERESTARTNOINTR || err == EINTR;
}

static void relaunch_interrupted(const struct psp_kernel_backend *b, struct psp_plan *plan, const int *index, int n)
{
    int *again = malloc((size_t)n * sizeof(*again));
    int32_t *results = malloc((size_t)n * sizeof(*results));
    int stalled = 0; /* rounds in a row that launched nothing */
    while (again != NULL && results != NULL && stalled < PSP_RELAUNCH_ROUNDS) {
        int m = 0;
        for (int j = 0; j < n; j++)
            if (interrupted(plan->errors[index[j]]))
                again[m++] = index[j];
        if (m == 0)
            break;
        int err = launch(b, plan, again, m, false, results, NULL);
        if (err != 0 && !interrupted(err)) {
            fail_all(plan, again, m, err);
            break;
        }
        int before = m;
        if (err == 0) {
            store_results(plan, again, m, results);
            for (int j = 0; j < m; j++)
                before -= !interrupted(plan->errors[again[j]]);
        }
        stalled = before == m ? stalled + 1 : 0;
    }
    for (int j = 0; j < n; j++) /* out of memory, or no progress for that many rounds */
        if (interrupted(plan->errors[index[j]]))
            plan->errors[index[j]] = EINTR;
    free(again), free(results);
}

static int kernel_submit(struct psp_backend *be, struct psp_plan *plan, const int *todo, int n, bool block,
                         struct psp_part *part, int *taken)
{
    (void)block;
    struct psp_kernel_backend *b = (struct psp_kernel_backend *)be;
    if (n > b->sys.max_spawns)
        n = b->sys.max_spawns;
    *taken = n;
    part->reply_fd = -1;
    int32_t *results = plan->async ? NULL : malloc((size_t)n * sizeof(*results));
    int err = !plan->async && results == NULL ? ENOMEM : launch(b, plan, todo, n, plan->async, results, &part->reply_fd);
    if (err != 0)
        fail_all(plan, todo, n, err);
    else if (!plan->async)
        store_results(plan, todo, n, results);
    if (!plan->async && (err == 0 || interrupted(err)))
        relaunch_interrupted(b, plan, todo, n);
    free(results);
    return 0;
}

static int kernel_pollfds(struct psp_backend *b, struct psp_part *part, struct pollfd *fds)
{
    (void)b;
    if (part->reply_fd < 0)
        return 0;
    fds[0] = (struct pollfd){.fd = part->reply_fd, .events = POLLIN};
    return 1;
}

/* A session part is complete once its descriptor reads: then it is closed (which also
 * lets the kernel reap what it has not reaped on the read). */
static bool kernel_collect(struct psp_backend *be, struct psp_plan *plan, struct psp_part *part)
{
    const struct psp_kernel_backend *b = (const struct psp_kernel_backend *)be;
    if (part->reply_fd < 0)
        return true;
    int32_t *results = malloc((size_t)part->count * sizeof(*results));
    if (results == NULL)
        return false; /* tried again on the next round */
    int err = psp_kernel_read_session(part->reply_fd, results, part->count);
    if (err == EAGAIN) {
        free(results);
        return false;
    }
    psp_close_fd(&part->reply_fd);
    if (err == 0) {
        store_results(plan, part->index, part->count, results);
        relaunch_interrupted(b, plan, part->index, part->count);
    } else {
        fail_all(plan, part->index, part->count, err);
    }
    free(results);
    return true;
}

const struct psp_backend_ops psp_kernel_ops = {
    .submit = kernel_submit,
    .pollfds = kernel_pollfds,
    .collect = kernel_collect,
    .ping = psp_backend_ping_nothing,
    .destroy = psp_backend_destroy_nothing,
    .covers = psp_backend_covers_all,
    .available = psp_backend_always_available,
};

bool psp_kernel_backend_init(struct psp_kernel_backend *b, const char *path, int core)
{
    memset(b, 0, sizeof(*b));
    b->base.ops = &psp_kernel_ops;
    b->base.domain = -1;
    b->path = path;
    if (core >= 0) {
        b->core_set = true;
        CPU_ZERO(&b->core);
        CPU_SET((size_t)core, &b->core);
    }
    return psp_kernel_detect(&b->sys);
}
