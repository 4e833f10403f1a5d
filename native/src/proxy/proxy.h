/* Proxy-side internals of libpspawn_proxy. */
#ifndef PSPAWN_PROXY_H
#define PSPAWN_PROXY_H

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/protocol.h"

typedef int (*psp_main_fn)(int, char **, char **);

/* Pairs of the auxiliary vector we keep (the kernel has fewer: AT_VECTOR_SIZE). */
#define PSP_AUXV_MAX 64
#define PSP_RANDOM_BYTES 16 /* AT_RANDOM's size */

/* What every child's start-up image is built from, read once at the proxy's start-up
 * (image.c). */
struct psp_image_base {
    unsigned long auxv[2 * PSP_AUXV_MAX]; /* the proxy's auxiliary vector, AT_NULL included */
    size_t auxv_words;
    unsigned char *at_random;             /* the bytes getauxval(AT_RANDOM) points to */
    /* The proxy's memory map as PR_SET_MM_MAP must be given it (/proc/self/stat). */
    unsigned long start_code, end_code, start_data, end_data, start_brk, start_stack;
    bool set_mm;                          /* PR_SET_MM_MAP worked in the proxy */
};

/* The warm pool, proxy side (pool.c). */
struct psp_proxy_pool {
    struct psp_pool_slot *table;  /* in the segment; NULL: no pool */
    uint32_t capacity;
    uint32_t idle_ms;
    int claim_fds[PSP_POOL_MAX];  /* written by the launcher to wake a claimed child */
    int pidfds[PSP_POOL_MAX];     /* of each slot's child, while we watch it */
    int hand_fds[PSP_POOL_MAX];   /* our end of each parked child's socket (psp_pool_hand) */
    int death_pipe[2];            /* we hold the write end: parked children see it hang up */
    int64_t last_activity_ms;     /* last doorbell: trimming counts from here */
    int64_t retry_at_ms;          /* a refused fork (RLIMIT_NPROC, memory) is retried then */
    int64_t quiet_until_ms;       /* no refill right after a claim (see refill_at) */
    bool trimmed;                 /* idle: not refilled until the next doorbell */
};

struct psp_proxy {
    psp_main_fn target_main;
    pid_t launcher_pid;
    bool relay;
    bool prefault;
    bool watch_image;       /* PSP_CONFIG_WATCH_IMAGE (image_watch.c) */
    bool merge_text;        /* PSP_CONFIG_MERGE_TEXT (merge_text.c) */
    int image_watch_fd;     /* its inotify descriptor, or -1 */
    bool image_stale;       /* a file of the image changed: every request gets ESTALE */
    struct psp_shared *shared;
    size_t size;
    int reply_fd;
    int doorbell_fd;
    int socket_fd;
    int slot_fds[PSP_RING_SLOTS]; /* reply eventfd of each ring slot */
    uint64_t served[PSP_RING_SLOTS]; /* last ticket served per slot (private) */
    int signal_fd;          /* relay mode: SIGCHLD; else -1 */
    int launcher_pidfd;
    pid_t *tid_field;       /* glibc's cached tid of this thread, updated by the kernel in
                               each child (CLONE_CHILD_SETTID); NULL if not found */
    void *robust_head;      /* this thread's robust-futex list, re-registered in children */
    size_t robust_len;
    sigset_t saved_mask;    /* the signal mask the target had when it reached main */
    char *library_path;     /* our own path, stripped from children's LD_PRELOAD */
    int saved_dumpable;     /* PR_GET_DUMPABLE before the proxy made itself non-dumpable;
                               children restore it right before main */
    struct psp_image_base image;
    bool reset_cpus;        /* children without a CPU set get child_cpus (see psp_shared) */
    bool reset_mempolicy;   /* node-bound proxy: children reset their memory policy */
    int cgroup_placement;   /* PSP_CGROUP_*: how children get into a request's cgroup */
    cpu_set_t child_cpus;
    struct psp_proxy_pool pool;
    int fd_ceiling;         /* the highest descriptor the proxy held when it was ready */
    bool setup_proven;      /* a child got past set-up (the image is installable) */
};

/* cgroup_placement: not probed yet, clone3(CLONE_INTO_CGROUP), or (a kernel before 5.7,
 * or a seccomp profile refusing clone3) plain clone and the child moves itself. */
#define PSP_CGROUP_UNKNOWN 0
#define PSP_CGROUP_CLONE3 1
#define PSP_CGROUP_MOVE 2

/* entry.c: the one proxy of this process. */
extern struct psp_proxy psp_the_proxy;

/* descriptors.c: the descriptors of a request, received over PSP_FD_SOCKET. */
/* Receives exactly `count` descriptors (sent before the doorbell). Returns 0 or EPROTO /
 * EPIPE / errno; on failure the ones received so far are in fds[] (the rest are -1). */
int psp_receive_fds(int *fds, uint32_t count);
/* Closes whatever is queued: a rejected request's descriptors must never be reused. */
void psp_drain_fds(void);
void psp_close_fds(int *fds, uint32_t count);

/* maps.c: the proxy's mappings in address order (a malloc'd array), or an errno. */
struct psp_mapping {
    unsigned long start, end, offset, dev, inode; /* inode 0: not a file */
    int prot;                                     /* PROT_* */
    bool private_copy;                            /* MAP_PRIVATE */
};
int psp_read_mappings(struct psp_mapping **out, size_t *count);
/* prefault.c: make forks copy the page tables of file mappings (see there). */
void psp_prefault_mappings(void);
/* merge_text.c: read-only file pages next to text get its protection, so that the kernel
 * merges them (PSP_CONFIG_MERGE_TEXT); the number of areas changed, or -errno. */
int psp_merge_text(void);

/* image_watch.c: watch the image's files (0 or an errno); whether one changed since. */
int psp_image_watch_start(struct psp_proxy *p);
bool psp_image_changed(struct psp_proxy *p);

/* serve.c: set up, then serve requests. Returns only in a child, with the request whose
 * argv/envp it must run main with. Never returns in the proxy. */
void psp_serve(struct psp_proxy *p, struct psp_decoded *child_request);

/* clone.c: one child, a sibling of the proxy in zygote mode; the kernel writes its pid
 * into *result_slot. cgroup_fd >= 0: born in that cgroup. Returns as fork does. */
pid_t psp_clone_child(struct psp_proxy *p, _Atomic int32_t *result_slot, int cgroup_fd);
/* clone.c: how this kernel puts children into a cgroup (PSP_CGROUP_CLONE3 or _MOVE); the
 * move in a child (on failure {instance, errno} to error_fd, then _exit); the child
 * becoming instance `i` of the request (its argv/envp, its CPU set). */
int psp_probe_cgroup_placement(void);
void psp_move_into_cgroup(int cgroup_fd, uint32_t instance, int error_fd);
void psp_become_instance(const struct psp_proxy *p, struct psp_decoded *req, uint32_t i, int error_fd);

/* pool.c: the warm pool. */
/* At start-up, after the ring's eventfds: the header's pool, its claim eventfds (the
 * third message) and the death pipe. Returns 0 or an errno. */
int psp_pool_start(struct psp_proxy *p);
/* At start-up, before READY: forks every slot's child (a refused fork is retried later).
 * Returns true in a claimed child. */
bool psp_pool_fill(struct psp_proxy *p, struct psp_decoded *req);
/* The pidfds to watch: PSP_POOL_MAX entries at fds (unused ones -1); returns how many
 * entries the poll set takes (0 without a pool). */
int psp_pool_pollfds(struct psp_proxy *p, struct pollfd *fds);
/* The poll timeout the pool needs (ms, -1: none). */
int psp_pool_timeout(struct psp_proxy *p);
/* A request is served: the pool is in use (a trimmed pool refills). */
void psp_pool_activity(struct psp_proxy *p);
/* Between requests: watches deaths, frees taken slots, trims when idle, refills one
 * slot. Returns true in a claimed child, with its argv/envp in *req. */
bool psp_pool_service(struct psp_proxy *p, const struct pollfd *fds, struct psp_decoded *req);

/* A request of the proxy's own handed to a parked child, over the slot's socket with the
 * set-up report pipe and the request's descriptors (SCM_RIGHTS, in that order). */
struct psp_pool_hand {
    uint32_t ring_slot;
    uint32_t instance;
    uint32_t fd_count;
};
/* Hands instance `instance` of the request in `ring_slot` to a parked child instead of
 * forking one for it. The child decodes the request from the segment itself, so the
 * proxy must not reply before every child's set-up report (error_fd >= 0: required).
 * Returns the child's pid, or 0 when no parked child took it (the caller forks). */
pid_t psp_pool_hand(struct psp_proxy *p, uint32_t ring_slot, uint32_t instance, const int *fds, uint32_t fd_count,
                    int error_fd);

/* pool_child.c: slot k's child, parked. Returns false once the launcher claimed it (req
 * holds the claim's argv/envp), true once the proxy handed it a request (req decoded,
 * *handed says which instance, with its descriptors and report pipe); exits when trimmed,
 * or when the launcher or the proxy is gone. */
struct psp_handed {
    uint32_t instance;
    int error_fd;
    int *fds;
};
bool psp_pool_park(struct psp_proxy *p, uint32_t k, int hand_fd, struct psp_decoded *req, struct psp_handed *handed);

/* child.c: everything a child does between clone and main. With options, `fds` are the
 * descriptors received for the request and a failure is written to error_fd as
 * {instance, errno} before the child exits with 127: it never runs main. */
void psp_child_prepare(struct psp_proxy *p, struct psp_decoded *req, uint32_t instance, const int *fds,
                       int error_fd);
/* Whether a child of this request could fail between clone and main. Only then does
 * the proxy wait for the children's set-up reports before it replies; otherwise the
 * reply follows the clone, as without options. Steps that cannot fail: the signal mask
 * and ignored signals, the umask, a new process group, inherited or already-placed
 * stdio, a descriptor map with room below RLIMIT_NOFILE; and the image (PR_SET_MM_MAP
 * and its block), once one child of this proxy got past it (setup_proven). */
bool psp_setup_may_fail(const struct psp_proxy *p, const struct psp_decoded *req, const int *fds);
/* Drop our variables and our library from an environment, in place. */
void psp_clean_environment(char **envp, const char *library_path);

/* image.c: the image a child's main starts with, laid out as execve lays it out. */
/* At the proxy's start-up, before anything changes its state: saves the dumpable
 * state, reads the auxiliary vector and the memory map, checks PR_SET_MM_MAP. */
/* exact.c: the interceptor's exact child state (PSP_OPT_FDMAP, _SIGMASK, _SIGIGN). */
int psp_child_place_fds(const struct psp_wire_options *o, const int *fds, int *error_fd);
/* One above the map's highest target, at least 3. */
int psp_fdmap_floor(const struct psp_wire_options *o);
void psp_child_close_unmapped(const struct psp_wire_options *o);
/* The mask (the request's, else the target's at main) and the ignored signals. */
void psp_child_restore_signals(const struct psp_proxy *p, const struct psp_wire_options *o);

void psp_child_image_init(struct psp_proxy *p);
/* In a child: copies the request's argv and (cleaned) envp into one anonymous block
 * {argc, argv, NULL, envp, NULL, auxv, strings}, points req->argv/envp, environ and
 * program_invocation_name there, makes /proc/<pid>/cmdline and environ show it, and
 * draws fresh AT_RANDOM bytes (in place). Returns 0 or an errno. */
int psp_child_image_install(struct psp_proxy *p, struct psp_decoded *req);
/* The last thing before main, from a frame that never checks a canary: a fresh stack
 * canary, derived from the fresh AT_RANDOM. No function with a stack protector that was
 * entered before this call may return after it. */
void psp_child_renew_secrets(struct psp_proxy *p);

/* relay.c: exit-status relay (proxy stays the parent). */
struct psp_relay_slot *psp_relay_reserve(struct psp_proxy *p);
void psp_relay_commit(struct psp_relay_slot *slot, pid_t pid);
void psp_relay_collect(struct psp_proxy *p);
/* Children that failed before main are not the launcher's to wait for: reap them. */
void psp_relay_release_failed(struct psp_proxy *p, _Atomic int32_t *results, _Atomic int32_t *errors,
                              uint32_t count);

#endif
