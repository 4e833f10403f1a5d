/* The spawn entry points, over a proxy channel or, in fallback mode, posix_spawn. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>

#include "launcher/internal.h"

extern char **environ;

/* posix_spawn with the state a zygote child gets: default signals, empty mask, only
 * descriptors 0-2. The CPU is set after the fact: glibc 2.36 has no spawn attribute
 * for affinity. */
static int fallback_spawn_one(struct pspawn_impl *impl, char *const argv[], char *const envp[], pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t sa;
    int err = posix_spawn_file_actions_init(&fa);
    if (err != 0)
        return err;
    if ((err = posix_spawnattr_init(&sa)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return err;
    }
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&sa, &all);
    posix_spawnattr_setsigmask(&sa, &none);
    posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    err = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (err == 0)
        err = posix_spawn(pid, impl->path, &fa, &sa, argv, envp);
    posix_spawnattr_destroy(&sa);
    posix_spawn_file_actions_destroy(&fa);
    if (err == 0 && impl->core >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((size_t)impl->core, &set);
        (void)sched_setaffinity(*pid, sizeof(set), &set);
    }
    return err;
}

int psp_fallback_spawn(struct pspawn_impl *impl, char *const argv[], char *const envp[], int count,
                       pid_t *pids, int *errors)
{
    int started = 0;
    for (int i = 0; i < count; i++) {
        errors[i] = fallback_spawn_one(impl, argv, envp, &pids[i]);
        if (errors[i] != 0)
            pids[i] = -1;
        else
            started++;
    }
    return started;
}

static int spawn_many(pid_t *pids, int *errors, pspawn_context_t *ctx, int n, char *const argv[],
                      char *const envp[])
{
    if (ctx == NULL || ctx->impl == NULL || pids == NULL || argv == NULL || argv[0] == NULL || n < 0) {
        errno = EINVAL;
        return -1;
    }
    if (n == 0)
        return 0;
    int *errs = errors;
    if (errs == NULL && (errs = malloc((size_t)n * sizeof(int))) == NULL) {
        errno = ENOMEM;
        return -1;
    }
    if (envp == NULL)
        envp = environ;
    struct pspawn_impl *impl = ctx->impl;
    int started = impl->mode == PSPAWN_MODE_FALLBACK
                      ? psp_fallback_spawn(impl, argv, envp, n, pids, errs)
                      : psp_channel_spawn(&impl->channel, argv, envp, n, pids, errs);
    int first_error = 0;
    for (int i = 0; i < n && first_error == 0; i++)
        first_error = errs[i];
    if (errs != errors)
        free(errs);
    if (first_error != 0)
        errno = first_error;
    return started == 0 ? -1 : started;
}

int pspawn_ne(pid_t *pids, int *errors, pspawn_context_t *ctx, int nspawns, char *const argv[],
              char *const envp[])
{
    return spawn_many(pids, errors, ctx, nspawns, argv, envp);
}

int pspawn_n(pid_t *pids, pspawn_context_t *ctx, int nspawns, char *const argv[])
{
    return spawn_many(pids, NULL, ctx, nspawns, argv, NULL);
}

pid_t pspawn_e(pspawn_context_t *ctx, char *const argv[], char *const envp[])
{
    pid_t pid;
    return spawn_many(&pid, NULL, ctx, 1, argv, envp) == 1 ? pid : -1;
}

pid_t pspawn(pspawn_context_t *ctx, char *const argv[])
{
    return pspawn_e(ctx, argv, NULL);
}
