/* The dispatcher's vocabulary: a plan (one spawn call, instance by instance), the parts
 * it is submitted in, and the split-phase backend interface every way of spawning
 * implements (channel.c, pool.c, exec.c, kernel.c; dispatch.c runs them). */
#ifndef PSPAWN_LAUNCHER_BACKEND_H
#define PSPAWN_LAUNCHER_BACKEND_H

#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/protocol.h"
#include "pspawn.h"

/* ---- The plan: what one spawn call asks for, instance by instance ---------------- */

/* One argv/envp pair; instances that share the same arrays share one set, so a plan
 * whose instances share one argv/envp encodes those strings once. */
struct psp_plan_set {
    char *const *argv;
    char *const *envp;
    size_t bytes; /* strings with terminators */
    int argc;
    int envc;
    int error;    /* E2BIG, EINVAL: every instance of the set fails with it */
};

struct psp_plan_instance {
    int set;    /* index into plan->sets */
    int cpuset; /* index into plan->cpusets, -1 = no placement */
    int error;  /* set before submission: the instance is not sent */
};

struct psp_plan {
    int count;
    struct psp_plan_instance *instances;
    int set_count;
    struct psp_plan_set *sets;
    int cpuset_count;
    cpu_set_t *cpusets;       /* distinct sets, sizeof(cpu_set_t) each */
    const pspawn_attr_t *attr; /* options for every instance (NULL: none) */
    /* Outputs, indexed like instances. */
    pid_t *pids;
    int *errors;
    int *stdio_fds;            /* 3 per instance, or NULL (only without pipes) */
    /* Encoder scratch: local index of a set / CPU set in the part being encoded. */
    uint32_t stamp;
    uint32_t *set_stamp, *set_local;
    uint32_t *cpu_stamp, *cpu_local;
    /* Set by the caller to stop submitting (session freed): pending instances fail
     * with ECANCELED. */
    _Atomic bool *cancel;
    /* The cgroup v2 directory every child of the plan is created in, -1: where the
     * proxy is (the caller's cgroup is already the proxy's). Borrowed. */
    int cgroup_fd;
    char *argv0[2];            /* the context path alone, for instances with NULL argv */
    bool async;                /* run by a session's thread (the kernel backend: ipspawn) */
    bool kernel;               /* served by the kernel backend (psp_kernel_route) */
};

/* plan.c */
/* Builds a plan for `n` instances: instances[i] (or, with instances == NULL, `argv` and
 * `envp` for all: one set). envp NULL = environ. Per-instance problems (bad CPU set
 * size, strings too large) are recorded in the instance, not returned. Returns 0 or an
 * errno (ENOMEM, EINVAL). */
int psp_plan_build(struct psp_plan *plan, const pspawn_instance_t *instances, int n, char *const argv[],
                   char *const envp[], const char *default_argv0, const pspawn_attr_t *attr);
void psp_plan_free(struct psp_plan *plan);
/* The cgroup directory instance i of the plan is created in (-1: where the proxy is):
 * the attr's per-instance one, else the plan's. */
int psp_plan_instance_cgroup(const struct psp_plan *plan, int i);

/* ---- Backends: split-phase (submit a part, collect it), waitpid, ping, destroy ---- */

struct psp_backend;

/* One submitted part of a plan: some of its instances, in one request. */
struct psp_part {
    struct psp_backend *backend;
    int *index;              /* plan instance indices of this part */
    int count;
    /* Zygote channel: */
    int slot;
    uint64_t ticket;
    struct psp_shared *shared;
    int reply_fd;            /* (kernel backend: the ipspawn session, -1 when complete) */
    int pidfd;
    uint64_t results_offset;
    uint64_t errors_offset;
    bool report;             /* children report failures before main */
    bool sent;
    int error;               /* a failure before publication */
    uint32_t last_progress;
    int64_t deadline;        /* liveness: moved on whenever progress moves */
    int timeout_ms;
    bool complete;           /* filled in by submit (warm-pool claims): nothing to wait for */
};

struct psp_backend_ops {
    /* Takes instances todo[0..n) of the plan (or the first few that fit) into `part`;
     * *taken says how many. Returns 0 (in flight, or already complete), EAGAIN (no room
     * now and `block` is false: retry after a completion), or an errno that fails the
     * *taken instances (the dispatcher writes it). */
    int (*submit)(struct psp_backend *b, struct psp_plan *plan, const int *todo, int n, bool block,
                  struct psp_part *part, int *taken);
    /* Descriptors to poll while `part` is in flight; returns how many (<= 2). */
    int (*pollfds)(struct psp_backend *b, struct psp_part *part, struct pollfd *fds);
    /* Completes `part` if it is done, dead or past its deadline: writes its results
     * into the plan and returns true; false while it is still running. */
    bool (*collect)(struct psp_backend *b, struct psp_plan *plan, struct psp_part *part);
    int (*ping)(struct psp_backend *b);
    void (*destroy)(struct psp_backend *b);
    /* Whether instances with this CPU set belong here (NULL set: any). */
    bool (*covers)(struct psp_backend *b, const cpu_set_t *set);
    /* False once the backend is out of rotation (a proxy whose restarts are used up). */
    bool (*available)(struct psp_backend *b);
};

struct psp_backend {
    const struct psp_backend_ops *ops;
    int domain;               /* index of its NUMA node in the context's layout, -1: none */
};

/* dispatch.c: runs a plan over the context's backends; returns the number started. */
struct pspawn_impl;
int psp_dispatch(struct pspawn_impl *impl, struct psp_plan *plan);

#endif
