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

/* One proxy and the channel to it. A context owns one today; multi-proxy contexts
 * (per core group / NUMA node) will own several and dispatch between them. */
struct psp_channel {
    pthread_mutex_t lock;     /* one request in flight */
    struct psp_shared *shared;
    size_t size;
    int segment_fd;
    int reply_fd;             /* eventfd the proxy writes when a request completes */
    int socket_fd;            /* SOCK_SEQPACKET to the proxy, for SCM_RIGHTS */
    int proxy_pidfd;
    pid_t proxy_pid;
    int doorbell_signo;
    int request_timeout_ms;
    bool relay;
    bool broken;              /* proxy dead or unresponsive: every request fails EPIPE */
    size_t exec_path_bytes;   /* the executable's path with its NUL, for psp_exceeds_arg_limits */
};

struct pspawn_impl {
    char *path;
    pspawn_mode_t mode;
    int fallback_reason;
    int core;
    int restarts;
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

/* proxy_start.c */
int psp_find_proxy_library(const pspawn_context_attr_t *attr, char **out_path);
int psp_channel_start(struct psp_channel *ch, const char *path, const char *proxy_library,
                      const pspawn_context_attr_t *attr, bool relay);
void psp_channel_stop(struct psp_channel *ch);

/* channel.c: fork `count` instances through the proxy. pids[i] = pid or -1,
 * errors[i] = 0 or errno, stdio_fds[3i+k] = the caller's pipe end or -1 (stdio_fds may
 * be NULL only without pipes). Returns the number started. */
int psp_channel_spawn(struct psp_channel *ch, char *const argv[], char *const envp[], int count,
                      const pspawn_attr_t *attr, pid_t *pids, int *errors, int *stdio_fds);
/* One round trip without a fork. Returns 0 or an errno (the channel is then broken). */
int psp_channel_ping(struct psp_channel *ch);
/* Wake the proxy without a request (it then reaps consumed relay children). */
void psp_channel_ring(struct psp_channel *ch);

/* spawn.c */
/* Every signal default and none blocked in the child, as after exec from a clean
 * process; returns the flags to set. */
short psp_spawnattr_default_signals(posix_spawnattr_t *sa);
int psp_fallback_spawn(struct pspawn_impl *impl, char *const argv[], char *const envp[],
                       int count, const pspawn_attr_t *attr, pid_t *pids, int *errors, int *stdio_fds);

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t psp_now_ms(void);

#endif
