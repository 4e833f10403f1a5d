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
    out->node = -1;
    out->mempolicy = -1;
    out->domain_index = -1;
    return 0;
}

/* A CPU list as sysfs and cgroupfs print it ("0-3,8,10-11") into `set`; false if it
 * does not parse. */
static bool parse_cpu_list(const char *text, cpu_set_t *set)
{
    CPU_ZERO(set);
    const char *p = text;
    while (*p != '\0' && *p != '\n') {
        char *end;
        long lo = strtol(p, &end, 10);
        if (end == p || lo < 0)
            return false;
        long hi = lo;
        p = end;
        if (*p == '-') {
            hi = strtol(p + 1, &end, 10);
            if (end == p + 1 || hi < lo)
                return false;
            p = end;
        }
        for (long c = lo; c <= hi && c < CPU_SETSIZE; c++)
            CPU_SET((size_t)c, set);
        if (*p == ',')
            p++;
        else if (*p != '\0' && *p != '\n')
            return false;
    }
    return true;
}

/* A small file's first line; false if it cannot be read. */
static bool read_line(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n;
    while ((n = read(fd, buf, size - 1)) < 0 && errno == EINTR) {
    }
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return true;
}

/* The CPUs the caller may use: its affinity mask, the online CPUs and, with cgroup v2,
 * its cpuset's effective CPUs (each read cheaply; one that cannot be read is skipped).
 * The caller's affinity mask alone is stored in *affinity. Returns how many. */
static int usable_cpus(cpu_set_t *usable, cpu_set_t *affinity)
{
    CPU_ZERO(affinity);
    if (sched_getaffinity(0, sizeof(*affinity), affinity) != 0)
        return 0;
    *usable = *affinity;
    char buf[4096];
    cpu_set_t other;
    if (read_line("/sys/devices/system/cpu/online", buf, sizeof(buf)) && parse_cpu_list(buf, &other))
        CPU_AND(usable, usable, &other);
    /* cgroup v2: "0::/path" in /proc/self/cgroup. */
    char *unified = NULL;
    if (read_line("/proc/self/cgroup", buf, sizeof(buf)))
        unified = strncmp(buf, "0::/", 4) == 0 ? buf : strstr(buf, "\n0::/");
    if (unified != NULL) {
        unified = strchr(unified + 1, '/');
        char *nl = strchr(unified, '\n');
        if (nl != NULL)
            *nl = '\0';
        char path[4200];
        char cpus[4096];
        if (snprintf(path, sizeof(path), "/sys/fs/cgroup%s/cpuset.cpus.effective", unified) < (int)sizeof(path) &&
            read_line(path, cpus, sizeof(cpus)) && parse_cpu_list(cpus, &other) && CPU_COUNT(&other) > 0) {
            cpu_set_t both;
            CPU_AND(&both, usable, &other);
            if (CPU_COUNT(&both) > 0)
                *usable = both;
        }
    }
    if (CPU_COUNT(usable) == 0)
        *usable = *affinity;
    return CPU_COUNT(usable);
}

/* How the context's proxies are laid out: their count and each one's CPUs. */
struct layout {
    int count;
    bool pinned;           /* each proxy pinned to group[k] (several proxies) */
    cpu_set_t affinity;    /* the caller's mask: what children without a CPU set get */
    cpu_set_t group[PSP_MAX_PROXIES];
};

/* K proxies over the usable CPUs: K <= n partitions them into K contiguous groups (group
 * k gets CPUs [k*n/K, (k+1)*n/K) of the list); K > n gives proxy k the CPU k % n. One
 * proxy stays unpinned (or pinned to attr->core, as before). */
static void plan_layout(const pspawn_context_attr_t *attr, const cpu_set_t *usable_in, const cpu_set_t *affinity,
                        struct layout *out)
{
    cpu_set_t usable = *usable_in;
    out->affinity = *affinity;
    int n = CPU_COUNT(&usable);
    int k = attr->proxies;
    if (attr->core >= 0)
        k = 1;
    else if (k == 0)
        k = n < 1 ? 1 : (n > PSP_DEFAULT_MAX_PROXIES ? PSP_DEFAULT_MAX_PROXIES : n);
    out->count = k;
    out->pinned = k > 1 && n > 0;
    if (!out->pinned)
        return;
    int list[CPU_SETSIZE];
    int m = 0;
    for (int c = 0; c < CPU_SETSIZE && m < n; c++)
        if (CPU_ISSET(c, &usable))
            list[m++] = c;
    for (int g = 0; g < k; g++) {
        CPU_ZERO(&out->group[g]);
        if (k <= m) {
            for (int j = g * m / k; j < (g + 1) * m / k; j++)
                CPU_SET((size_t)list[j], &out->group[g]);
        } else {
            CPU_SET((size_t)list[g % m], &out->group[g]);
        }
    }
}

/* The per-node layout, when the context gets one (see pspawn_context_attr_t.numa):
 * NULL for the plain layout (also when the topology cannot be read: placement is
 * advisory, the context works without it). Fills impl's domain table. */
static struct psp_layout *per_node_layout(struct pspawn_impl *impl, const pspawn_context_attr_t *attr,
                                          const cpu_set_t *affinity)
{
    impl->domain_count = 0;
    if (attr->numa == PSPAWN_NUMA_OFF || attr->core >= 0 || attr->proxies == 1)
        return NULL;
    struct psp_topology *topo = malloc(sizeof(*topo));
    struct psp_layout *out = malloc(sizeof(*out));
    if (topo == NULL || out == NULL || psp_topology_read(psp_topology_root(), affinity, topo) != 0 ||
        topo->usable_nodes < (attr->numa == PSPAWN_NUMA_ON ? 1 : 2) ||
        psp_layout_per_node(topo, attr->proxies, PSP_DEFAULT_MAX_PROXIES, out) == 0) {
        free(topo);
        free(out);
        return NULL;
    }
    for (int j = 0; j < topo->count; j++) {
        if (topo->nodes[j].cpu_count == 0)
            continue;
        impl->domain_node[impl->domain_count] = topo->nodes[j].id;
        impl->domain_cpus[impl->domain_count] = topo->nodes[j].cpu_count;
        impl->domain_count++;
    }
    impl->spread = attr->numa_spread;
    free(topo);
    return out;
}

static int start(struct pspawn_impl *impl, const pspawn_context_attr_t *attr)
{
    cpu_set_t usable, affinity;
    usable_cpus(&usable, &affinity);
    psp_exec_backend_init(&impl->exec, impl->path, attr->core, &usable, &affinity);
    int err = psp_check_executable(impl->path);
    if (attr->flags & PSPAWN_CTX_EXEC) {
        /* Exec semantics: whatever execve runs (static, set-uid, own entry point,
         * scripts); what it refuses is each instance's errno. */
        if (err != 0 && err != ENOTSUP && err != EPERM && err != ENOSYS && err != ENOEXEC)
            return err;
        impl->mode = PSPAWN_MODE_EXEC;
        return 0;
    }
    if (err == 0) {
        static struct layout zero_layout;
        struct layout *layout = malloc(sizeof(*layout));
        if (layout == NULL)
            return ENOMEM;
        *layout = zero_layout;
        struct psp_layout *numa = per_node_layout(impl, attr, &affinity);
        if (numa != NULL) {
            layout->count = numa->count;
            layout->pinned = true;
        } else {
            plan_layout(attr, &usable, &affinity, layout);
        }
        int k = layout->count;
        bool relay = false;
        if ((impl->channels = calloc((size_t)k, sizeof(*impl->channels))) == NULL) {
            free(layout);
            free(numa);
            return ENOMEM;
        }
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
        if (err == 0) {
            impl->channel_count = k;
            impl->mode = relay ? PSPAWN_MODE_RELAY : PSPAWN_MODE_ZYGOTE;
            return 0;
        }
        impl->domain_count = 0;
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
        (attr->core >= 0 && attr->proxies > 1) ||
        (attr->flags & ~(PSPAWN_CTX_FALLBACK | PSPAWN_CTX_RELAY | PSPAWN_CTX_NO_BIND_NOW | PSPAWN_CTX_PREFAULT |
                         PSPAWN_CTX_EXEC)) != 0 ||
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

int pspawn_context_proxy_nodes(const pspawn_context_t *ctx, int *nodes, int capacity)
{
    if (ctx == NULL || ctx->impl == NULL || capacity < 0 || (nodes == NULL && capacity > 0)) {
        errno = EINVAL;
        return -1;
    }
    for (int k = 0; k < ctx->impl->channel_count && k < capacity; k++)
        nodes[k] = ctx->impl->channels[k].config.node;
    return ctx->impl->channel_count;
}

int pspawn_numa_topology(pspawn_numa_node_t *nodes, int capacity)
{
    if (capacity < 0 || (nodes == NULL && capacity > 0)) {
        errno = EINVAL;
        return -1;
    }
    cpu_set_t affinity;
    if (sched_getaffinity(0, sizeof(affinity), &affinity) != 0)
        return -1;
    struct psp_topology *topo = malloc(sizeof(*topo));
    if (topo == NULL) {
        errno = ENOMEM;
        return -1;
    }
    int err = psp_topology_read(psp_topology_root(), &affinity, topo);
    if (err != 0) {
        free(topo);
        errno = err;
        return -1;
    }
    _Static_assert(sizeof(((pspawn_numa_node_t *)0)->cpus) == sizeof(cpu_set_t), "a cpu_set_t's bytes");
    _Static_assert(PSPAWN_MAX_NODES == PSP_MAX_NODES, "one node limit");
    for (int j = 0; j < topo->count && j < capacity; j++) {
        const struct psp_node *n = &topo->nodes[j];
        memset(&nodes[j], 0, sizeof(nodes[j]));
        nodes[j].id = n->id;
        nodes[j].cpu_count = n->cpu_count;
        memcpy(nodes[j].cpus, &n->cpus, sizeof(nodes[j].cpus));
        nodes[j].memory_allowed = n->memory_allowed;
        memcpy(nodes[j].distance, n->distance, sizeof(nodes[j].distance));
    }
    int count = topo->count;
    free(topo);
    return count;
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
