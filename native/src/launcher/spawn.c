/* The spawn entry points, over a proxy channel or, in fallback mode, posix_spawn. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
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

/* Adds the options posix_spawn can express; ENOTSUP for those it cannot (umask,
 * resource limits, parent-death signal). Pipe ends for the child go to child_fds. */
static int add_options(posix_spawn_file_actions_t *fa, posix_spawnattr_t *sa, short *flags,
                       const pspawn_attr_t *attr, int *stdio_fds, int *child_fds)
{
    if ((attr->set & (PSP_OPT_UMASK | PSP_OPT_PDEATHSIG)) || attr->rlimit_count > 0)
        return ENOTSUP;
    int err = 0;
    if (attr->cwd != NULL && (err = posix_spawn_file_actions_addchdir_np(fa, attr->cwd)) != 0)
        return err;
    for (int k = 0; k < 3 && err == 0; k++) {
        const struct psp_attr_stdio *st = &attr->stdio[k];
        switch (st->kind) {
        case PSP_STDIO_NULL:
            err = posix_spawn_file_actions_addopen(fa, k, "/dev/null", O_RDWR, 0);
            break;
        case PSP_STDIO_FILE:
            err = posix_spawn_file_actions_addopen(fa, k, st->path, st->oflags, st->mode);
            break;
        case PSP_STDIO_FD:
            err = posix_spawn_file_actions_adddup2(fa, st->caller_fd, k);
            break;
        case PSP_STDIO_PIPE: {
            int p[2];
            if (pipe2(p, O_CLOEXEC) != 0)
                return errno;
            stdio_fds[k] = k == 0 ? p[1] : p[0];
            child_fds[k] = k == 0 ? p[0] : p[1];
            err = posix_spawn_file_actions_adddup2(fa, child_fds[k], k);
            break;
        }
        default:
            break;
        }
    }
    if (err == 0 && (attr->set & PSP_OPT_PGROUP)) {
        *flags |= POSIX_SPAWN_SETPGROUP;
        err = posix_spawnattr_setpgroup(sa, attr->pgroup);
    }
    if (err == 0 && (attr->set & PSP_OPT_SETSID))
        *flags |= POSIX_SPAWN_SETSID;
    return err;
}

static void apply_cpus(const struct psp_plan *plan, int instance, int core, pid_t pid)
{
    cpu_set_t one;
    const cpu_set_t *set = NULL;
    if (plan->instances[instance].cpuset >= 0) {
        set = &plan->cpusets[plan->instances[instance].cpuset];
    } else if (core >= 0) {
        CPU_ZERO(&one);
        CPU_SET((size_t)core, &one);
        set = &one;
    }
    if (set != NULL)
        (void)sched_setaffinity(pid, sizeof(*set), set);
}

/* posix_spawn with the state a zygote child gets: default signals, empty mask, only
 * descriptors 0-2. CPUs are set right after the spawn: glibc 2.36 has no spawn
 * attribute for affinity. */
static int fallback_spawn_one(struct pspawn_impl *impl, const struct psp_plan *plan, int instance, pid_t *pid,
                              int *stdio_fds)
{
    const pspawn_attr_t *attr = plan->attr;
    const struct psp_plan_set *set = &plan->sets[plan->instances[instance].set];
    char *const *argv = set->argv, *const *envp = set->envp;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t sa;
    int child_fds[3] = {-1, -1, -1};
    int err = posix_spawn_file_actions_init(&fa);
    if (err != 0)
        return err;
    if ((err = posix_spawnattr_init(&sa)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return err;
    }
    short flags = psp_spawnattr_default_signals(&sa);
    if (attr != NULL)
        err = add_options(&fa, &sa, &flags, attr, stdio_fds, child_fds);
    if (err == 0)
        err = posix_spawnattr_setflags(&sa, flags);
    if (err == 0)
        err = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (err == 0)
        err = posix_spawn(pid, impl->path, &fa, &sa, argv, envp);
    posix_spawnattr_destroy(&sa);
    posix_spawn_file_actions_destroy(&fa);
    for (int k = 0; k < 3; k++) {
        if (child_fds[k] >= 0)
            close(child_fds[k]);
        if (err != 0 && stdio_fds != NULL && stdio_fds[k] >= 0) {
            close(stdio_fds[k]);
            stdio_fds[k] = -1;
        }
    }
    if (err == 0)
        apply_cpus(plan, instance, impl->core, *pid);
    return err;
}

/* The posix_spawn backend: each part completes within submit. */
static int posix_submit(struct psp_backend *b, struct psp_plan *plan, const int *todo, int n, bool block,
                        struct psp_part *part, int *taken)
{
    (void)block;
    struct pspawn_impl *impl = ((struct psp_posix_backend *)b)->impl;
    for (int j = 0; j < n; j++) {
        int i = todo[j];
        int *fds = plan->stdio_fds != NULL ? plan->stdio_fds + 3 * i : NULL;
        if (fds != NULL)
            fds[0] = fds[1] = fds[2] = -1;
        plan->errors[i] = fallback_spawn_one(impl, plan, i, &plan->pids[i], fds);
        if (plan->errors[i] != 0)
            plan->pids[i] = -1;
    }
    part->count = n;
    *taken = n;
    return 0;
}

static int posix_pollfds(struct psp_backend *b, struct psp_part *part, struct pollfd *fds)
{
    (void)b, (void)part, (void)fds;
    return 0;
}

static bool posix_collect(struct psp_backend *b, struct psp_plan *plan, struct psp_part *part)
{
    (void)b, (void)plan, (void)part;
    return true;
}

static int posix_ping(struct psp_backend *b)
{
    (void)b;
    return 0;
}

static void posix_destroy(struct psp_backend *b)
{
    (void)b;
}

static bool posix_covers(struct psp_backend *b, const cpu_set_t *set)
{
    (void)b, (void)set;
    return true;
}

static bool posix_available(struct psp_backend *b)
{
    (void)b;
    return true;
}

const struct psp_backend_ops psp_posix_ops = {
    .submit = posix_submit,
    .pollfds = posix_pollfds,
    .collect = posix_collect,
    .ping = posix_ping,
    .destroy = posix_destroy,
    .covers = posix_covers,
    .available = posix_available,
};

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
    int err = psp_plan_build(&plan, instances, n, argv, envp, impl->path, attr);
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
        started = psp_dispatch(impl, &plan);
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
