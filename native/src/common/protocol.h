/*
 * The launcher <-> proxy protocol: layout of the shared segment (a sealed memfd) and
 * the codec for spawn requests. Both sides include this file; the proxy treats every
 * byte of the segment as untrusted input and validates it before use.
 *
 * Segment:  [ psp_shared header + ring of PSP_RING_SLOTS slots | relay table | data ]
 * Up to PSP_RING_SLOTS requests are in flight per proxy, each in its own slot with its
 * own region of the data area (sets, strings, instances, CPU sets, options, results,
 * errors). The launcher writes a request, publishes its ticket and rings the doorbell
 * (an eventfd); the proxy forks, writes one result per instance (pid or -errno) and
 * bumps the slot's `progress` after each, then sets the slot's reply_seq and writes
 * the slot's reply eventfd (sent to it over the socket after the segment).
 *
 * Who can reach the channel: the segment travels to the proxy over the socket pair
 * (SCM_RIGHTS) and neither side keeps a descriptor of it once it is mapped; eventfds and
 * sockets cannot be reopened through /proc/<pid>/fd; and the proxy is not dumpable, so
 * its /proc files belong to root. A process of the same user without ptrace rights over
 * the launcher can neither write a request nor ring the doorbell (docs/design.md).
 */
#ifndef PSPAWN_PROTOCOL_H
#define PSPAWN_PROTOCOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PSP_MAGIC 0x50535057u /* "PSPW" */
#define PSP_PROTOCOL_VERSION 5u

/* The proxy finds its configuration in this variable (removed before main runs):
 * "4:<launcher pid>:<PSP_CONFIG_* flags>". */
#define PSP_ENV_CONFIG "PSPAWN_PROXY_CONFIG"
#define PSP_CONFIG_RELAY 0x1u
#define PSP_CONFIG_PREFAULT 0x2u
#define PSP_CONFIG_DEFERRED 0x4u /* freeze at pspawn_ready(), not before main */
#define PSP_CONFIG_WATCH_IMAGE 0x8u /* refuse requests (ESTALE) once a file of the image changed */
#define PSP_CONFIG_MERGE_TEXT 0x10u /* read-only file pages beside text get its protection */

/* Instances one request may carry (= PSPAWN_MAX_SPAWNS, the most one call may ask for). */
#define PSP_MAX_COUNT (1u << 20)
/* Descriptors per SCM_RIGHTS message (the kernel's SCM_MAX_FD is 253). */
#define PSP_MAX_FDS_PER_MESSAGE 250

/* Descriptors the proxy inherits at fixed numbers. The segment is not among them: it
 * is the first message on the socket. */
#define PSP_FD_REPLY 3    /* eventfd: start-up handshake (requests: one eventfd per slot) */
#define PSP_FD_DOORBELL 4 /* eventfd: the launcher writes it when a request is ready */
#define PSP_FD_SOCKET 5   /* SOCK_SEQPACKET: descriptors travel here with SCM_RIGHTS; its
                             hang-up means the launcher is gone or destroying the context */
#define PSP_FD_FIRST_FREE 6

enum psp_state {
    PSP_STATE_STARTING = 0,
    PSP_STATE_READY = 1,
    PSP_STATE_FAILED = 2, /* startup_error says why */
};

enum psp_relay_state {
    PSP_RELAY_FREE = 0,
    PSP_RELAY_RUNNING = 1,  /* forked, not exited */
    PSP_RELAY_EXITED = 2,   /* status recorded, zombie kept until the launcher read it */
    PSP_RELAY_CONSUMED = 3, /* launcher read the status; proxy may reap */
};

struct psp_relay_slot {
    _Atomic int32_t state;
    _Atomic int32_t pid;
    _Atomic int32_t wstatus;
    int32_t reserved;
};

/* Per-spawn options, present when request.flags has PSP_REQ_OPTIONS. Strings (paths)
 * live in the same blob after this struct, at offsets relative to the blob. */
#define PSP_REQ_OPTIONS 0x1u
/* The request's last descriptor is a cgroup v2 directory: every child is created in it
 * (clone3 with CLONE_INTO_CGROUP). */
#define PSP_REQ_CGROUP 0x2u
#define PSP_MAX_RLIMITS 16
#define PSP_MAX_PATH 4096

enum psp_stdio_kind {
    PSP_STDIO_INHERIT = 0,
    PSP_STDIO_NULL = 1,
    PSP_STDIO_FILE = 2, /* open(path, oflags, mode) in the child */
    PSP_STDIO_FD = 3,   /* a launcher descriptor: shared slot `slot` */
    PSP_STDIO_PIPE = 4, /* a pipe end per instance: per-instance slot `slot` */
};

enum psp_option_bits {
    PSP_OPT_CWD = 1u << 0,
    PSP_OPT_UMASK = 1u << 1,
    PSP_OPT_PGROUP = 1u << 2,
    PSP_OPT_SETSID = 1u << 3,
    PSP_OPT_PDEATHSIG = 1u << 4,
    PSP_OPT_CPUS = 1u << 5,
    PSP_OPT_NUMA_LOCAL = 1u << 6, /* keep the proxy's memory policy (node-local memory) */
    /* Exact child state, as after posix_spawn (used by the interceptor, src/intercept): */
    PSP_OPT_FDMAP = 1u << 7,   /* the child's descriptors are exactly the map: shared slot i
                                  at fd fdmap[i], every other descriptor (0-2 too) closed;
                                  stdio must be INHERIT, no per-instance descriptors */
    PSP_OPT_SIGMASK = 1u << 8, /* the child's signal mask (bit s-1 = signal s), not the target's at main */
    PSP_OPT_SIGIGN = 1u << 9,  /* signals the child ignores (SIG_IGN), as exec keeps them */
    PSP_OPT_REPLY_EARLY = 1u << 10, /* reply at the clone when no set-up step can fail
                                       (psp_setup_may_fail): the image's own failure (out of
                                       memory) is then exit 127, as without options */
};

/* The most entries of a descriptor map, and the bound of its target numbers. */
#define PSP_MAX_FDMAP 256
#define PSP_MAX_FD_TARGET 4096

struct psp_wire_stdio {
    int32_t kind;
    int32_t slot;
    int32_t oflags;
    uint32_t mode;
    uint32_t path_offset;
    uint32_t path_length; /* without the terminator, which must follow */
};

struct psp_wire_rlimit {
    int32_t resource;
    int32_t reserved;
    uint64_t soft;
    uint64_t hard;
};

struct psp_wire_options {
    uint32_t set;              /* PSP_OPT_* */
    uint32_t umask;
    int32_t pgroup;            /* 0: a new group led by the child; > 0: join it */
    int32_t pdeathsig;
    struct psp_wire_stdio stdio[3];
    uint32_t cwd_offset;
    uint32_t cwd_length;
    uint32_t rlimit_count;
    uint32_t shared_fds;       /* descriptors common to every instance */
    uint32_t instance_fds;     /* descriptors per instance (pipe ends), after the shared */
    uint32_t cpuset_count;     /* sets of cpuset_size bytes; instance i uses i % count */
    uint32_t cpuset_size;
    uint32_t cpusets_offset;
    struct psp_wire_rlimit rlimits[PSP_MAX_RLIMITS];
    uint32_t fdmap_count;      /* PSP_OPT_FDMAP: int32_t targets at fdmap_offset */
    uint32_t fdmap_offset;
    uint64_t sigmask;          /* PSP_OPT_SIGMASK */
    uint64_t sigignore;        /* PSP_OPT_SIGIGN */
};

/* One argv/envp pair of a request ("string set"): instances refer to sets by index, so
 * a batch whose instances share one argv/envp carries those strings once. */
struct psp_wire_set {
    uint32_t argc; /* >= 1 */
    uint32_t envc;
};

/* One instance of a request: its string set and its CPU set (-1: no placement). */
struct psp_wire_instance {
    uint32_t set;
    int32_t cpuset;
};

/* A request, in its ring slot. Every offset is absolute in the segment and must lie in
 * the slot's region; the region must lie in the data area. */
struct psp_request {
    uint32_t count;            /* instances to fork; 0 = ping, nothing else is read */
    uint32_t flags;            /* PSP_REQ_* */
    uint32_t set_count;        /* string sets, 1..count */
    uint32_t cpuset_count;     /* distinct per-instance CPU sets (0: none) */
    uint32_t cpuset_size;      /* bytes per CPU set, 8..1024, a multiple of 8 */
    uint32_t fd_count;         /* descriptors sent over the socket for this request */
    uint64_t region_offset;    /* the slot's part of the data area for this request */
    uint64_t region_length;
    uint64_t sets_offset;      /* struct psp_wire_set[set_count] */
    uint64_t strings_offset;   /* per set: argv strings then env strings, NUL-terminated */
    uint64_t strings_length;
    uint64_t instances_offset; /* struct psp_wire_instance[count]; 0 = every instance uses
                                  set 0 and no CPU set (requires set_count == 1, cpuset_count 0) */
    uint64_t cpusets_offset;   /* cpuset_count sets of cpuset_size bytes */
    uint64_t results_offset;   /* int32_t[count]: pid, or -errno if not forked */
    uint64_t errors_offset;    /* int32_t[count]: errno of a child that failed before main */
    uint64_t options_offset;   /* struct psp_wire_options + strings, with PSP_REQ_OPTIONS */
    uint64_t options_length;
};

/* The ring: several requests in flight per proxy. A slot belongs to one launcher thread
 * from submission to collection (allocation is the launcher's business, not in the
 * segment). The launcher writes `request`, resets progress/reply_error, then publishes
 * request_seq (a ticket, increasing over the whole channel); the proxy serves pending
 * slots in ticket order (descriptors travel in that order on the socket), writes one
 * result per instance, bumps `progress`, then sets reply_seq = request_seq and writes
 * the slot's reply eventfd. */
#define PSP_RING_SLOTS 4u
struct psp_slot {
    _Atomic uint64_t request_seq; /* written by the launcher */
    _Atomic uint64_t reply_seq;   /* written by the proxy when the request is complete */
    _Atomic uint32_t progress;    /* results written for the current request */
    _Atomic int32_t reply_error;  /* errno for every instance past `progress` */
    struct psp_request request;
};

struct psp_shared {
    uint32_t magic;
    uint32_t version;
    uint64_t size;                  /* bytes in the segment */
    int32_t launcher_pid;
    uint32_t relay;                 /* 1: proxy stays the parent and relays exit status */
    _Atomic int32_t proxy_pid;
    _Atomic int32_t state;          /* enum psp_state */
    _Atomic int32_t startup_error;  /* errno when state == FAILED */
    uint32_t relay_capacity;
    uint64_t relay_offset;          /* struct psp_relay_slot[relay_capacity] */
    uint64_t data_offset;           /* first byte usable for requests (after the ring) */
    _Atomic uint32_t relay_generation; /* futex word: bumped when a relayed child exits */
    uint32_t slot_count;            /* PSP_RING_SLOTS */
    struct psp_slot slots[PSP_RING_SLOTS];
    /* Where a child without a CPU set of its own runs: a proxy pinned to its share of
     * the CPUs gives such children the launcher's whole affinity mask at context
     * creation (one sched_setaffinity right after clone). child_cpus_set 0: children
     * keep the proxy's affinity (one unpinned proxy, or one pinned to `core`). */
    uint32_t child_cpus_set;
    uint32_t child_flags;           /* PSP_CHILD_*: what every child does after clone */
    uint64_t child_cpus[16];        /* a cpu_set_t (1024 CPUs) */
    /* Warm pool (zygote mode only, 0 otherwise): pool_capacity parked children, their
     * table at pool_offset (between the relay table and the data area). */
    uint32_t pool_capacity;
    uint32_t pool_idle_ms;          /* trim parked children after this long without a claim; 0 never */
    uint64_t pool_offset;           /* struct psp_pool_slot[pool_capacity] */
};

/* ---- Warm pool: children forked ahead of time, parked before main ---------------------
 * Each slot holds one parked child (a child of the launcher, CLONE_PARENT). The launcher
 * claims it by writing argv/envp/CPU set into the slot and writing the slot's eventfd
 * (the third message on the socket: one per slot); the child copies and validates them,
 * marks the slot TAKEN (or REPORTED, when the launcher waits for its CPU placement) and
 * rings the proxy's doorbell, which then refills the slot. See docs/design.md. */
#define PSP_POOL_MAX 64u
#define PSP_POOL_DATA (64u << 10) /* argv + envp strings one claim may carry */
#define PSP_POOL_REPORT 0x1u      /* the launcher waits for the child's set-up report (CPU set,
                                     /dev/null stdio) */

enum psp_pool_state {
    PSP_POOL_FREE = 0,     /* proxy: may fork into it */
    PSP_POOL_FORKING = 1,  /* proxy: cloning (pid written by the kernel) */
    PSP_POOL_PARKED = 2,   /* child waits for a claim */
    PSP_POOL_CLAIMING = 3, /* launcher: checking and writing the claim */
    PSP_POOL_CLAIMED = 4,  /* launcher: claim written, child woken */
    PSP_POOL_TAKEN = 5,    /* child (or launcher after REPORTED): slot may be refilled */
    PSP_POOL_REPORTED = 6, /* child: `error` says how its placement went */
    PSP_POOL_DEAD = 7,     /* proxy: a parked child died; the launcher reaps it */
    PSP_POOL_GONE = 8,     /* launcher: reaped (DEAD, or TRIM and exited); proxy frees the slot */
    PSP_POOL_TRIM = 9,     /* proxy: idle, the child exits (then DEAD) */
    PSP_POOL_HANDED = 10,  /* proxy: the child takes a request of the proxy's (then FREE) */
};

struct psp_pool_slot {
    _Atomic int32_t state;   /* enum psp_pool_state; futex word for REPORTED */
    _Atomic int32_t pid;     /* written by the kernel at clone (CLONE_PARENT_SETTID) */
    _Atomic int32_t error;   /* REPORTED: errno of the placement, 0 ok */
    uint32_t flags;          /* PSP_POOL_REPORT */
    uint32_t argc;           /* >= 1 */
    uint32_t envc;
    uint32_t strings_length; /* argv then envp strings, NUL-terminated, <= PSP_POOL_DATA */
    uint32_t cpuset_size;    /* 0: no CPU set; else bytes of `cpuset` used (8..128) */
    uint32_t stdio_null;     /* bit k: descriptor k (0-2) becomes /dev/null */
    uint32_t reserved;
    uint64_t cpuset[16];
    char strings[PSP_POOL_DATA];
};

static inline struct psp_pool_slot *psp_pool_table(struct psp_shared *shared)
{
    return (struct psp_pool_slot *)((char *)shared + shared->pool_offset);
}

/* child_flags: the proxy's memory policy is node-bound; children reset it to
 * MPOL_DEFAULT unless their options have PSP_OPT_NUMA_LOCAL. */
#define PSP_CHILD_RESET_MEMPOLICY 0x1u

/* One decoded string set, pointing into the private copy of the strings. */
struct psp_decoded_set {
    char **argv; /* argc entries + NULL */
    char **envp; /* envc entries + NULL */
    int argc;
    int envc;
};

/* A decoded request, with pointers into private copies. */
struct psp_decoded {
    uint32_t count;
    uint64_t results_offset; /* validated copies, never re-read from the segment */
    uint64_t errors_offset;
    uint32_t fd_count;
    bool cgroup;                      /* PSP_REQ_CGROUP: the last descriptor */
    struct psp_wire_options *options; /* NULL without PSP_REQ_OPTIONS; private copy */
    /* The instance a child runs: set 0 after decoding; serve.c points them at the
     * instance's set in each child before psp_child_prepare. */
    char **argv;
    char **envp;
    int argc;
    int envc;
    char *strings;
    size_t strings_length;
    uint32_t set_count;
    struct psp_decoded_set *sets;
    char **pointers;                     /* backing of every set's argv/envp */
    struct psp_wire_instance *instances; /* private copy; NULL: all set 0, no CPU set */
    uint32_t cpuset_count;
    uint32_t cpuset_size;
    unsigned char *cpusets;              /* private copy, cpuset_count * cpuset_size */
};

/* Bytes needed to encode argv + envp (strings with terminators). Sets *argc and *envc.
 * Returns 0, or -1 with errno EINVAL (NULL entry array) / E2BIG (overflow). */
int psp_measure(char *const argv[], char *const envp[], size_t *bytes, int *argc, int *envc);

/* Copy the strings of argv then envp, NUL-terminated, into dst (exactly `bytes` long). */
void psp_pack(char *dst, char *const argv[], char *const envp[]);

/* Validate the request in slot `slot` of `shared` (a mapping of `mapped_size` bytes) and decode it
 * into freshly allocated private memory. Every offset, length and count is checked;
 * the strings are copied before validation so the launcher cannot change them under
 * us. Returns 0, or an errno (EINVAL for malformed, ENOMEM). */
int psp_decode_request(const struct psp_shared *shared, size_t mapped_size, uint32_t slot,
                       struct psp_decoded *out);

void psp_decoded_free(struct psp_decoded *decoded);

/* Check a private copy of an options blob of `length` bytes for `count` instances and
 * `fd_count` received descriptors. Returns 0 or EINVAL. */
int psp_validate_options(const struct psp_wire_options *o, size_t length, uint32_t count, uint32_t fd_count);

static inline _Atomic int32_t *psp_results(struct psp_shared *shared, uint64_t results_offset)
{
    return (_Atomic int32_t *)((char *)shared + results_offset);
}

static inline _Atomic int32_t *psp_errors(struct psp_shared *shared, uint64_t errors_offset)
{
    return (_Atomic int32_t *)((char *)shared + errors_offset);
}

static inline const char *psp_option_string(const struct psp_wire_options *o, uint32_t offset)
{
    return (const char *)o + offset;
}

static inline struct psp_relay_slot *psp_relay_table(struct psp_shared *shared)
{
    return (struct psp_relay_slot *)((char *)shared + shared->relay_offset);
}

/* Reads an eventfd's counter (the doorbell, a reply), retrying EINTR; EAGAIN when empty. */
void psp_drain_eventfd(int fd);

#endif /* PSPAWN_PROTOCOL_H */
