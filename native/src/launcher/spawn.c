/* The spawn entry points: each builds a plan and hands it to the dispatcher. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/internal.h"

extern char **environ;

short psp_spawnattr_default_signals(posix_spawnattr_t *sa)
{
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(sa, &all);
    posix_spawnattr_setsigmask(sa, &none);
    return POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
}

/* The cgroup the plan's children are created in: the attr's, else the context's, else
 * (zygote contexts) the caller's cgroup v2 *now* if it is not the one the proxies were
 * started in, as fork+exec would place them; -1: where the proxy is. The comparison is
 * one read of /proc/self/cgroup per call; only a caller that moved opens a directory
 * (*owned, closed after the call). A directory that cannot be opened (a cgroup
 * namespace mismatch, removed meanwhile) leaves the children where the proxy is. */
static int psp_plan_cgroup(struct pspawn_impl *impl, const pspawn_attr_t *attr, int *owned)
{
    if (attr != NULL && attr->has_cgroup)
        return attr->cgroup_fd;
    if (impl->cgroup_fd >= 0)
        return impl->cgroup_fd;
    if (impl->channel_count == 0 || !impl->proxy_cgroup_known)
        return -1;
    char now[sizeof(impl->proxy_cgroup)];
    if (!psp_cgroup_current(impl->self_cgroup_fd, now, sizeof(now)) || strcmp(now, impl->proxy_cgroup) == 0)
        return -1;
    const char *mount = psp_cgroup2_mount();
    char path[sizeof(now) + 64];
    if (mount == NULL || snprintf(path, sizeof(path), "%s%s", mount, now) >= (int)sizeof(path) ||
        psp_cgroup_open(path, owned) != 0)
        return -1;
    return *owned;
}

/* Every entry point: build a plan, dispatch it. Returns the number started; sets
 * *first_error to the first failed instance's error (0 if none). */
int psp_run_plan(pspawn_context_t *ctx, pid_t *pids, int *errors, int *stdio_fds, int n,
                 const pspawn_instance_t *instances, char *const argv[], char *const envp[],
                 const pspawn_attr_t *attr, _Atomic bool *cancel, int *first_error);
int psp_run_plan(pspawn_context_t *ctx, pid_t *pids, int *errors, int *stdio_fds, int n,
                 const pspawn_instance_t *instances, char *const argv[], char *const envp[],
                 const pspawn_attr_t *attr, _Atomic bool *cancel, int *first_error)
{
    *first_error = 0;
    if (n == 0)
        return 0;
    int *errs = errors;
    if (errs == NULL && (errs = malloc((size_t)n * sizeof(int))) == NULL) {
        *first_error = ENOMEM;
        for (int i = 0; i < n; i++)
            pids[i] = -1;
        return 0;
    }
    for (int i = 0; stdio_fds != NULL && i < 3 * n; i++)
        stdio_fds[i] = -1; /* no pipe asked for, or not started: -1, as documented */
    struct pspawn_impl *impl = ctx->impl;
    struct psp_plan plan;
    int route = psp_kernel_route(impl, attr);
    int err = route > 1 ? route : psp_plan_build(&plan, instances, n, argv, envp, impl->path, attr);
    int started = 0;
    if (err != 0) {
        for (int i = 0; i < n; i++) {
            pids[i] = -1;
            errs[i] = err;
        }
    } else {
        plan.pids = pids;
        plan.errors = errs;
        plan.stdio_fds = stdio_fds;
        plan.cancel = cancel;
        plan.async = cancel != NULL;
        plan.kernel = route == 1;
        int owned_cgroup = -1;
        if (!plan.kernel) /* kernel children are born in the caller's cgroup of the moment */
            plan.cgroup_fd = psp_plan_cgroup(impl, attr, &owned_cgroup);
        started = psp_dispatch(impl, &plan);
        if (owned_cgroup >= 0)
            close(owned_cgroup);
        psp_plan_free(&plan);
    }
    for (int i = 0; i < n && *first_error == 0; i++)
        *first_error = errs[i];
    if (errs != errors)
        free(errs);
    return started;
}

static int run_plan(pspawn_context_t *ctx, pid_t *pids, int *errors, int *stdio_fds, int n, char *const argv[],
                    char *const envp[], const pspawn_attr_t *attr)
{
    int first_error;
    int started = psp_run_plan(ctx, pids, errors, stdio_fds, n, NULL, argv, envp, attr, NULL, &first_error);
    if (first_error != 0)
        errno = first_error;
    return started == 0 && n > 0 ? -1 : started;
}

static int spawn_many(pid_t *pids, int *errors, int *stdio_fds, pspawn_context_t *ctx, int n,
                      char *const argv[], char *const envp[], const pspawn_attr_t *attr)
{
    if (ctx == NULL || ctx->impl == NULL || pids == NULL || argv == NULL || argv[0] == NULL || n < 0 ||
        n > PSPAWN_MAX_SPAWNS ||
        (stdio_fds == NULL && psp_attr_pipe_count(attr) > 0)) {
        errno = EINVAL;
        return -1;
    }
    return run_plan(ctx, pids, errors, stdio_fds, n, argv, envp, attr);
}

int pspawn_nx(pid_t *pids, int *errors, int *stdio_fds, pspawn_context_t *ctx, int nspawns,
              char *const argv[], char *const envp[], const pspawn_attr_t *attr)
{
    return spawn_many(pids, errors, stdio_fds, ctx, nspawns, argv, envp, attr);
}

pid_t pspawn_x(pspawn_context_t *ctx, char *const argv[], char *const envp[], const pspawn_attr_t *attr,
               int stdio_fds[3])
{
    pid_t pid;
    int fds[3];
    int started = spawn_many(&pid, NULL, fds, ctx, 1, argv, envp, attr);
    if (stdio_fds != NULL)
        memcpy(stdio_fds, fds, sizeof(fds));
    else if (started == 1)
        for (int k = 0; k < 3; k++)
            if (fds[k] >= 0)
                close(fds[k]);
    return started == 1 ? pid : -1;
}

int pspawn_ne(pid_t *pids, int *errors, pspawn_context_t *ctx, int nspawns, char *const argv[],
              char *const envp[])
{
    return spawn_many(pids, errors, NULL, ctx, nspawns, argv, envp, NULL);
}

int pspawn_n(pid_t *pids, pspawn_context_t *ctx, int nspawns, char *const argv[])
{
    return spawn_many(pids, NULL, NULL, ctx, nspawns, argv, NULL, NULL);
}

pid_t pspawn_e(pspawn_context_t *ctx, char *const argv[], char *const envp[])
{
    pid_t pid;
    return spawn_many(&pid, NULL, NULL, ctx, 1, argv, envp, NULL) == 1 ? pid : -1;
}

pid_t pspawn(pspawn_context_t *ctx, char *const argv[])
{
    return pspawn_e(ctx, argv, NULL);
}
