/*
 * pspawn.h - spawn many instances of one executable through a zygote ("proxy").
 *
 * The target is executed once with libpspawn_proxy.so preloaded; the proxy stops it
 * after the dynamic loader, relocations and library constructors have run, just before
 * main. Each spawn request then only forks the proxy, installs argv/environment, and
 * calls the real main. Children are children of the calling process (CLONE_PARENT):
 * waitpid(), SIGCHLD and pidfds work exactly as after fork+exec.
 *
 * Conventions: functions that fail return -1 (pspawn_n: see below) and set errno;
 * nothing is ever printed. All functions are thread-safe with respect to one context,
 * except pspawn_context_destroy, which must not race with other calls on that context.
 *
 * Error numbers of pspawn_context_create / pspawn_context_create_ex:
 *   ENOENT      the executable does not exist
 *   ENAMETOOLONG  the path is PATH_MAX bytes or longer
 *   EACCES      not a regular file, or not executable by the caller
 *   ENOEXEC     not an ELF executable for this machine (empty file, script, wrong arch)
 *   ENOTSUP     statically linked: LD_PRELOAD would be ignored            (fallback-able)
 *   EPERM       set-uid or set-gid: the loader would drop LD_PRELOAD      (fallback-able)
 *   EDEADLK     the target's constructors started threads; forking it is unsafe (fallback-able)
 *   ENOSYS      the executable does not start through glibc's __libc_start_main (its own
 *               _start, -nostartfiles, Go's internal linker): no undefined __libc_start_main
 *               among its dynamic symbols (or they cannot be read). The proxy could not stop
 *               it before main, so it is refused before any of its code runs (fallback-able)
 *   ETIMEDOUT   the proxy did not complete its start-up handshake in time (fallback-able)
 *   EPIPE       the proxy died during start-up                            (fallback-able)
 *   ELIBACC     libpspawn_proxy.so could not be found or read
 *   EINVAL      bad argument (NULL, core out of range or not allowed, bad attribute)
 * "fallback-able" errors make the context exec each instance instead (the parallel exec
 * backend, see PSPAWN_CTX_EXEC) when PSPAWN_CTX_FALLBACK is set (see
 * pspawn_context_fallback_reason).
 *
 * Error numbers of pspawn / pspawn_n / pspawn_e / pspawn_ne:
 *   E2BIG       argv + environment do not fit the shared buffer, or execve would refuse them
 *               (checked up front, before anything is forked, in every mode): a string
 *               longer than MAX_ARG_STRLEN (131072 bytes with its NUL), more than
 *               MAX_ARG_STRINGS of either, or all strings + the executable's path + one
 *               pointer per string above a quarter of RLIMIT_STACK (soft), capped at 6 MiB,
 *               never below ARG_MAX (131072); argc 0 counts as 1 (fs/exec.c)
 *   EINVAL      bad argument (NULL argv, argv[0] missing, nspawns < 0 or > PSPAWN_MAX_SPAWNS,
 *               destroyed context)
 *   EPIPE       the proxy died and could not be restarted (or max_restarts is used up); with
 *               several proxies: no proxy is left in rotation (instances of a proxy that
 *               dies are sent to the others)
 *   EPERM       the calling process's credentials (uids, gids, groups) are not those it
 *               had at pspawn_context_create: a proxy started with the old ones would give
 *               children the old ones, so nothing is spawned (destroy and re-create)
 *   ETIMEDOUT   the proxy did not answer within the request timeout (it is killed; the
 *               context is broken)
 *   EAGAIN      relay mode: the exit-status table is full; or fork() failed with EAGAIN
 *   other       what clone() reported in the proxy (ENOMEM, ...)
 */
#ifndef PSPAWN_H
#define PSPAWN_H

#include <sched.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PSPAWN_API __attribute__((visibility("default")))
#else
#define PSPAWN_API
#endif

struct pspawn_impl;

/* A spawn context: one proxy serving one executable. Treat as opaque. */
typedef struct pspawn_context {
    struct pspawn_impl *impl;
} pspawn_context_t;

/* ---- The paper's API (Kulkarni et al., ROSS '12, Figure 2) ---------------------- */

/* Start a proxy for the executable at `path`. `core` pins the proxy, and so the
 * children it forks, to one CPU; -1 means no pinning. Returns 0, or -1 with errno. */
PSPAWN_API int pspawn_context_create(pspawn_context_t *ctx, const char *path, int core);

/* Stop and reap the proxy and release every resource of the context. Children already
 * spawned keep running and stay waitable by the caller (except in relay mode, where
 * their exit status is no longer available after destroy). NULL-safe, idempotent. */
PSPAWN_API void pspawn_context_destroy(pspawn_context_t *ctx);

/* Spawn one instance with `argv` (execve convention: argv[0] is the program name,
 * NULL-terminated) and the caller's current environment. Returns the child's pid. */
PSPAWN_API pid_t pspawn(pspawn_context_t *ctx, char *const argv[]);

/* The most instances one call may ask for (larger counts are EINVAL). */
#define PSPAWN_MAX_SPAWNS (1 << 20)

/* Spawn `nspawns` instances with the same argv, in one request to the proxy.
 * Fills pids[0..nspawns-1] (-1 for an instance that did not start) and returns the
 * number started. If fewer than nspawns started, errno tells why the first failed one
 * failed; if none started, returns -1. The started ones are always reported. */
PSPAWN_API int pspawn_n(pid_t *pids, pspawn_context_t *ctx, int nspawns, char *const argv[]);

/* ---- Extensions ----------------------------------------------------------------- */

/* Limits and defaults of pspawn_context_attr_t (below). */
#define PSPAWN_DEFAULT_MAX_RESTARTS 8 /* max_restarts */
#define PSPAWN_MAX_PROXIES 64         /* proxies, asked for explicitly */
/* Instances per request when they carry pipes (pspawn_attr_stdio_pipe): bounds the
 * descriptors in flight (the kernel limits in-flight SCM_RIGHTS descriptors to
 * RLIMIT_NOFILE). Larger calls are cut into requests of this many. */
#define PSPAWN_MAX_PIPED_BATCH 64

/* Context flags (pspawn_context_attr_t.flags). */
#define PSPAWN_CTX_FALLBACK     0x1u /* use posix_spawn when a zygote cannot serve this target */
#define PSPAWN_CTX_RELAY        0x2u /* force relay mode (the proxy stays the parent) */
#define PSPAWN_CTX_NO_BIND_NOW  0x4u /* do not resolve all symbols in the proxy before freezing */
#define PSPAWN_CTX_PREFAULT     0x8u /* make forks copy the page tables of the target's file
                                        mappings: fewer faults in children, slower forks (off by
                                        default: it lost throughput here, see docs/benchmarks.md) */
#define PSPAWN_CTX_EXEC        0x10u /* exec semantics, no proxy: every instance is a fresh execve
                                        of the path, created by the parallel exec backend (one
                                        worker per usable CPU, clone(CLONE_VM | CLONE_VFORK),
                                        placement and options applied before execve). Serves what
                                        a zygote cannot (static, set-uid, own entry point,
                                        threaded constructors; also scripts). Mode
                                        PSPAWN_MODE_EXEC. Not with PSPAWN_CTX_RELAY (EINVAL).
                                        umask, rlimits and the parent-death signal are ENOTSUP
                                        there, as in fallback mode. */
#define PSPAWN_CTX_NUMA_REPLICAS 0x200u /* per-node proxies run per-node copies of the
                                        executable and the libraries they map (in
                                        $TMPDIR/pspawn-replicas-PID-XXXXXX, written bound to
                                        the node: node-local page cache); removed by
                                        pspawn_context_destroy. Ignored without per-node
                                        proxies. See pspawn_context_replica_bytes. */

#define PSPAWN_CTX_FDS_ABOVE_LIMIT 0x400u /* keep the context's descriptors at numbers at or
                                        above the caller's soft RLIMIT_NOFILE, so that they
                                        do not count against it (raised and restored for the
                                        moves); only where the hard limit is higher, the soft
                                        one at most 65536 and the caller single-threaded at
                                        creation or restart, else they stay where they are.
                                        For interposers in programs that never asked for them. */

#define PSPAWN_CTX_WATCH_IMAGE 0x800u /* the proxy watches (inotify) the files its image was
                                        loaded from: the executable and every object mapped
                                        before main, by file and by the name the loader used
                                        in each directory; once one changed on disk, spawns
                                        fail with ESTALE (an exec would load the new file):
                                        destroy the context and create a new one. Costs one
                                        inotify instance per proxy (create fails with its
                                        errno, EMFILE or ENOSPC, at the user's limits). */

#define PSPAWN_CTX_MERGE_TEXT 0x1000u /* fewer mappings to copy at each fork and to tear down
                                        at each child's exit: the read-only pages right
                                        before and after each object's text (headers, symbol
                                        tables, read-only data) get the text's protection, so
                                        the kernel merges the three into one area, as linkers
                                        laid objects out before -z separate-code (pynamic100:
                                        547 areas to 339). Those pages become executable in
                                        the proxy and its children; RELRO and data are not
                                        touched. */

#define PSPAWN_CTX_DEFERRED   0x100u /* deferred fork point: the proxy runs the target's main
                                        and freezes when it calls pspawn_ready()
                                        (pspawn_ready.h), after its own start-up; children
                                        return from that call with their own argv/environ.
                                        README, "Deferred fork point". */

typedef struct pspawn_context_attr {
    size_t size;               /* sizeof(pspawn_context_attr_t); set by _init */
    unsigned int flags;        /* PSPAWN_CTX_* */
    int core;                  /* CPU to pin the proxy to, -1 for none */
    int startup_timeout_ms;    /* start-up handshake limit; default 10000 */
    int request_timeout_ms;    /* limit for one request to the proxy; default 60000; -1 = none */
    size_t buffer_size;        /* shared argv/env buffer; default 4 MiB, min 64 KiB */
    const char *proxy_library; /* path of libpspawn_proxy.so; NULL = $PSPAWN_PROXY_LIBRARY,
                                  else the directory holding libpspawn.so */
    char *const *proxy_envp;   /* environment the proxy is exec'd with (what the loader and
                                  constructors see); NULL = the caller's environment */
    int max_restarts;          /* a dead proxy is restarted on the next spawn, at most this
                                  many times over the context's life, counted per proxy;
                                  default PSPAWN_DEFAULT_MAX_RESTARTS, 0 = never, -1 = no
                                  limit. A proxy whose
                                  restarts are used up is taken out of rotation: its
                                  instances go to the other proxies; only when none is
                                  left do spawns fail with EPIPE */
    int proxies;               /* proxies serving the context (started in parallel); 0 =
                                  default: one per usable CPU (the caller's affinity mask,
                                  online, within its cgroup v2 cpuset), at most 8; 1 = a
                                  single proxy, unpinned (or pinned to `core`); K > 1: the
                                  usable CPUs are partitioned into K groups and proxy k is
                                  pinned to group k (K > usable CPUs: proxies share CPUs
                                  round-robin). With several proxies an instance with a CPU
                                  set goes to a proxy whose CPUs cover it; children without
                                  a CPU set get the caller's whole affinity mask of context
                                  creation, not the proxy's group. EINVAL: negative, > PSPAWN_MAX_PROXIES,
                                  or > 1 together with core >= 0 (core implies 1). */
    /* NUMA placement (docs/design.md, "Per-domain proxies"). Fields from here on are
     * optional for callers built against an older header: a smaller `size` that ends
     * before `numa` gets the defaults. */
    int numa;                  /* PSPAWN_NUMA_AUTO (default): per-node proxies when the
                                  caller may use CPUs of two or more nodes (its affinity,
                                  online CPUs, cgroup cpuset); PSPAWN_NUMA_OFF: the plain
                                  layout above; PSPAWN_NUMA_ON: per-node also on one node.
                                  Per-node: at least one proxy per usable node (`proxies`
                                  is raised to the node count), the rest in proportion to
                                  the nodes' usable CPUs, each pinned to CPUs of its node
                                  and, before the target is exec'd, its memory policy set
                                  per `numa_memory`. Instances with a CPU set go to a
                                  proxy of the node that holds the set (a set spanning
                                  nodes: any proxy); without one they are spread over the
                                  nodes per `numa_spread` and run on their node's CPUs
                                  (not the caller's whole mask). Never with `core` >= 0 or
                                  proxies == 1 (then OFF). EINVAL: another value. */
    int numa_memory;           /* the per-node proxies' memory policy: PSPAWN_NUMA_MEM_BIND
                                  (default, MPOL_BIND to the node), PSPAWN_NUMA_MEM_PREFERRED
                                  (MPOL_PREFERRED), PSPAWN_NUMA_MEM_NONE. A node the
                                  cpuset's mems exclude is not bound. Children reset it
                                  to the default policy before main unless the spawn
                                  asks for node-local memory (pspawn_attr_set_numa_local) */
    int numa_spread;           /* instances without a CPU set, over the nodes:
                                  PSPAWN_SPREAD_ROUND_ROBIN (default: instance k of a call
                                  on node k % nodes, calls continuing where the last one
                                  stopped) or PSPAWN_SPREAD_FILL (a node takes as many
                                  consecutive instances as it has usable CPUs, then the
                                  next node) */
    const char *cgroup;        /* cgroup v2 directory (a path under the cgroup2 mount, e.g.
                                  "/sys/fs/cgroup/jobs/a") every child is created in
                                  (clone3 CLONE_INTO_CGROUP: born there, its limits apply
                                  to the fork itself); opened at create: ENOENT, ENOTDIR,
                                  EACCES, EOPNOTSUPP (a v1 hierarchy or not a cgroup: v1
                                  placement is not built). NULL (default): each child
                                  starts in the cgroup v2 the caller is in *at spawn time*,
                                  as after fork+exec (see pspawn_attr_set_cgroup) */
    int kernel;                /* the kernel path (the patched kernel's pspawn/ipspawn system
                                  calls, native/kernel/; see pspawn_kernel_available):
                                  PSPAWN_KERNEL_AUTO (default): in a context with exec
                                  semantics (PSPAWN_CTX_EXEC, fallback mode) whose kernel has
                                  the calls, every request they can express goes to them
                                  instead of the exec backend (served as PSPAWN_MODE_KERNEL:
                                  fresh execve children of the caller, pinned before their
                                  first instruction), the rest to the exec backend; zygote
                                  contexts keep their proxies (faster: no exec per child);
                                  not used with a context `cgroup`.
                                  PSPAWN_KERNEL_REQUIRE: the kernel serves every request and no
                                  proxy is started (mode PSPAWN_MODE_KERNEL; `proxies`, `numa*`
                                  and PSPAWN_CTX_FALLBACK do not apply); create fails with
                                  ENOSYS when the calls are not detected, ENOTSUP with a
                                  `cgroup`, EINVAL with PSPAWN_CTX_RELAY; a request whose
                                  options the calls cannot express (cwd, stdio other than
                                  inherit, umask, process group or session, rlimits,
                                  parent-death signal, a cgroup; CPU sets and the NUMA-local
                                  flag are fine) fails every instance with ENOTSUP.
                                  PSPAWN_KERNEL_FORBID: never. EINVAL: another value. */
    /* Warm pool (zygote mode; ignored in relay, exec and fallback mode). */
    int pool;                  /* children each proxy keeps forked ahead of time, parked
                                  before main (0 = none, the default; at most 64, EINVAL
                                  otherwise: PSPAWN_POOL_MAX). A spawn without per-spawn options (an attr
                                  with CPU sets only, or none) claims one instead of
                                  forking; the proxy refills between requests. Anything
                                  else (stdio, cwd, umask, rlimits, process group,
                                  setsid, parent-death signal, cgroup, node-local memory,
                                  a caller that moved cgroups, strings over 64 KiB) is
                                  forked as usual. README, "Warm pool". */
    int pool_idle_ms;          /* parked children are ended after this long without a
                                  spawn (refilled on the next one); 0 = never (default);
                                  EINVAL if negative */
} pspawn_context_attr_t;

#define PSPAWN_KERNEL_AUTO 0
#define PSPAWN_KERNEL_REQUIRE 1
#define PSPAWN_KERNEL_FORBID 2

/* 1 if the running kernel has the pspawn/ipspawn system calls this library speaks:
 * /sys/kernel/pspawn names them with this library's ABI version (abi_version) and both
 * numbers answer a harmless probe as those calls do; else 0 (a kernel that says present
 * but answers ENOSYS or EINVAL is treated as absent). Reads sysfs on every call. */
PSPAWN_API int pspawn_kernel_available(void);

/* pspawn_context_attr_t.pool: parked children per proxy, at most. */
#define PSPAWN_POOL_MAX 64

#define PSPAWN_NUMA_AUTO 0
#define PSPAWN_NUMA_OFF 1
#define PSPAWN_NUMA_ON 2
#define PSPAWN_NUMA_MEM_BIND 0
#define PSPAWN_NUMA_MEM_PREFERRED 1
#define PSPAWN_NUMA_MEM_NONE 2
#define PSPAWN_SPREAD_ROUND_ROBIN 0
#define PSPAWN_SPREAD_FILL 1

/* Fill `attr` with the defaults. Returns 0. */
PSPAWN_API int pspawn_context_attr_init(pspawn_context_attr_t *attr);

/* pspawn_context_create with attributes (NULL = defaults). */
PSPAWN_API int pspawn_context_create_ex(pspawn_context_t *ctx, const char *path,
                                        const pspawn_context_attr_t *attr);

/* How a context spawns. */
typedef enum pspawn_mode {
    PSPAWN_MODE_ZYGOTE = 1,   /* proxy forks with CLONE_PARENT: children are the caller's */
    PSPAWN_MODE_RELAY = 2,    /* proxy stays the parent and relays exit status (used when the
                                 caller is pid 1 or ignores SIGCHLD, or PSPAWN_CTX_RELAY) */
    PSPAWN_MODE_FALLBACK = 3, /* a fresh exec per child by the parallel exec backend
                                 (PSPAWN_CTX_FALLBACK was needed: see fallback_reason) */
    PSPAWN_MODE_EXEC = 4,     /* the same backend, asked for with PSPAWN_CTX_EXEC */
    PSPAWN_MODE_KERNEL = 5    /* the kernel's pspawn/ipspawn system calls: the mode of a
                                 PSPAWN_KERNEL_REQUIRE context, and of the requests a
                                 PSPAWN_KERNEL_AUTO context sends there (pspawn_request_mode) */
} pspawn_mode_t;

/* The mode of a live context, or -1 with errno EINVAL. */
PSPAWN_API int pspawn_context_mode(const pspawn_context_t *ctx);

/* In fallback mode, the errno that prevented the zygote (ENOTSUP, EPERM, ...); else 0. */
PSPAWN_API int pspawn_context_fallback_reason(const pspawn_context_t *ctx);

/* The pid of the first live proxy (in creation order; a dead one waiting for its restart
 * and one out of rotation are skipped), or -1 (fallback mode, or no proxy alive). */
PSPAWN_API pid_t pspawn_context_proxy_pid(const pspawn_context_t *ctx);

/* Every proxy's pid, in creation order: fills pids[0..min(count, capacity)) with each
 * one's pid (-1 for a dead or out-of-rotation proxy) and returns the proxy count (0 in
 * fallback mode), or -1 with EINVAL (NULL ctx, capacity < 0, pids NULL with capacity > 0). */
PSPAWN_API int pspawn_context_proxy_pids(const pspawn_context_t *ctx, pid_t *pids, int capacity);

/* Whether `pid` is one of the context's own processes rather than a child it spawned: a
 * proxy (also a dead one not yet restarted) or a warm-pool child not yet claimed. They are
 * children of the caller too; a caller that waits for *any* child can skip them with this.
 * Returns 1 or 0 (also for a bad context). Lock-free and async-signal-safe: a SIGCHLD
 * handler may call it. */
PSPAWN_API int pspawn_context_owns(const pspawn_context_t *ctx, pid_t pid);

/* The descriptors the context holds (its proxies' sockets, eventfds and pidfds, a warm
 * pool's eventfds, its cgroup directories): fills fds[0..min(n, capacity)) and returns n,
 * or -1 with EINVAL. Lock-free and async-signal-safe; a snapshot (a proxy restart replaces
 * them). For interposers that must notice the caller closing or reusing one (close, dup2,
 * closefrom in a launcher that does not know about them). */
PSPAWN_API int pspawn_context_fds(const pspawn_context_t *ctx, int *fds, int capacity);

/* Destroys a context whose descriptors the caller has closed or reused (see
 * pspawn_context_fds): its proxies and parked children are killed and reaped, its memory
 * is freed, and none of the descriptor numbers it held is closed or otherwise touched. */
PSPAWN_API void pspawn_context_abandon(pspawn_context_t *ctx);

/* How many times the context restarted a dead proxy, summed over its proxies (0 in
 * fallback mode). */
PSPAWN_API int pspawn_context_restarts(const pspawn_context_t *ctx);

/* How many proxies serve the context, out-of-rotation ones included (0 in fallback mode). */
PSPAWN_API int pspawn_context_proxy_count(const pspawn_context_t *ctx);

/* Warm pool: the pids of the children parked right now, over all proxies (at most
 * `capacity` written); returns how many there are, 0 without a pool, -1/EINVAL for a bad
 * context. Parked children are children of the caller that have not reached main: they
 * are never reported by a spawn call until claimed. Parked children that died are reaped
 * by this call (as by every spawn), so that their slots are refilled. */
PSPAWN_API int pspawn_context_pool_pids(const pspawn_context_t *ctx, pid_t *pids, int capacity);
/* Warm pool: how many instances parked children have served over the context's life (the
 * rest were forked); -1/EINVAL for a bad context. */
PSPAWN_API long pspawn_context_pool_claims(const pspawn_context_t *ctx);

/* ---- NUMA topology --------------------------------------------------------------- */

#define PSPAWN_MAX_NODES 64

/* One NUMA node as the caller may use it. */
typedef struct pspawn_numa_node {
    int id;                        /* N of /sys/devices/system/node/nodeN */
    int cpu_count;                 /* CPUs of the node the caller may use (0: none) */
    unsigned char cpus[128];       /* those CPUs, bit (c % 8) of byte c / 8: the layout of a
                                      cpu_set_t, so memcpy into one works */
    int memory_allowed;            /* 1 unless the caller's cpuset excludes its memory */
    unsigned char distance[PSPAWN_MAX_NODES]; /* SLIT distance to the node at each index
                                      of the same array (10: local) */
} pspawn_numa_node_t;

/* The machine's nodes (from sysfs: nodeN/cpulist, nodeN/distance, cpu/online), each limited
 * to what the caller may use: its affinity mask, the online CPUs and its cgroup's cpuset
 * (v2 cpuset.cpus.effective, else v1 cpuset.effective_cpus). A kernel without NUMA
 * reports one node 0. Fills nodes[0..min(count, capacity)) in id order and returns the
 * node count, or -1 with errno: EINVAL (capacity < 0, nodes NULL with capacity > 0, or a
 * sysfs file that does not parse), ENOENT (a required sysfs file is missing). */
PSPAWN_API int pspawn_numa_topology(pspawn_numa_node_t *nodes, int capacity);

/* The node each proxy of the context is bound to, in creation order (-1: not
 * node-bound, e.g. PSPAWN_NUMA_OFF or a single-node machine under AUTO). Returns the
 * proxy count (0 in fallback/exec mode), or -1 with EINVAL. */
PSPAWN_API int pspawn_context_proxy_nodes(const pspawn_context_t *ctx, int *nodes, int capacity);
/* Bytes of library replicas the context wrote (PSPAWN_CTX_NUMA_REPLICAS), over every
 * node: their disk use (under $TMPDIR: memory when it is a tmpfs) and at most their page
 * cache. 0 without replicas; -1 with EINVAL for a bad context. */
PSPAWN_API long long pspawn_context_replica_bytes(const pspawn_context_t *ctx);

/* pspawn with an explicit environment (NULL-terminated; NULL = the caller's environ). */
PSPAWN_API pid_t pspawn_e(pspawn_context_t *ctx, char *const argv[], char *const envp[]);

/* pspawn_n with an explicit environment and per-instance errors: errors[i] is 0 for a
 * started instance, else its errno (errors may be NULL). Return value as pspawn_n. */
PSPAWN_API int pspawn_ne(pid_t *pids, int *errors, pspawn_context_t *ctx, int nspawns,
                         char *const argv[], char *const envp[]);

/* Wait for a child of this context: waitpid() semantics (options 0 or WNOHANG; status
 * as waitpid). In zygote and fallback mode this is waitpid(pid); in relay mode it reads
 * the status the proxy recorded. Callers may equally use waitpid/waitid/pidfds directly
 * except in relay mode. Returns pid, 0 (WNOHANG, still running) or -1 with errno. */
PSPAWN_API pid_t pspawn_waitpid(pspawn_context_t *ctx, pid_t pid, int *wstatus, int options);

/* One instance of a vector spawn (pspawn_vector, below). */
typedef struct pspawn_instance {
    char *const *argv;      /* NULL: the context path as argv[0], nothing else */
    char *const *envp;      /* NULL: the caller's environ at the time of the call */
#ifdef __USE_GNU
    const cpu_set_t *cpus;  /* NULL: no placement (beyond the attr's and the proxy's) */
#else
    const void *cpus;
#endif
    size_t cpusetsize;      /* bytes at cpus (sizeof(cpu_set_t), or CPU_ALLOC_SIZE(n)) */
} pspawn_instance_t;

/* ---- Per-spawn options (in the spirit of posix_spawnattr_t + file actions) -------- */

/* An options object: create, set what you need, pass to pspawn_x / pspawn_nx, reuse
 * as often as you like, destroy. Setters validate at once (EINVAL, EBADF) and return 0
 * or -1 with errno. Not thread-safe while being modified; read-only use is. */
typedef struct pspawn_attr pspawn_attr_t;

PSPAWN_API int pspawn_attr_create(pspawn_attr_t **attr);
PSPAWN_API void pspawn_attr_destroy(pspawn_attr_t *attr);

/* Standard descriptor `fd` (0, 1 or 2) of the child: */
PSPAWN_API int pspawn_attr_stdio_inherit(pspawn_attr_t *attr, int fd);   /* the proxy's (default) */
PSPAWN_API int pspawn_attr_stdio_null(pspawn_attr_t *attr, int fd);      /* /dev/null */
/* open(path, oflags, mode) in the child, after the working directory is set. */
PSPAWN_API int pspawn_attr_stdio_file(pspawn_attr_t *attr, int fd, const char *path, int oflags,
                                      mode_t mode);
/* A descriptor of the caller, duplicated into every child (sent with SCM_RIGHTS). It
 * must stay open until the spawn call returns. */
PSPAWN_API int pspawn_attr_stdio_fd(pspawn_attr_t *attr, int fd, int caller_fd);
/* A fresh pipe per child; the caller's end (O_CLOEXEC, blocking) is returned in
 * stdio_fds[3 * i + fd] by pspawn_nx. */
PSPAWN_API int pspawn_attr_stdio_pipe(pspawn_attr_t *attr, int fd);

PSPAWN_API int pspawn_attr_set_cwd(pspawn_attr_t *attr, const char *dir);
PSPAWN_API int pspawn_attr_set_umask(pspawn_attr_t *attr, mode_t mask);
/* pgid 0: the child leads a new process group; > 0: it joins group pgid. */
PSPAWN_API int pspawn_attr_set_process_group(pspawn_attr_t *attr, pid_t pgid);
/* The child starts a new session (setsid), and so a new process group. */
PSPAWN_API int pspawn_attr_set_new_session(pspawn_attr_t *attr);
/* setrlimit(resource, {soft, hard}) in the child; up to 16. */
PSPAWN_API int pspawn_attr_add_rlimit(pspawn_attr_t *attr, int resource, rlim_t soft, rlim_t hard);
/* The child gets `sig` when its parent dies (PR_SET_PDEATHSIG). The parent is the caller
 * in zygote mode: the kernel signals when the caller *thread* that created the context
 * exits, so create contexts on a thread that lives as long as they do. */
PSPAWN_API int pspawn_attr_set_parent_death_signal(pspawn_attr_t *attr, int sig);
/* NUMA: with on != 0 the children of a node-bound proxy keep its memory policy (bound
 * to, or preferring, the proxy's node: their memory is node-local); by default (0) they
 * reset it to the default policy before main, as a fork+exec child of the caller
 * would have. No effect where the proxy is not node-bound. */
PSPAWN_API int pspawn_attr_set_numa_local(pspawn_attr_t *attr, int on);
/* cgroup v2 placement of every child of the spawn: created directly in the cgroup at
 * `path` (a directory of the cgroup2 mount) with clone3(CLONE_INTO_CGROUP), so its
 * limits (pids.max, memory.max, ...) apply from the fork on. The directory is opened
 * now (the attr keeps it open): ENOENT no such cgroup, ENOTDIR, EACCES/EPERM no
 * permission, EOPNOTSUPP not a cgroup v2 directory (v1 hierarchies cannot be joined
 * at creation; v1 placement is not built). NULL: back to the default. At spawn time the
 * kernel may still refuse an instance: EACCES/EPERM, EBUSY/EOPNOTSUPP (a cgroup with
 * controllers in subtree_control, or threaded: "no internal processes"), ENOENT
 * (removed since it was opened), EAGAIN (pids.max reached) - that instance's errno.
 * Without it: the context's cgroup (pspawn_context_attr_t.cgroup), else the caller's
 * cgroup v2 at spawn time (a caller that moved after create has its new cgroup's limits
 * applied; one read of /proc/self/cgroup per call, a directory opened only when it
 * moved). Parallel exec backend (fallback/exec modes): explicit cgroups are ENOTSUP per
 * instance; its children are born in the caller's cgroup anyway. */
PSPAWN_API int pspawn_attr_set_cgroup(pspawn_attr_t *attr, const char *path);
/* Per-instance cgroups: instance i is created in paths[i % count] (NULL entry: the
 * batch's cgroup, as above). Every path is opened now, with the errors above (the
 * first failure wins; nothing changes then); count 0 clears them. A request to a proxy
 * carries one cgroup: consecutive instances with the same cgroup share one. Where the
 * kernel lacks clone3 or CLONE_INTO_CGROUP (before Linux 5.7, or a seccomp profile that
 * refuses clone3 with ENOSYS), the child moves itself there (writes "0" to the cgroup's
 * cgroup.procs) before exec: then pids.max does not limit that fork (migration is not
 * charged against it; memory.max applies from the move on), and a refused move fails
 * the instance with the write's errno. */
PSPAWN_API int pspawn_attr_set_cgroup_per_instance(pspawn_attr_t *attr, const char *const *paths, int count);
#ifdef __USE_GNU /* cpu_set_t: define _GNU_SOURCE before any #include to get these */
/* CPU placement: every instance on `set` ... */
PSPAWN_API int pspawn_attr_set_cpus(pspawn_attr_t *attr, const cpu_set_t *set);
/* ... or instance i on sets[i % count] ("instance i on core i"). */
PSPAWN_API int pspawn_attr_set_cpus_per_instance(pspawn_attr_t *attr, const cpu_set_t *sets, int count);
#endif

/* pspawn_ne with options (attr may be NULL). stdio_fds, if not NULL, has 3 * nspawns
 * entries: the caller's pipe ends, -1 where no pipe was asked for or the instance failed.
 * Anything that fails in the child before main (chdir, open, setrlimit, affinity, ...)
 * is that instance's error, as posix_spawn reports exec failures; such a child never
 * runs main and is reaped by the call. Return value as pspawn_n.
 * Without options (pspawn, pspawn_n, pspawn_e, pspawn_ne) the call returns as soon as
 * the children exist, before their set-up: a child whose start-up image cannot be built
 * (out of memory) exits with status 127 before main, like a fork+exec child whose exec
 * failed after the fork. Pass an (empty) attr when that must be reported as an error. */
PSPAWN_API int pspawn_nx(pid_t *pids, int *errors, int *stdio_fds, pspawn_context_t *ctx,
                         int nspawns, char *const argv[], char *const envp[],
                         const pspawn_attr_t *attr);

/* One instance with options; stdio_fds (3 entries) may be NULL. */
PSPAWN_API pid_t pspawn_x(pspawn_context_t *ctx, char *const argv[], char *const envp[],
                          const pspawn_attr_t *attr, int stdio_fds[3]);

/* ---- Vector spawn: every instance with its own argv, environment and CPUs --------- */

/* Spawns instances[0..n-1] (see pspawn_instance_t above): argv NULL = the context path
 * as argv[0] alone; envp NULL = the caller's environ at the time of the call; cpus NULL
 * = no placement of its own (an attr's CPU sets, set with pspawn_attr_set_cpus*, apply
 * then: instance i on sets[i % count]). `attr` options apply to every instance; pipes
 * (pspawn_attr_stdio_pipe) are EINVAL here (use pspawn_nx). Instances that share the
 * same argv and envp arrays (the same pointers, consecutively) travel once.
 * Batches larger than the shared buffer are split: never E2BIG for a batch whose every
 * instance would fit alone. A failure of one instance fails that instance only: a CPU
 * set the kernel refuses (offline, not allowed, empty: EINVAL), chdir/open/setrlimit
 * errors, strings too large for execve (E2BIG).
 * Fills pids[i] (> 0, or -1) and errors[i] (0, or the errno; errors may be NULL) for
 * every i, and returns how many started (0 included: then errno is the first failed
 * instance's error); -1 with errno EINVAL only for bad arguments (NULL ctx/pids,
 * instances NULL with n > 0, n < 0 or > PSPAWN_MAX_SPAWNS, pipes in attr). */
PSPAWN_API int pspawn_vector(pid_t *pids, int *errors, pspawn_context_t *ctx,
                             const pspawn_instance_t *instances, int n, const pspawn_attr_t *attr);

/* An asynchronous vector spawn. */
typedef struct pspawn_session pspawn_session_t;

/* Starts pspawn_vector in the background and returns 0 at once (or -1 with errno:
 * EINVAL as pspawn_vector, ENOMEM, EAGAIN if no thread could be started). The session
 * owns copies of everything it needs (strings, CPU sets, attr, with its descriptors
 * duplicated; the caller's environ is copied now for instances with NULL envp): the
 * caller may free or change its arrays and attr as soon as this returns.
 * The context must outlive the session: pspawn_context_destroy waits for sessions that
 * are still launching. */
PSPAWN_API int pspawn_vector_async(pspawn_session_t **session, pspawn_context_t *ctx,
                                   const pspawn_instance_t *instances, int n, const pspawn_attr_t *attr);
/* An eventfd that becomes readable once every instance is done (started or failed) and
 * stays readable; poll/epoll it, do not read it. Owned by the session. */
PSPAWN_API int pspawn_session_fd(pspawn_session_t *s);
/* Waits until every instance is done: 0, or -1 with ETIMEDOUT (timeout_ms; -1 = no
 * limit, 0 = just check). */
PSPAWN_API int pspawn_session_wait(pspawn_session_t *s, int timeout_ms);
/* Once done: copies pids and errors (n entries each; either may be NULL) and returns how
 * many started. Before that: -1 with EAGAIN. May be called any number of times. */
PSPAWN_API int pspawn_session_results(pspawn_session_t *s, pid_t *pids, int *errors);
/* Stops launching: instances not yet handed to a proxy fail with ECANCELED; those in
 * flight complete normally (started ones are reported). Never kills anything. The
 * session still becomes done; wait, then read the results. */
PSPAWN_API void pspawn_session_cancel(pspawn_session_t *s);
/* Releases the session. Never kills started children. Before completion it is
 * pspawn_session_cancel, then a wait for the requests in flight (bounded by the request
 * timeout), then the release: when it returns, no instance of the session can still
 * appear. Children started by a session are the caller's children in every case
 * (waitpid, pidfds; pspawn_waitpid in relay mode); a caller that may free a session
 * early and needs their pids calls cancel, wait and results first. NULL-safe. */
PSPAWN_API void pspawn_session_free(pspawn_session_t *s);

/* Which backend serves a request of this context with these options (NULL: none), as
 * a mode: PSPAWN_MODE_KERNEL if the kernel path does, else pspawn_context_mode. The
 * choice depends only on the context and the options, so this is what served (or will
 * serve) every pspawn, pspawn_n, pspawn_nx, pspawn_vector and pspawn_vector_async call
 * with them. -1 with EINVAL (NULL or destroyed context) or ENOTSUP (a
 * PSPAWN_KERNEL_REQUIRE context and options the kernel cannot express). */
PSPAWN_API int pspawn_request_mode(const pspawn_context_t *ctx, const pspawn_attr_t *attr);

/* The mode that served the session (as pspawn_request_mode), or -1 with EINVAL. */
PSPAWN_API int pspawn_session_mode(pspawn_session_t *s);

/* One round trip to the proxy without forking: a liveness check (0, or -1 with EPIPE
 * / ETIMEDOUT; 0 at once in fallback mode) and the measure of the protocol's cost. */
PSPAWN_API int pspawn_context_ping(pspawn_context_t *ctx);

/* Library version, "MAJOR.MINOR.PATCH". */
PSPAWN_API const char *pspawn_version(void);

#ifdef __cplusplus
}
#endif

#endif /* PSPAWN_H */
