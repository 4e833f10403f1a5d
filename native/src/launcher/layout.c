/* Where a context's proxies go: the CPUs the caller may use, the plain layout (K groups
 * of them) and the per-node one (topology.c); the public placement queries. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/internal.h"
#include "launcher/topology.h"

int psp_usable_cpus(cpu_set_t *usable, cpu_set_t *affinity)
{
    CPU_ZERO(affinity);
    if (sched_getaffinity(0, sizeof(*affinity), affinity) != 0)
        return 0;
    *usable = *affinity;
    /* Online CPUs and the cgroup's cpuset, as the topology reads them (v2 and v1). */
    struct psp_topology *topo = malloc(sizeof(*topo));
    if (topo != NULL && psp_topology_read(psp_topology_root(), affinity, topo) == 0 && CPU_COUNT(&topo->usable) > 0)
        *usable = topo->usable;
    free(topo);
    return CPU_COUNT(usable);
}

/* K proxies over the usable CPUs: K <= n partitions them into K contiguous groups (group
 * k gets CPUs [k*n/K, (k+1)*n/K) of the list); K > n gives proxy k the CPU k % n. One
 * proxy stays unpinned (or pinned to attr->core, as before). */
void psp_plain_layout(const pspawn_context_attr_t *attr, const cpu_set_t *usable_in, const cpu_set_t *affinity,
                      struct psp_plain_layout *out)
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
struct psp_layout *psp_per_node_layout(struct pspawn_impl *impl, const pspawn_context_attr_t *attr,
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
