/* Context lifetime: checks, mode selection, proxy start, fallback. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/internal.h"
#include "launcher/replica.h"
#include "launcher/topology.h"

int pspawn_context_attr_init(pspawn_context_attr_t *attr)
{
    if (attr == NULL) {
        errno = EINVAL;
        return -1;
    }
    memset(attr, 0, sizeof(*attr));
    attr->size = sizeof(*attr);
    attr->core = -1;
    attr->startup_timeout_ms = PSP_DEFAULT_STARTUP_TIMEOUT_MS;
    attr->request_timeout_ms = PSP_DEFAULT_REQUEST_TIMEOUT_MS;
    attr->buffer_size = PSP_DEFAULT_BUFFER_SIZE;
    attr->max_restarts = PSP_DEFAULT_MAX_RESTARTS;
    return 0;
}

/* Children of a CLONE_PARENT fork are ours; when this process reaps every child
 * (pid 1, as a .NET runtime does, or SIGCHLD ignored: the kernel auto-reaps) their exit
 * status would be lost, so the proxy must stay the parent and relay it. */
static bool must_relay(void)
{
    if (getpid() == 1)
        return true;
    struct sigaction sa;
    if (sigaction(SIGCHLD, NULL, &sa) != 0)
        return false;
    return sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_NOCLDWAIT);
}

static bool core_allowed(int core)
{
    if (core == -1)
        return true;
    if (core < 0 || core >= CPU_SETSIZE)
        return false;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return false;
    return CPU_ISSET((size_t)core, &set);
}

/* Failures after which posix_spawn can still serve the target. */
static bool can_fall_back(int err)
{
    return err == ENOTSUP || err == EPERM || err == EDEADLK || err == ENOSYS || err == ETIMEDOUT || err == EPIPE;
}

static char **copy_envp(char *const *envp, int *err)
{
    if (envp == NULL)
        return NULL;
    size_t n = 0;
    while (envp[n] != NULL)
        n++;
    char **copy = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; copy != NULL && i < n; i++) {
        if ((copy[i] = strdup(envp[i])) == NULL) {
            while (i > 0)
                free(copy[--i]);
            free(copy);
            copy = NULL;
        }
    }
    if (copy == NULL)
        *err = ENOMEM;
    return copy;
}

/* What the channel keeps to start its proxy again after a death. */
static int make_proxy_config(const struct pspawn_impl *impl, const pspawn_context_attr_t *attr,
                             struct psp_proxy_config *out)
{
    memset(out, 0, sizeof(*out));
    int err = psp_find_proxy_library(attr, &out->proxy_library);
    if (err != 0)
        return err;
    out->path = strdup(impl->path);
    out->proxy_envp = copy_envp(attr->proxy_envp, &err);
    if (out->path == NULL)
        err = ENOMEM;
    if (err != 0) {
        psp_proxy_config_free(out);
        return err;
    }
    out->flags = attr->flags;
    out->core = attr->core;
    out->startup_timeout_ms = attr->startup_timeout_ms;
    out->request_timeout_ms = attr->request_timeout_ms;
    out->buffer_size = attr->buffer_size;
    out->max_restarts = attr->max_restarts;
    out->relay = (attr->flags & PSPAWN_CTX_RELAY) || must_relay();
    out->pool = out->relay ? 0 : attr->pool;
    out->pool_idle_ms = attr->pool_idle_ms;
    out->node = -1;
    out->mempolicy = -1;
    out->domain_index = -1;
    return 0;
}

/* Exec semantics: whatever execve runs (static, set-uid, own entry point, scripts);
 * what it refuses is each instance's errno. */
static int check_for_exec(int err)
{
    return err == ENOTSUP || err == EPERM || err == ENOSYS || err == ENOEXEC ? 0 : err;
}

/* PSPAWN_KERNEL_REQUIRE: the system calls serve everything; no proxy. */
static int start_kernel_only(struct pspawn_impl *impl, const pspawn_context_attr_t *attr)
{
    if (!psp_kernel_backend_init(&impl->kernel, impl->path, attr->core))
        return ENOSYS;
    if (attr->cgroup != NULL)
        return ENOTSUP;
    int err = check_for_exec(psp_check_executable(impl->path));
    if (err != 0)
        return err;
    impl->mode = PSPAWN_MODE_KERNEL;
    impl->kernel_active = true;
    return 0;
}

/* PSPAWN_CTX_NUMA_REPLICAS: a probe proxy (the plain kind) shows what the target maps;
 * those files are copied once per node of the layout. */
static int make_replicas(struct pspawn_impl *impl, const pspawn_context_attr_t *attr, const struct psp_layout *numa)
{
    int nodes[PSP_MAX_NODES], count = 0;
    for (int i = 0; i < numa->count; i++) {
        bool seen = false;
        for (int k = 0; k < count; k++)
            seen |= nodes[k] == numa->proxy[i].node;
        if (!seen && numa->proxy[i].node >= 0)
            nodes[count++] = numa->proxy[i].node;
    }
    struct psp_proxy_config config;
    int err = make_proxy_config(impl, attr, &config);
    struct psp_channel *probe = err == 0 ? malloc(sizeof(*probe)) : NULL;
    if (err == 0 && probe == NULL) {
        psp_proxy_config_free(&config);
        err = ENOMEM;
    }
    if (err == 0 && (err = psp_channel_start(probe, &config)) == 0) {
        if ((impl->replicas = malloc(sizeof(*impl->replicas))) == NULL)
            err = ENOMEM;
        else if ((err = psp_replicas_make(impl->replicas, probe->proxy_pid, impl->path, nodes, count)) != 0) {
            free(impl->replicas);
            impl->replicas = NULL;
        }
        psp_channel_stop(probe);
    }
    free(probe);
    return err;
}

/* A node-bound proxy's config pointed at its node's replicas (when there are). */
static int use_replicas(const struct pspawn_impl *impl, struct psp_proxy_config *config)
{
    if (impl->replicas == NULL || config->node < 0)
        return 0;
    char *exe, *dir, *library, *library_dir;
    int err = psp_replica_paths(impl->replicas, config->node, config->path, &exe, &dir);
    if (err != 0 || dir == NULL || exe == NULL) {
        free(dir);
        return err;
    }
    if ((err = psp_replica_paths(impl->replicas, config->node, config->proxy_library, &library, &library_dir)) != 0) {
        free(exe);
        free(dir);
        return err;
    }
    free(library_dir);
    free(config->path);
    config->path = exe;
    if (library != NULL) {
        free(config->proxy_library);
        config->proxy_library = library;
    }
    config->library_path = dir;
    return 0;
}

static void remove_replicas(struct pspawn_impl *impl)
{
    if (impl->replicas != NULL) {
        psp_replicas_remove(impl->replicas);
        free(impl->replicas);
        impl->replicas = NULL;
    }
}

static int start(struct pspawn_impl *impl, const pspawn_context_attr_t *attr)
{
    cpu_set_t usable, affinity;
    psp_usable_cpus(&usable, &affinity);
    psp_exec_backend_init(&impl->exec, impl->path, attr->core, &usable, &affinity);
    if (attr->kernel == PSPAWN_KERNEL_REQUIRE)
        return start_kernel_only(impl, attr);
    int err = psp_check_executable(impl->path);
    if (attr->flags & PSPAWN_CTX_EXEC) {
        if ((err = check_for_exec(err)) != 0)
            return err;
        impl->mode = PSPAWN_MODE_EXEC;
        return 0;
    }
    if (err == 0) {
        static struct psp_plain_layout zero_layout;
        struct psp_plain_layout *layout = malloc(sizeof(*layout));
        if (layout == NULL)
            return ENOMEM;
        *layout = zero_layout;
        struct psp_layout *numa = psp_per_node_layout(impl, attr, &affinity);
        if (numa != NULL) {
            layout->count = numa->count;
            layout->pinned = true;
        } else {
            psp_plain_layout(attr, &usable, &affinity, layout);
        }
        int k = layout->count;
        bool relay = false;
        if ((impl->channels = calloc((size_t)k, sizeof(*impl->channels))) == NULL) {
            free(layout);
            free(numa);
            return ENOMEM;
        }
        if (numa != NULL && (attr->flags & PSPAWN_CTX_NUMA_REPLICAS))
            err = make_replicas(impl, attr, numa);
        /* Spawn every proxy, then await every handshake: they start in parallel. */
        int begun = 0;
        for (; begun < k && err == 0; begun++) {
            struct psp_proxy_config config;
            if ((err = make_proxy_config(impl, attr, &config)) != 0)
                break;
            relay = config.relay;
            if (numa != NULL) {
                const struct psp_layout_proxy *lp = &numa->proxy[begun];
                config.cpus_set = true;
                config.cpus = lp->cpus;
                config.domain = lp->domain;
                config.reset_children = true;
                config.child_cpus = lp->domain; /* without a CPU set: on its node */
                config.node = lp->node;
                for (int d = 0; d < impl->domain_count; d++)
                    if (impl->domain_node[d] == lp->node)
                        config.domain_index = d;
                if (lp->bind_memory && attr->numa_memory != PSPAWN_NUMA_MEM_NONE)
                    config.mempolicy = attr->numa_memory == PSPAWN_NUMA_MEM_PREFERRED ? 1 /* MPOL_PREFERRED */
                                                                                    : 2 /* MPOL_BIND */;
                if ((err = use_replicas(impl, &config)) != 0) {
                    psp_proxy_config_free(&config);
                    break;
                }
            } else if (layout->pinned) {
                config.cpus_set = true;
                config.cpus = layout->group[begun];
                config.reset_children = true;
                config.child_cpus = layout->affinity;
            }
            if ((err = psp_channel_start_begin(&impl->channels[begun], &config)) != 0)
                break;
        }
        bool ok[PSP_MAX_PROXIES] = {false};
        for (int c = 0; c < begun; c++) {
            int e = psp_channel_start_end(&impl->channels[c]);
            ok[c] = e == 0;
            if (err == 0)
                err = e;
        }
        free(layout);
        free(numa);
        if (err == 0 && attr->pool > 0 && !relay)
            err = psp_pool_attach(impl, k);
        if (err == 0) {
            impl->channel_count = k;
            impl->mode = relay ? PSPAWN_MODE_RELAY : PSPAWN_MODE_ZYGOTE;
            return 0;
        }
        impl->domain_count = 0;
        remove_replicas(impl);
        /* One failed: none is left behind. */
        for (int c = 0; c < begun; c++)
            if (ok[c])
                psp_channel_stop(&impl->channels[c]);
        free(impl->channels);
        impl->channels = NULL;
    }
    if ((attr->flags & PSPAWN_CTX_FALLBACK) && can_fall_back(err)) {
        impl->mode = PSPAWN_MODE_FALLBACK;
        impl->fallback_reason = err;
        return 0;
    }
    return err;
}

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
    if (ctx == NULL || path == NULL || path[0] == '\0' || attr->size < sizeof(*attr) ||
        attr->numa < PSPAWN_NUMA_AUTO || attr->numa > PSPAWN_NUMA_ON || attr->numa_memory < PSPAWN_NUMA_MEM_BIND ||
        attr->numa_memory > PSPAWN_NUMA_MEM_NONE || attr->numa_spread < PSPAWN_SPREAD_ROUND_ROBIN ||
        attr->numa_spread > PSPAWN_SPREAD_FILL ||
        !core_allowed(attr->core) || (attr->buffer_size != 0 && attr->buffer_size < PSP_MIN_BUFFER_SIZE) ||
        attr->max_restarts < -1 || attr->proxies < 0 || attr->proxies > PSP_MAX_PROXIES ||
        attr->pool < 0 || attr->pool > (int)PSP_POOL_MAX || attr->pool_idle_ms < 0 ||
        (attr->core >= 0 && attr->proxies > 1) ||
        attr->kernel < PSPAWN_KERNEL_AUTO || attr->kernel > PSPAWN_KERNEL_FORBID ||
        (attr->kernel == PSPAWN_KERNEL_REQUIRE && (attr->flags & PSPAWN_CTX_RELAY)) ||
        (attr->flags & ~(PSPAWN_CTX_FALLBACK | PSPAWN_CTX_RELAY | PSPAWN_CTX_NO_BIND_NOW | PSPAWN_CTX_PREFAULT |
                         PSPAWN_CTX_EXEC | PSPAWN_CTX_DEFERRED | PSPAWN_CTX_NUMA_REPLICAS)) != 0 ||
        ((attr->flags & PSPAWN_CTX_EXEC) && (attr->flags & PSPAWN_CTX_RELAY))) {
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
    pthread_mutex_init(&impl->sessions_lock, NULL);
    pthread_cond_init(&impl->sessions_done, NULL);
    int err = start(impl, attr);
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
    remove_replicas(impl); /* the proxies are gone: nothing maps them any more */
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
