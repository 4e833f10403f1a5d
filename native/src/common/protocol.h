/*
 * The launcher <-> proxy protocol: layout of the shared segment (a sealed memfd) and
 * the codec for spawn requests. Both sides include this file; the proxy treats every
 * byte of the segment as untrusted input and validates it before use.
 *
 * Segment:  [ psp_shared header | relay table | results | strings ]
 * One request is in flight per proxy: the launcher writes it, bumps request_seq and
 * rings the doorbell (an eventfd); the proxy forks, writes one result per instance (pid
 * or -errno) and bumps `progress` after each, then sets reply_seq and writes the reply
 * eventfd.
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
#define PSP_PROTOCOL_VERSION 2u

/* The proxy finds its configuration in this variable (removed before main runs):
 * "2:<launcher pid>:<PSP_CONFIG_* flags>". */
#define PSP_ENV_CONFIG "PSPAWN_PROXY_CONFIG"
#define PSP_CONFIG_RELAY 0x1u
#define PSP_CONFIG_PREFAULT 0x2u

/* Instances one request may carry (= PSPAWN_MAX_SPAWNS, the most one call may ask for). */
#define PSP_MAX_COUNT (1u << 20)
/* Descriptors per SCM_RIGHTS message (the kernel's SCM_MAX_FD is 253). */
#define PSP_MAX_FDS_PER_MESSAGE 250

/* Descriptors the proxy inherits at fixed numbers. The segment is not among them: it
 * is the first message on the socket. */
#define PSP_FD_REPLY 3    /* eventfd: the proxy writes it when a request is complete */
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
};

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
};

struct psp_request {
    uint32_t count;          /* instances to fork; 0 = ping, nothing else is read */
    uint32_t flags;          /* PSP_REQ_* */
    uint32_t argc;
    uint32_t envc;
    uint64_t strings_offset; /* argv strings then env strings, each NUL-terminated */
    uint64_t strings_length;
    uint64_t results_offset; /* int32_t[count]: pid, or -errno if not forked */
    uint64_t errors_offset;  /* int32_t[count]: errno of a child that failed before main */
    uint64_t options_offset; /* struct psp_wire_options + strings, with PSP_REQ_OPTIONS */
    uint64_t options_length;
    uint32_t fd_count;       /* descriptors sent over the socket for this request */
    uint32_t reserved;
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
    uint64_t data_offset;           /* first byte usable for results and strings */
    _Atomic uint64_t request_seq;   /* written by the launcher */
    _Atomic uint64_t reply_seq;     /* written by the proxy when a request is complete */
    _Atomic uint32_t progress;      /* results written for the current request */
    _Atomic int32_t reply_error;    /* errno for every instance past `progress` */
    _Atomic uint32_t relay_generation; /* futex word: bumped when a relayed child exits */
    struct psp_request request;
};

/* A decoded request, with pointers into a private copy of the strings. */
struct psp_decoded {
    uint32_t count;
    uint64_t results_offset; /* validated copies, never re-read from the segment */
    uint64_t errors_offset;
    uint32_t fd_count;
    struct psp_wire_options *options; /* NULL without PSP_REQ_OPTIONS; private copy */
    char **argv; /* argc entries + NULL */
    char **envp; /* envc entries + NULL */
    char *strings;
    size_t strings_length;
    int argc;
    int envc;
};

/* Bytes needed to encode argv + envp (strings with terminators). Sets *argc and *envc.
 * Returns 0, or -1 with errno EINVAL (NULL entry array) / E2BIG (overflow). */
int psp_measure(char *const argv[], char *const envp[], size_t *bytes, int *argc, int *envc);

/* Copy the strings of argv then envp, NUL-terminated, into dst (exactly `bytes` long). */
void psp_pack(char *dst, char *const argv[], char *const envp[]);

/* Validate the request in `shared` (a mapping of `mapped_size` bytes) and decode it
 * into freshly allocated private memory. Every offset, length and count is checked;
 * the strings are copied before validation so the launcher cannot change them under
 * us. Returns 0, or an errno (EINVAL for malformed, ENOMEM). */
int psp_decode_request(const struct psp_shared *shared, size_t mapped_size, struct psp_decoded *out);

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

#endif /* PSPAWN_PROTOCOL_H */
