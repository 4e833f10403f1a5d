/* The machine's NUMA topology as the launcher may use it, and the per-node layout of a
 * context's proxies. Pure functions over a described machine (sysfs under a root), so
 * the tests can describe any machine: they build a fake tree and call these directly
 * (the library itself reads the real one, or the tree PSPAWN_SYSFS_ROOT names). */
#ifndef PSPAWN_LAUNCHER_TOPOLOGY_H
#define PSPAWN_LAUNCHER_TOPOLOGY_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>

/* Nodes we describe (node ids may be sparse; ids at or above this are refused). */
#define PSP_MAX_NODES 64
#define PSP_TOPOLOGY_ERROR_SIZE 256

struct psp_node {
    int id;                          /* N of nodeN */
    cpu_set_t all_cpus;              /* its cpulist */
    cpu_set_t cpus;                  /* of those, what the launcher may use */
    int cpu_count;                   /* CPU_COUNT(&cpus) */
    bool memory_allowed;             /* in the cpuset's effective mems (or no cpuset) */
    unsigned char distance[PSP_MAX_NODES]; /* to nodes[j] (index, not id) */
};

struct psp_topology {
    int count;                       /* nodes, in id order */
    struct psp_node nodes[PSP_MAX_NODES];
    cpu_set_t online;
    cpu_set_t usable;                /* affinity ∩ online ∩ cpuset's effective CPUs */
    int usable_nodes;                /* nodes with cpu_count > 0 */
    bool synthetic;                  /* no node directory: one node 0 made up */
    char error[PSP_TOPOLOGY_ERROR_SIZE]; /* why the last read failed */
};

/* Reads the topology under `root` ("" = the real /sys and /proc; else a directory that
 * holds sys/devices/system/{node,cpu}, proc/self/cgroup and sys/fs/cgroup/...), limited
 * by `affinity` (NULL: every CPU). Returns 0, or an errno with topo->error set:
 * ENOENT a required file is missing (cpu/online, a node's cpulist or distance),
 * EINVAL a file does not parse (CPU list, distances, node id out of range, counts that
 * do not match). Never crashes on any content. */
int psp_topology_read(const char *root, const cpu_set_t *affinity, struct psp_topology *topo);

/* The root the library uses: $PSPAWN_SYSFS_ROOT (tests only) or "". */
const char *psp_topology_root(void);

/* Parses a CPU list ("0-3,8,10-11\n"); false if it does not parse. */
bool psp_parse_cpu_list(const char *text, cpu_set_t *set);

/* Where a context's proxies go. */
#define PSP_LAYOUT_MAX 64
struct psp_layout_proxy {
    cpu_set_t cpus;     /* where the proxy runs */
    cpu_set_t domain;   /* what it serves: its node's usable CPUs (per-node layout), else cpus */
    int node;           /* node id, or -1 (not node-bound) */
    int node_index;     /* index into the topology's nodes, or -1 */
    bool bind_memory;   /* bind its memory policy to `node` */
};

struct psp_layout {
    int count;
    bool pinned;        /* each proxy on cpus[k] */
    bool per_node;      /* the per-node layout */
    struct psp_layout_proxy proxy[PSP_LAYOUT_MAX];
};

/* The per-node layout: K proxies over the topology's usable nodes, at least one per
 * node (K is raised to the node count), the rest in proportion to the nodes' usable
 * CPUs; within a node its CPUs are split into contiguous groups (or shared round-robin
 * when the node has fewer CPUs than proxies). requested 0 = default: one per usable CPU,
 * at most default_max (but never fewer than the node count). bind_memory is set for
 * nodes whose memory the cpuset allows. Returns the proxy count. */
int psp_layout_per_node(const struct psp_topology *topo, int requested, int default_max, struct psp_layout *out);

/* Spreading instances without a CPU set over `n` nodes with `cpus[j]` usable CPUs
 * each: the node index for the k-th such instance of a call (k from 0).
 * Round-robin: k % n. Fill: node j takes cpus[j] consecutive instances, then the next
 * node; after the last node, again from the first. */
int psp_spread_node(int policy, const int *cpus, int n, unsigned k);

#endif
