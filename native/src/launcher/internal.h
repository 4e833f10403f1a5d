/* Launcher-side internals shared by the files of libpspawn. */
#ifndef PSPAWN_LAUNCHER_INTERNAL_H
#define PSPAWN_LAUNCHER_INTERNAL_H

#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/protocol.h"
#include "pspawn.h"

#define PSP_DEFAULT_STARTUP_TIMEOUT_MS 10000
#define PSP_DEFAULT_REQUEST_TIMEOUT_MS 60000
#define PSP_DEFAULT_BUFFER_SIZE (4u << 20)
#define PSP_MIN_BUFFER_SIZE (64u << 10)
#define PSP_RELAY_CAPACITY 4096u
#define PSP_DEFAULT_MAX_RESTARTS 8
/* How long stopping a proxy may wait for it to be gone. */
#define PSP_TERMINATE_TIMEOUT_MS 2000

_Static_assert(PSPAWN_MAX_SPAWNS == PSP_MAX_COUNT, "one call's limit is one request's limit");

struct psp_attr_stdio {
    int kind; /* enum psp_stdio_kind */
    char *path;
    int oflags;
    mode_t mode;
    int caller_fd;
};

struct pspawn_attr {
    uint32_t set; /* PSP_OPT_* (CWD is implied by cwd != NULL) */
    struct psp_attr_stdio stdio[3];
    char *cwd;
    mode_t umask;
    pid_t pgroup;
    int pdeathsig;
    uint32_t rlimit_count;
    struct psp_wire_rlimit rlimits[PSP_MAX_RLIMITS];
    cpu_set_t *cpusets;
    int cpuset_count;
};

/* attr.c: the wire form of options (struct psp_wire_options + strings + CPU sets). */
size_t psp_attr_wire_size(const pspawn_attr_t *attr);
/* Writes the blob; fills shared_fds[] (3 entries) with the caller descriptors to send. */
void psp_attr_encode(const pspawn_attr_t *attr, void *dst, int *shared_fds);
int psp_attr_pipe_count(const pspawn_attr_t *attr);

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

/* One proxy and the channel to it. A context owns one today; multi-proxy contexts
 * (per core group / NUMA node) will own several and dispatch between them. */
struct psp_channel {
    pthread_mutex_t lock;     /* one request in flight; also serializes restarts */
    struct psp_proxy_config config;
    struct psp_credentials credentials;
    struct psp_shared *shared;
    size_t size;
    int reply_fd;             /* eventfd the proxy writes when a request completes */
    int doorbell_fd;          /* eventfd we write when a request is ready */
    int socket_fd;            /* SOCK_SEQPACKET to the proxy, for SCM_RIGHTS; closing it
                                 stops the proxy (even one we may not signal) */
    int proxy_pidfd;
    pid_t proxy_pid;
    bool broken;              /* proxy dead or unresponsive: restarted on the next request */
    _Atomic int restarts;
    struct psp_retired_segment *retired;
};

struct pspawn_impl {
    char *path;
    pspawn_mode_t mode;
    int fallback_reason;
    int core;
    struct psp_channel channel;
};

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

/* credentials.c */
int psp_credentials_read(struct psp_credentials *out);
/* True if the calling process still has the credentials in `then`. */
bool psp_credentials_unchanged(const struct psp_credentials *then);

/* channel.c: fork `count` instances through the proxy. pids[i] = pid or -1,
 * errors[i] = 0 or errno, stdio_fds[3i+k] = the caller's pipe end or -1 (stdio_fds may
 * be NULL only without pipes). Returns the number started. */
int psp_channel_spawn(struct psp_channel *ch, char *const argv[], char *const envp[], int count,
                      const pspawn_attr_t *attr, pid_t *pids, int *errors, int *stdio_fds);
/* One round trip without a fork. Returns 0 or an errno. */
int psp_channel_ping(struct psp_channel *ch);
/* Wake the proxy without a request (it then reaps consumed relay children). */
void psp_channel_ring(struct psp_channel *ch);
/* Sends `count` descriptors over the channel's socket. Returns 0 or an errno. */
int psp_send_fds(int socket_fd, const int *fds, int count);

/* spawn.c */
/* Every signal default and none blocked in the child, as after exec from a clean
 * process; returns the flags to set. */
short psp_spawnattr_default_signals(posix_spawnattr_t *sa);
int psp_fallback_spawn(struct pspawn_impl *impl, char *const argv[], char *const envp[],
                       int count, const pspawn_attr_t *attr, pid_t *pids, int *errors, int *stdio_fds);

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t psp_now_ms(void);

#endif
