/* Library replicas per NUMA node (replica.c). */
#ifndef PSPAWN_LAUNCHER_REPLICA_H
#define PSPAWN_LAUNCHER_REPLICA_H

#include <limits.h>
#include <sys/types.h>

#include "launcher/internal.h"
#include "launcher/topology.h"

struct psp_replicas {
    char root[1024];          /* $TMPDIR/pspawn-replicas-<pid>-XXXXXX, one nodeN/ per node */
    int count;                /* nodes with a replica directory */
    int node[PSP_MAX_NODES];
    char **files;             /* the originals (the executable first) */
    int file_count;
    long long bytes;          /* written in all, over every node */
};

/* Copies what `probe` (a running proxy of the target `exe`) maps executable into one
 * directory per node, each written by a thread bound to that node. 0 or an errno
 * (ENOTUNIQ: two mapped files share a name); on failure nothing is left on disk. */
int psp_replicas_make(struct psp_replicas *r, pid_t probe, const char *exe, const int *nodes, int node_count);
/* The replica of `original` for `node` (*replica NULL: none) and its directory (*dir
 * NULL: the node has no replicas). Both allocated. 0 or ENOMEM. */
int psp_replica_paths(const struct psp_replicas *r, int node, const char *original, char **replica, char **dir);
/* Removes every file and directory made, and frees the list. */
void psp_replicas_remove(struct psp_replicas *r);

#endif
