/* Context start: mode selection, the proxies (and their NUMA replicas), kernel-only start, fallback. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "launcher/internal.h"
#include "launcher/replica.h"
#include "launcher/topology.h"

/* Failures after which posix_spawn can still serve the target. */
static bool can_fall_back(int err)
{
    return err == ENOTSUP || err == EPERM || err == EDEADLK || err == ENOSYS || err == ETIMEDOUT || err == EPIPE;
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
    int err = psp_make_proxy_config(impl, attr, &config);
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

void psp_remove_replicas(struct pspawn_impl *impl)
{
    if (impl->replicas != NULL) {
        psp_replicas_remove(impl->replicas);
        free(impl->replicas);
        impl->replicas = NULL;
    }
}

int psp_context_start(struct pspawn_impl *impl, const pspawn_context_attr_t *attr)
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
            if ((err = psp_make_proxy_config(impl, attr, &config)) != 0)
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
        psp_remove_replicas(impl);
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
