/* Launcher-side internals shared by the files of libpspawn. */
#ifndef PSPAWN_LAUNCHER_INTERNAL_H
#define PSPAWN_LAUNCHER_INTERNAL_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <spawn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/protocol.h"
#include "launcher/attr.h"
#include "launcher/backend.h"
#include "launcher/kernel_sys.h"
#include "pspawn.h"

#define PSP_DEFAULT_STARTUP_TIMEOUT_MS 10000
#define PSP_DEFAULT_REQUEST_TIMEOUT_MS 60000
#define PSP_DEFAULT_BUFFER_SIZE (4u << 20)
#define PSP_MIN_BUFFER_SIZE (64u << 10)
#define PSP_RELAY_CAPACITY 4096u
#define PSP_DEFAULT_MAX_RESTARTS PSPAWN_DEFAULT_MAX_RESTARTS
/* Proxies per context: by default one per usable CPU, at most this many; at most
 * PSP_MAX_PROXIES when asked for explicitly. */
#define PSP_DEFAULT_MAX_PROXIES 8
#define PSP_MAX_PROXIES PSPAWN_MAX_PROXIES
/* How long stopping a proxy may wait for it to be gone. */
#define PSP_TERMINATE_TIMEOUT_MS 2000
/* ... and for one that SIGKILL reached (its death only waits for the CPU). */
#define PSP_KILLED_TIMEOUT_MS 10000

_Static_assert(PSPAWN_MAX_SPAWNS == PSP_MAX_COUNT, "one call's limit is one request's limit");
_Static_assert(PSPAWN_POOL_MAX == PSP_POOL_MAX, "the public pool limit is the segment's");

/* cgroup.c: cgroup v2 placement. */
/* Opens a cgroup v2 directory: ENOENT no such directory, ENOTDIR, EACCES/EPERM,
 * EOPNOTSUPP not on a cgroup2 file system (a v1 hierarchy, or no cgroup at all). */
int psp_cgroup_open(const char *path, int *out_fd);
/* The calling process's cgroup v2 path ("/a/b" from /proc/self/cgroup's "0::" line)
 * into buf, read through self_fd (a kept descriptor of /proc/self/cgroup, or -1: opened
 * for the call); false if there is none. */
bool psp_cgroup_current(int self_fd, char *buf, size_t size);
/* The cgroup2 mount point ("/sys/fs/cgroup" or "/sys/fs/cgroup/unified"), or NULL. */
const char *psp_cgroup2_mount(void);
/* Closes count descriptors (those >= 0) and frees the array. */
void psp_cgroup_close_all(int *fds, int count);

/* What a channel needs to start (and restart) its proxy: private copies, owned by it. */
struct psp_proxy_config {
    char *path;               /* the target, resolved */
    char *proxy_library;
    char **proxy_envp;        /* deep copy of the attribute; NULL = environ at start */
    unsigned int flags;       /* PSPAWN_CTX_* */
    int core;
    int startup_timeout_ms;
    int request_timeout_ms;
    size_t buffer_size;
    int max_restarts;
    bool relay;
    bool cpus_set;            /* pin the proxy to `cpus` (else to `core`, if >= 0) */
    cpu_set_t cpus;
    bool reset_children;      /* children without a CPU set get child_cpus, not `cpus` */
    cpu_set_t child_cpus;     /* the launcher's affinity mask at context creation (per-node
                                 layout: the node's usable CPUs) */
    int node;                 /* node the proxy serves (-1: not node-bound) */
    int mempolicy;            /* set before exec: MPOL_BIND / MPOL_PREFERRED, or -1 none */
    cpu_set_t domain;         /* the CPUs it serves (routing): its node's, else `cpus` */
    int domain_index;         /* index into impl->domain_node, -1: none */
    int pool;                 /* warm pool: parked children (0: none; never in relay mode) */
    int pool_idle_ms;
    char *library_path;       /* prepended to LD_LIBRARY_PATH (library replicas), or NULL */
};

/* The credentials a proxy was started with, which its children get. */
struct psp_credentials {
    uid_t uid[3]; /* real, effective, saved */
    gid_t gid[3];
    int ngroups;
    gid_t groups[64];
    bool groups_truncated;
};

/* A segment of a proxy that died: kept mapped until destroy, because relay waiters on
 * other threads may still be reading it. */
struct psp_retired_segment {
    struct psp_retired_segment *next;
    void *map;
    size_t size;
};

/* One proxy and the channel to it: the zygote backend. Zygote or relay is a property of
 * the channel (config.relay), not a mode of the dispatcher. */
struct psp_channel {
    struct psp_backend base;
    pthread_mutex_t lock;     /* slot allocation, publication, restarts; never held while
                                 the proxy forks */
    pthread_cond_t changed;   /* a slot was released */
    struct psp_proxy_config config;
    struct psp_credentials credentials;
    struct psp_shared *shared;
    size_t size;
    int reply_fd;             /* eventfd of the start-up handshake */
    int doorbell_fd;          /* eventfd we write when a request is ready */
    int socket_fd;            /* SOCK_SEQPACKET to the proxy, for SCM_RIGHTS; closing it
                                 stops the proxy (even one we may not signal) */
    int slot_fds[PSP_RING_SLOTS]; /* reply eventfd per ring slot */
    bool slot_busy[PSP_RING_SLOTS];
    uint64_t slot_lo[PSP_RING_SLOTS]; /* data-area range a busy slot's request uses */
    uint64_t slot_len[PSP_RING_SLOTS];
    int busy;
    uint64_t next_ticket;
    int proxy_pidfd;
    pid_t proxy_pid;
    cpu_set_t cpus;           /* where the proxy runs (its children by default) */
    cpu_set_t domain;         /* what it serves: instances whose CPU set lies here */
    bool pinned;
    bool broken;              /* proxy dead or unresponsive: restarted on the next request */
    _Atomic int restarts;
    _Atomic bool out_of_rotation; /* dead with its restarts used up: routed around */
    int mempolicy_error;      /* the kernel refused the proxy's memory policy (0: set) */
    int64_t start_deadline;   /* start-up handshake limit (CLOCK_MONOTONIC ms) */
    struct psp_retired_segment *retired;
    int pool_fds[PSP_POOL_MAX]; /* warm pool: claim eventfd per pool slot (pool.c) */
    int pool_fd_count;
};

/* The warm pool (pool.c): a backend wrapping a channel, claiming parked children for
 * the instances it can serve and handing the rest to the channel. */
struct psp_pool_backend {
    struct psp_backend base;
    struct psp_channel *channel;
    _Atomic long claims;     /* instances served by parked children so far */
};
extern const struct psp_backend_ops psp_pool_ops;
/* Puts a pool backend around each of the context's `count` channels. 0 or ENOMEM. */
int psp_pool_attach(struct pspawn_impl *impl, int count);
/* Bytes of the pool table a segment needs for this configuration (0: no pool). */
size_t psp_pool_table_bytes(const struct psp_proxy_config *cfg);
/* Lays the pool table out in a fresh segment header (before data_offset is final). */
void psp_pool_layout(struct psp_shared *sh, const struct psp_proxy_config *cfg, uint64_t *cursor);
/* Creates the claim eventfds and sends them (the segment's third message). */
int psp_pool_send_fds(struct psp_channel *ch, const struct psp_shared *sh);
/* A slot whose child is still the pool's (being forked, parked, dead or trimmed), not yet
 * a caller's: the pool kills and reaps it, and waits for any child must not see it. */
static inline bool psp_pool_unclaimed(int32_t state)
{
    return state == PSP_POOL_FORKING || state == PSP_POOL_PARKED || state == PSP_POOL_DEAD ||
           state == PSP_POOL_TRIM;
}
/* After the proxy is gone: kills and reaps every child still parked (or being forked),
 * closes the claim eventfds. Claimed children are the caller's and are not touched. */
void psp_pool_drain(struct psp_channel *ch);
/* Kills and reaps every parked child that the state protocol gives us (async-signal-safe);
 * their slots become GONE. */
void psp_pool_end_parked(struct psp_channel *ch);

/* The parallel exec backend (exec.c): executables a zygote cannot serve (fallback mode)
 * and contexts that ask for exec semantics (PSPAWN_CTX_EXEC). */
struct psp_exec_backend {
    struct psp_backend base;
    const char *path;          /* the context's (resolved) path */
    int workers;               /* one per usable CPU, at most PSP_DEFAULT_MAX_PROXIES */
    bool pinned;               /* workers pinned to groups[k]: children get `affinity` */
    cpu_set_t groups[PSP_DEFAULT_MAX_PROXIES];
    cpu_set_t affinity;        /* the caller's mask at context creation */
    bool core_set;             /* pspawn_context_create's core: every child there */
    cpu_set_t core;
};

/* The kernel backend (kernel.c): the pspawn/ipspawn system calls, when detected. */
struct psp_kernel_backend {
    struct psp_backend base;
    struct psp_kernel_sys sys;
    const char *path;          /* the context's (resolved) path */
    bool core_set;             /* pspawn_context_create's core: every child there */
    cpu_set_t core;
};
struct psp_replicas;

struct pspawn_impl {
    char *path;
    pspawn_mode_t mode;
    int fallback_reason;
    int core;
    int channel_count;                 /* proxies (0 in fallback mode) */
    struct psp_channel *channels;
    _Atomic unsigned int next_route;   /* where routing of the next call starts */
    /* Per-node layout: the nodes proxies serve (index = backend domain), their usable
     * CPU counts, and the spreading of instances without a CPU set. */
    int domain_count;                  /* 0: not per-node */
    int domain_node[64];               /* node id per domain */
    int domain_cpus[64];
    int spread;                        /* PSPAWN_SPREAD_* */
    _Atomic unsigned int next_spread;  /* instances without a CPU set spread so far */
    struct psp_exec_backend exec;
    /* The kernel backend: expressible requests go there when active (PSPAWN_KERNEL_AUTO
     * and detected, or PSPAWN_KERNEL_REQUIRE: mode PSPAWN_MODE_KERNEL, no proxies). */
    struct psp_kernel_backend kernel;
    bool kernel_active;
    struct psp_pool_backend *pools;    /* warm pool: one per channel, or NULL (pool.c) */
    /* cgroup placement: the context's cgroup (attr.cgroup; -1 none: the caller's at
     * spawn time), and the caller's v2 cgroup the proxies were started in. */
    int cgroup_fd;
    int self_cgroup_fd;                /* /proc/self/cgroup, kept open for the comparison */
    char proxy_cgroup[1024];
    bool proxy_cgroup_known;
    struct psp_replicas *replicas;     /* PSPAWN_CTX_NUMA_REPLICAS: per-node copies, or NULL */
    /* Async sessions still launching: destroy waits for them. */
    pthread_mutex_t sessions_lock;
    pthread_cond_t sessions_done;
    int sessions_active;
};

/* The backend of channel k: the warm pool around it, or the channel itself. */
static inline struct psp_backend *psp_context_backend(struct pspawn_impl *impl, int k)
{
    return impl->pools != NULL ? &impl->pools[k].base : &impl->channels[k].base;
}

/* executable_check.c: 0 if `path` can be served by a zygote, else the errno that
 * pspawn_context_create documents (ENOENT, EACCES, ENOEXEC, ENOTSUP, EPERM, ENOSYS). */
int psp_check_executable(const char *path);

/* arg_limits.c: true unless execve(path, argv, envp) would accept the sizes of argv and
 * envp: each string (with its NUL) at most MAX_ARG_STRLEN (32 pages), at most
 * MAX_ARG_STRINGS of each, and all strings plus the file name plus one pointer per string
 * within a quarter of RLIMIT_STACK (soft), capped at 6 MiB and never below ARG_MAX
 * (fs/exec.c bprm_stack_limits; argc 0 counts as 1). filename_bytes includes the NUL. */
bool psp_exceeds_arg_limits(char *const argv[], char *const envp[], size_t filename_bytes);

/* proxy_start.c: a channel's proxy. Start takes ownership of `config` (also on failure).
 * Returns 0 or an errno; on failure nothing is left running or open. */
int psp_find_proxy_library(const pspawn_context_attr_t *attr, char **out_path);
int psp_channel_start(struct psp_channel *ch, struct psp_proxy_config *config);
/* The two halves of psp_channel_start, so that several proxies start in parallel:
 * begin spawns the proxy (and pins it), end awaits its handshake. After a failure of
 * either, nothing of the channel is left (end must not be called after begin failed). */
int psp_channel_start_begin(struct psp_channel *ch, struct psp_proxy_config *config);
int psp_channel_start_end(struct psp_channel *ch);
/* Replaces a dead, stuck or broken proxy with a new one (counted in `restarts`); EPIPE
 * when max_restarts is used up. Called with the lock held. */
int psp_channel_restart(struct psp_channel *ch);
/* Stops the proxy within a bounded time, even one we may not signal any more, and
 * releases everything. */
void psp_channel_stop(struct psp_channel *ch);
void psp_proxy_config_free(struct psp_proxy_config *config);
/* Stops the proxy and waits (bounded) until it is gone; true if it is. After that,
 * everything it wrote into the segment is final. */
bool psp_channel_terminate(struct psp_channel *ch);
/* proxy_stop.c: terminate, then reap (bounded; a late one is reaped by a later call). */
void psp_kill_and_reap_proxy(struct psp_channel *ch);
/* Kills and reaps a child of ours by pid, through a pidfd (never one somebody else reaped). */
void psp_kill_and_reap_pid(pid_t pid);
/* The caller closed or reused our descriptors: stops the proxy, forgets them all. */
void psp_channel_forget_fds(struct psp_channel *ch);
/* The caller is about to exec: kills and reaps the proxy and the parked children now,
 * async-signal-safe (no lock, no allocation, no descriptor closed). */
void psp_channel_end_before_exec(struct psp_channel *ch);
/* fd_lift.c (PSPAWN_CTX_FDS_ABOVE_LIMIT): each descriptor moved to a number at or above
 * the soft RLIMIT_NOFILE, where that can be done safely (see there); -1 entries skipped. */
void psp_lift_fds(int *const fds[], int count);
/* The channel's descriptors (eventfds, socket, pidfd, claim eventfds), so moved. */
void psp_channel_lift_fds(struct psp_channel *ch);
/* The same for every proxy channel of a context (context.c). */
void psp_context_end_before_exec(const pspawn_context_t *ctx);
/* segment.c: the channel's segment, queued on ch->socket_fd for the proxy. */
int psp_create_segment(struct psp_channel *ch, size_t size);
/* proxy_exec.c: exec the channel's proxy (sets ch->proxy_pid). */
int psp_exec_proxy(struct psp_channel *ch, int proxy_socket);

/* credentials.c */
int psp_credentials_read(struct psp_credentials *out);
/* True if the calling process still has the credentials in `then`. */
bool psp_credentials_unchanged(const struct psp_credentials *then);

/* channel.c */
extern const struct psp_backend_ops psp_channel_ops;
/* One round trip without a fork. Returns 0 or an errno. */
int psp_channel_ping(struct psp_channel *ch);
/* Wake the proxy without a request (it then reaps consumed relay children). */
void psp_channel_ring(struct psp_channel *ch);
/* transport.c: sends `count` descriptors over the channel's socket. Returns 0 or an errno. */
int psp_send_fds(int socket_fd, const int *fds, int count);
/* transport.c: creates a part's pipes: the caller's ends go to the plan's stdio_fds
 * (3 per instance, by plan index), the child ends, in instance order, to child_fds. */
int psp_make_pipes(const pspawn_attr_t *attr, const int *index, int count, int *plan_fds, int *child_fds);
/* transport.c: closes *fd if open and sets it to -1. */
void psp_close_fd(int *fd);

/* spawn.c */
/* Every signal default and none blocked in the child, as after exec from a clean
 * process; returns the flags to set. */
short psp_spawnattr_default_signals(posix_spawnattr_t *sa);

/* exec.c */
extern const struct psp_backend_ops psp_exec_ops;
/* The ops of a backend without a process or state of its own (exec, kernel). */
int psp_backend_ping_nothing(struct psp_backend *b);
void psp_backend_destroy_nothing(struct psp_backend *b);
bool psp_backend_covers_all(struct psp_backend *b, const cpu_set_t *set);
bool psp_backend_always_available(struct psp_backend *b);
void psp_exec_backend_init(struct psp_exec_backend *b, const char *path, int core, const cpu_set_t *usable,
                           const cpu_set_t *affinity);

/* kernel.c */
extern const struct psp_backend_ops psp_kernel_ops;
/* Sets the backend up for `path`; true if the system calls are detected. */
bool psp_kernel_backend_init(struct psp_kernel_backend *b, const char *path, int core);
/* Where a request with these options goes: 1 the kernel backend, 0 the context's other
 * backends, ENOTSUP (a PSPAWN_MODE_KERNEL context and options the calls cannot express). */
int psp_kernel_route(const struct pspawn_impl *impl, const pspawn_attr_t *attr);

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t psp_now_ms(void);

/* How the context's proxies are laid out: their count and each one's CPUs. */
struct psp_plain_layout {
    int count;
    bool pinned;           /* each proxy pinned to group[k] (several proxies) */
    cpu_set_t affinity;    /* the caller's mask: what children without a CPU set get */
    cpu_set_t group[PSP_MAX_PROXIES];
};

/* layout.c: the CPUs the caller may use (affinity, online, cpuset; its affinity alone in
 * *affinity), how many; the plain layout of attr->proxies over them; the per-node layout
 * (NULL when the context does not get one; fills impl's domain table). */
int psp_usable_cpus(cpu_set_t *usable, cpu_set_t *affinity);
void psp_plain_layout(const pspawn_context_attr_t *attr, const cpu_set_t *usable_in, const cpu_set_t *affinity,
                      struct psp_plain_layout *out);
struct psp_layout;
struct psp_layout *psp_per_node_layout(struct pspawn_impl *impl, const pspawn_context_attr_t *attr,
                                       const cpu_set_t *affinity);

/* context_config.c: the checks of create's attributes; what a channel keeps to start its
 * proxy again after a death (0 or an errno). */
bool psp_context_attr_valid(const pspawn_context_attr_t *attr);
int psp_make_proxy_config(const struct pspawn_impl *impl, const pspawn_context_attr_t *attr,
                          struct psp_proxy_config *out);

/* context_start.c: starts a new context's backends (its mode, proxies, replicas, or
 * fallback); 0 or an errno. Removing the replicas is also destroy's. */
int psp_context_start(struct pspawn_impl *impl, const pspawn_context_attr_t *attr);
void psp_remove_replicas(struct pspawn_impl *impl);

#endif
