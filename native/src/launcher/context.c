/* Context lifetime: create (checks, cgroup, start) and destroy, and what a context reports. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/internal.h"
#include "launcher/replica.h"
#include "launcher/topology.h"

int pspawn_context_create_ex(pspawn_context_t *ctx, const char *path, const pspawn_context_attr_t *attr)
{
    pspawn_context_attr_t defaults, full;
    if (attr == NULL) {
        pspawn_context_attr_init(&defaults);
        attr = &defaults;
    } else if (attr->size >= offsetof(pspawn_context_attr_t, numa) && attr->size < sizeof(*attr)) {
        /* A caller built against an older header: the fields it knows, defaults after. */
        pspawn_context_attr_init(&full);
        memcpy(&full, attr, attr->size);
        full.size = sizeof(full);
        attr = &full;
    }
    if (ctx == NULL || path == NULL || path[0] == '\0' || !psp_context_attr_valid(attr)) {
        if (ctx != NULL)
            ctx->impl = NULL;
        errno = path != NULL && path[0] == '\0' ? ENOENT : EINVAL;
        return -1;
    }
    ctx->impl = NULL;
    if (strnlen(path, PATH_MAX) >= PATH_MAX) { /* realpath would say ENOENT for a long missing path */
        errno = ENAMETOOLONG;
        return -1;
    }
    struct pspawn_impl *impl = calloc(1, sizeof(*impl));
    if (impl == NULL || (impl->path = realpath(path, NULL)) == NULL) {
        int err = impl == NULL ? ENOMEM : (errno == ENOTDIR ? ENOENT : errno);
        free(impl);
        errno = err;
        return -1;
    }
    impl->core = attr->core;
    impl->cgroup_fd = -1;
    impl->self_cgroup_fd = -1;
    /* Where the proxies (and so, by default, their children) will be. */
    if (psp_cgroup2_mount() != NULL && !(attr->flags & PSPAWN_CTX_EXEC)) {
        impl->self_cgroup_fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
        impl->proxy_cgroup_known =
            psp_cgroup_current(impl->self_cgroup_fd, impl->proxy_cgroup, sizeof(impl->proxy_cgroup));
    }
    if (attr->cgroup != NULL) {
        int err = psp_cgroup_open(attr->cgroup, &impl->cgroup_fd);
        if (err != 0) {
            if (impl->self_cgroup_fd >= 0)
                close(impl->self_cgroup_fd);
            free(impl->path);
            free(impl);
            errno = err;
            return -1;
        }
    }
    if (attr->flags & PSPAWN_CTX_FDS_ABOVE_LIMIT)
        psp_lift_fds((int *const[]){&impl->self_cgroup_fd, &impl->cgroup_fd}, 2);
    pthread_mutex_init(&impl->sessions_lock, NULL);
    pthread_cond_init(&impl->sessions_done, NULL);
    int err = psp_context_start(impl, attr);
    /* AUTO: the kernel takes what it can express where it replaces the exec backend
     * (exec and fallback modes). A zygote context keeps its proxies: forking the frozen
     * target skips the exec and loading that every kernel child still pays (10x the
     * kernel path's spawn rate in the guest, docs/benchmarks.md). */
    if (err == 0 && attr->kernel == PSPAWN_KERNEL_AUTO &&
        (impl->mode == PSPAWN_MODE_EXEC || impl->mode == PSPAWN_MODE_FALLBACK) && impl->cgroup_fd < 0)
        impl->kernel_active = psp_kernel_backend_init(&impl->kernel, impl->path, attr->core);
    if (err != 0) {
        pthread_cond_destroy(&impl->sessions_done);
        pthread_mutex_destroy(&impl->sessions_lock);
        if (impl->cgroup_fd >= 0)
            close(impl->cgroup_fd);
        if (impl->self_cgroup_fd >= 0)
            close(impl->self_cgroup_fd);
        free(impl->path);
        free(impl);
        errno = err;
        return -1;
    }
    ctx->impl = impl;
    return 0;
}

int pspawn_context_create(pspawn_context_t *ctx, const char *path, int core)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.core = core;
    return pspawn_context_create_ex(ctx, path, &attr);
}

void pspawn_context_destroy(pspawn_context_t *ctx)
{
    if (ctx == NULL || ctx->impl == NULL)
        return;
    struct pspawn_impl *impl = ctx->impl;
    /* Sessions still launching finish first (they use the backends). */
    pthread_mutex_lock(&impl->sessions_lock);
    while (impl->sessions_active > 0)
        pthread_cond_wait(&impl->sessions_done, &impl->sessions_lock);
    pthread_mutex_unlock(&impl->sessions_lock);
    for (int k = 0; k < impl->channel_count; k++)
        impl->channels[k].base.ops->destroy(&impl->channels[k].base);
    free(impl->channels);
    free(impl->pools);
    psp_remove_replicas(impl); /* the proxies are gone: nothing maps them any more */
    pthread_cond_destroy(&impl->sessions_done);
    pthread_mutex_destroy(&impl->sessions_lock);
    if (impl->cgroup_fd >= 0)
        close(impl->cgroup_fd);
    if (impl->self_cgroup_fd >= 0)
        close(impl->self_cgroup_fd);
    free(impl->path);
    free(impl);
    ctx->impl = NULL;
}

void pspawn_context_abandon(pspawn_context_t *ctx)
{
    if (ctx == NULL || ctx->impl == NULL)
        return;
    struct pspawn_impl *impl = ctx->impl;
    for (int k = 0; k < impl->channel_count; k++)
        psp_channel_forget_fds(&impl->channels[k]);
    impl->cgroup_fd = impl->self_cgroup_fd = -1;
    pspawn_context_destroy(ctx);
}

void psp_context_end_before_exec(const pspawn_context_t *ctx)
{
    struct pspawn_impl *impl = ctx != NULL ? ctx->impl : NULL;
    for (int k = 0; impl != NULL && k < impl->channel_count; k++)
        if (impl->channels[k].base.ops == &psp_channel_ops)
            psp_channel_end_before_exec(&impl->channels[k]);
}

/* Lock-free, like pspawn_context_owns: the fields are read as they are; a restart that
 * replaces them races with the caller's close anyway. */
int pspawn_context_fds(const pspawn_context_t *ctx, int *fds, int capacity)
{
    if (ctx == NULL || ctx->impl == NULL || capacity < 0 || (fds == NULL && capacity > 0)) {
        errno = EINVAL;
        return -1;
    }
    const struct pspawn_impl *impl = ctx->impl;
    int n = 0;
#define PSP_ADD_FD(expr)                                                                                           \
    do {                                                                                                             \
        int fd_ = __atomic_load_n(&(expr), __ATOMIC_RELAXED);                                                        \
        if (fd_ >= 0 && n++ < capacity)                                                                              \
            fds[n - 1] = fd_;                                                                                        \
    } while (0)
    PSP_ADD_FD(impl->cgroup_fd);
    PSP_ADD_FD(impl->self_cgroup_fd);
    for (int k = 0; k < impl->channel_count; k++) {
        const struct psp_channel *ch = &impl->channels[k];
        PSP_ADD_FD(ch->proxy_pidfd);
        PSP_ADD_FD(ch->reply_fd);
        PSP_ADD_FD(ch->doorbell_fd);
        PSP_ADD_FD(ch->socket_fd);
        for (unsigned i = 0; i < PSP_RING_SLOTS; i++)
            PSP_ADD_FD(ch->slot_fds[i]);
        int pool_count = __atomic_load_n(&ch->pool_fd_count, __ATOMIC_RELAXED);
        for (int i = 0; i < pool_count && i < (int)PSP_POOL_MAX; i++)
            PSP_ADD_FD(ch->pool_fds[i]);
    }
#undef PSP_ADD_FD
    return n;
}

long long pspawn_context_replica_bytes(const pspawn_context_t *ctx)
{
    if (ctx == NULL || ctx->impl == NULL) {
        errno = EINVAL;
        return -1;
    }
    return ctx->impl->replicas != NULL ? ctx->impl->replicas->bytes : 0;
}

int pspawn_context_mode(const pspawn_context_t *ctx)
{
    if (ctx == NULL || ctx->impl == NULL) {
        errno = EINVAL;
        return -1;
    }
    return (int)ctx->impl->mode;
}

int pspawn_context_fallback_reason(const pspawn_context_t *ctx)
{
    return ctx != NULL && ctx->impl != NULL ? ctx->impl->fallback_reason : 0;
}

/* A proxy's pid, or -1 while it is dead (restarted on the next spawn) or out of
 * rotation. */
static pid_t channel_pid(struct psp_channel *ch)
{
    if (atomic_load(&ch->out_of_rotation))
        return -1;
    pthread_mutex_lock(&ch->lock);
    pid_t pid = ch->broken ? -1 : ch->proxy_pid;
    pthread_mutex_unlock(&ch->lock);
    return pid;
}

pid_t pspawn_context_proxy_pid(const pspawn_context_t *ctx)
{
    if (ctx == NULL || ctx->impl == NULL)
        return -1;
    for (int k = 0; k < ctx->impl->channel_count; k++) {
        pid_t pid = channel_pid(&ctx->impl->channels[k]);
        if (pid > 0)
            return pid;
    }
    return -1;
}

/* Reads shared state without the channel locks (a signal handler may be interrupting a
 * holder): a proxy's pid is kept after its death until the restart reaped it, and a
 * segment replaced by a restart stays mapped until the context is destroyed. */
int pspawn_context_owns(const pspawn_context_t *ctx, pid_t pid)
{
    if (ctx == NULL || ctx->impl == NULL || pid <= 0)
        return 0;
    for (int k = 0; k < ctx->impl->channel_count; k++) {
        struct psp_channel *ch = &ctx->impl->channels[k];
        if (__atomic_load_n(&ch->proxy_pid, __ATOMIC_RELAXED) == pid)
            return 1;
        struct psp_shared *sh = __atomic_load_n(&ch->shared, __ATOMIC_ACQUIRE);
        uint32_t n = sh != NULL ? sh->pool_capacity : 0;
        struct psp_pool_slot *table = n > 0 && n <= PSP_POOL_MAX ? psp_pool_table(sh) : NULL;
        for (uint32_t i = 0; table != NULL && i < n; i++) {
            int32_t state = atomic_load_explicit(&table[i].state, memory_order_acquire);
            if (psp_pool_unclaimed(state) && atomic_load_explicit(&table[i].pid, memory_order_relaxed) == pid)
                return 1;
        }
    }
    return 0;
}

int pspawn_context_proxy_pids(const pspawn_context_t *ctx, pid_t *pids, int capacity)
{
    if (ctx == NULL || ctx->impl == NULL || capacity < 0 || (pids == NULL && capacity > 0)) {
        errno = EINVAL;
        return -1;
    }
    for (int k = 0; k < ctx->impl->channel_count && k < capacity; k++)
        pids[k] = channel_pid(&ctx->impl->channels[k]);
    return ctx->impl->channel_count;
}

int pspawn_context_proxy_count(const pspawn_context_t *ctx)
{
    return ctx != NULL && ctx->impl != NULL ? ctx->impl->channel_count : 0;
}

int pspawn_context_restarts(const pspawn_context_t *ctx)
{
    if (ctx == NULL || ctx->impl == NULL)
        return 0;
    int total = 0;
    for (int k = 0; k < ctx->impl->channel_count; k++)
        total += atomic_load(&ctx->impl->channels[k].restarts);
    return total;
}

int pspawn_context_ping(pspawn_context_t *ctx)
{
    if (ctx == NULL || ctx->impl == NULL) {
        errno = EINVAL;
        return -1;
    }
    /* Every proxy in rotation answers; those out of rotation are skipped, unless none
     * is left (EPIPE). */
    int err = 0, live = 0;
    for (int k = 0; k < ctx->impl->channel_count && err == 0; k++) {
        struct psp_channel *ch = &ctx->impl->channels[k];
        if (atomic_load(&ch->out_of_rotation))
            continue;
        err = ch->base.ops->ping(&ch->base);
        if (err == EPIPE && atomic_load(&ch->out_of_rotation))
            err = 0; /* it just went out of rotation */
        else
            live++;
    }
    if (err == 0 && live == 0 && ctx->impl->channel_count > 0)
        err = EPIPE;
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

const char *pspawn_version(void)
{
    return PSPAWN_VERSION;
}
