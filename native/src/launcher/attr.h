/* The launcher's spawn attributes (pspawn_attr_t): their fields, the interceptor's exact
 * child state (attr_exact.c) and their wire form (attr.c). */
#ifndef PSPAWN_LAUNCHER_ATTR_H
#define PSPAWN_LAUNCHER_ATTR_H

#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/protocol.h"
#include "pspawn.h"

struct psp_attr_stdio {
    int kind; /* enum psp_stdio_kind */
    char *path;
    int oflags;
    mode_t mode;
    int caller_fd;
};

struct pspawn_attr {
    uint32_t set; /* PSP_OPT_* (CWD is implied by cwd != NULL; NUMA_LOCAL is a flag) */
    struct psp_attr_stdio stdio[3];
    char *cwd;
    mode_t umask;
    pid_t pgroup;
    int pdeathsig;
    uint32_t rlimit_count;
    struct psp_wire_rlimit rlimits[PSP_MAX_RLIMITS];
    cpu_set_t *cpusets;
    int cpuset_count;
    bool owns_fds;  /* a session's copy: its caller_fds are duplicates, closed on destroy */
    bool has_cgroup;
    int cgroup_fd;  /* cgroup v2 directory the children are created in (owned) */
    int fdmap_count;     /* PSP_OPT_FDMAP: the child's descriptors exactly (attr_exact.c) */
    int *fdmap_targets;
    int *fdmap_sources;  /* caller descriptors (duplicates, closed on destroy, if owns_fds) */
    uint64_t sigmask;    /* PSP_OPT_SIGMASK: bit s-1 = signal s */
    uint64_t sigignore;  /* PSP_OPT_SIGIGN */
    int instance_cgroup_count; /* per-instance cgroups: instance i uses entry i % count */
    int *instance_cgroup;      /* index into cgroup_dirs, -1: the batch's */
    int *cgroup_dirs;          /* the distinct directories (owned) */
    int cgroup_dir_count;
};

/* attr_exact.c: exact child state for the interceptor (not public API). The child's
 * descriptors are exactly targets[i] <- the caller's sources[i] (they must stay open
 * until the spawn returns); 0-2 included, everything else closed. Returns 0 or -1 with
 * errno (EINVAL: more than PSP_MAX_FDMAP, a target outside 0..PSP_MAX_FD_TARGET-1 or
 * twice, stdio options set; ENOMEM). */
int psp_attr_set_fd_map(pspawn_attr_t *attr, const int *targets, const int *sources, int count);
/* The child's signal mask and ignored signals, as after posix_spawn's exec. */
int psp_attr_set_signals(pspawn_attr_t *attr, const sigset_t *mask, const sigset_t *ignored);
/* The caller takes the reply at the clone when no set-up step of the child can fail (the
 * proxy decides: psp_setup_may_fail); a child whose image then cannot be built (out of
 * memory) exits with 127 before main instead of failing the call. */
int psp_attr_reply_early(pspawn_attr_t *attr);
size_t psp_attr_exact_wire_size(const pspawn_attr_t *attr);
/* Writes the map's targets at blob + *cursor and its sources into shared_fds. */
void psp_attr_exact_encode(const pspawn_attr_t *attr, struct psp_wire_options *o, size_t *cursor,
                           int *shared_fds);
int psp_attr_exact_clone(const pspawn_attr_t *attr, pspawn_attr_t *copy);
void psp_attr_exact_release(pspawn_attr_t *attr);

/* The most caller descriptors one request's options send. */
#define PSP_MAX_SHARED_FDS PSP_MAX_FDMAP

/* attr.c: the wire form of options (struct psp_wire_options + strings + CPU sets). */
size_t psp_attr_wire_size(const pspawn_attr_t *attr);
/* Writes the blob; fills shared_fds[] (3 entries) with the caller descriptors to send. */
void psp_attr_encode(const pspawn_attr_t *attr, void *dst, int *shared_fds);
int psp_attr_pipe_count(const pspawn_attr_t *attr);
/* A deep copy (paths, CPU sets, caller descriptors duplicated). Returns 0 or an errno. */
int psp_attr_clone(const pspawn_attr_t *attr, pspawn_attr_t **out);

#endif
