/*
 * libpspawn_intercept.so: preloaded into an unmodified launcher, it serves repeated
 * posix_spawn/posix_spawnp calls of the same executable from a zygote context of the
 * launcher core (linked in statically, symbols hidden), with the child state the real
 * call would have produced, and makes the real call whenever it cannot (every decision
 * logged with PSPAWN_DEBUG=1). See docs/design.md, "Interception".
 */
#ifndef PSPAWN_INTERCEPT_H
#define PSPAWN_INTERCEPT_H

#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "pspawn.h"

#define PSI_HIDDEN __attribute__((visibility("hidden")))

/* config.c: the PSPAWN_INTERCEPT_* variables, read once at load. */
struct psi_config {
    int after;          /* PSPAWN_INTERCEPT_AFTER: launches served by the real call first (default 2) */
    char **allow;       /* PSPAWN_INTERCEPT_ALLOW: ':'-separated paths or base names; NULL = all */
    char **deny;        /* PSPAWN_INTERCEPT_DENY: the same, never served */
    bool inherit;       /* PSPAWN_INTERCEPT_INHERIT=1: children keep the interceptor in LD_PRELOAD */
    bool disabled;      /* PSPAWN_INTERCEPT=0: every call is the real one */
    bool fork;          /* PSPAWN_INTERCEPT_FORK (default 1): the fork handoff (fork.c) */
    int fork_wait_ms;   /* PSPAWN_INTERCEPT_FORK_WAIT_MS (default 50): how long fork waits for exec */
    bool vfork;         /* PSPAWN_INTERCEPT_VFORK=1: vfork is a handoff fork too (vfork.c) */
    bool threads;       /* PSPAWN_INTERCEPT_THREADS=1: the handoff in multi-threaded launchers too */
    int pool;           /* PSPAWN_INTERCEPT_POOL (default 0): parked children per zygote */
    bool merge_text;    /* PSPAWN_INTERCEPT_MERGE_TEXT (default 1): PSPAWN_CTX_MERGE_TEXT */
    int slice_us;       /* PSPAWN_INTERCEPT_SLICE_US (default 100, 0: off): the forked child's slice (slice.c) */
    char *self_path;    /* this library's path (as the loader found it) */
};
PSI_HIDDEN extern struct psi_config psi_config;
PSI_HIDDEN void psi_config_load(void);
PSI_HIDDEN bool psi_config_allows(const char *path);

/* log.c: PSPAWN_DEBUG=1 appends one line per decision to PSPAWN_DEBUG_FILE (default
 * /tmp/pspawn-intercept.<pid>.log); never the launcher's stdout/stderr. */
PSI_HIDDEN void psi_log_init(void);
PSI_HIDDEN void psi_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* real.c: the next definitions (libc's). */
struct psi_real {
    int (*spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
                 char *const[], char *const[]);
    int (*spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *,
                  char *const[], char *const[]);
    mode_t (*umask)(mode_t);
    int (*execve)(const char *, char *const[], char *const[]);
    int (*execvpe)(const char *, char *const[], char *const[]);
    pid_t (*fork)(void);
    int (*close)(int);
    int (*close_range)(unsigned, unsigned, int);
    void (*closefrom)(int);
    int (*dup2)(int, int);
    int (*unshare)(int);
    int (*setns)(int, int);
    int (*dup3)(int, int, int);
    int (*setpriority)(int, id_t, int);
    int (*nice)(int);
    int (*sched_setscheduler)(pid_t, int, const struct sched_param *);
    int (*sched_setparam)(pid_t, const struct sched_param *);
};
PSI_HIDDEN extern struct psi_real psi_real;
/* libc's vfork, for vfork.c's stub (a variable the stub can jump through). */
PSI_HIDDEN extern pid_t (*psi_real_vfork)(void);
PSI_HIDDEN void psi_real_load(void);
/* Reads a small file (a /proc one) into buf, NUL-terminated: its length, or -1. */
PSI_HIDDEN ssize_t psi_read_text(const char *path, char *buf, size_t size);
/* The umask as the launcher last set it (umask() is interposed), -1 if unknown. */
PSI_HIDDEN int psi_current_umask(void);

/* own.c: the zygotes' own processes (proxies, parked pool children: children of the
 * launcher that its waits for any child must not see, wait.c) and descriptors (which the
 * launcher may close or reuse, close.c). A zygote registers its context once started (slot
 * -1: none left) and unregisters it before it is destroyed; a forked child forgets them
 * all (they are its parent's). Async-signal-safe. */
PSI_HIDDEN int psi_own_context_add(const pspawn_context_t *ctx);
/* Unregisters it; true if it had lost a descriptor to the launcher (abandon it then). */
PSI_HIDDEN bool psi_own_context_remove(int slot);
PSI_HIDDEN void psi_own_children_forget(void);
PSI_HIDDEN bool psi_own_any(void);
/* A proxy or parked child of one of our zygotes. */
PSI_HIDDEN bool psi_own_process(pid_t pid);
/* The launcher is about to close (or replace) its descriptors first..last: a zygote holding
 * one of them is marked lost. */
PSI_HIDDEN void psi_own_fds_taken(unsigned first, unsigned last);
/* Whether the context in this slot lost a descriptor to the launcher (then abandoned). */
PSI_HIDDEN bool psi_own_context_lost(int slot);
/* The launcher itself is about to exec: every zygote's proxy and parked children are
 * killed and reaped now (async-signal-safe; not in a vfork or fork child). True if there
 * were any: their contexts are dead, and psi_contexts_after_failed_exec says so. */
PSI_HIDDEN bool psi_own_end_before_exec(void);

/* file_actions.c: every posix_spawn_file_actions_t the launcher built through us. */
enum psi_action_kind { PSI_CLOSE, PSI_OPEN, PSI_DUP2, PSI_CHDIR, PSI_FCHDIR, PSI_CLOSEFROM, PSI_TCSETPGRP };
struct psi_action {
    enum psi_action_kind kind;
    int fd;
    int newfd;    /* dup2 */
    int oflag;    /* open */
    mode_t mode;  /* open */
    char *path;   /* open, chdir */
};
struct psi_actions {
    int count;
    struct psi_action *items;
};
/* A private copy of the actions recorded for `fa` (NULL: none), or false if `fa` is not
 * one we saw built (copied, or initialised elsewhere): then the real call is made. */
PSI_HIDDEN bool psi_actions_copy(const posix_spawn_file_actions_t *fa, struct psi_actions *out);
PSI_HIDDEN void psi_actions_free(struct psi_actions *a);
/* fork: held around it, re-initialised in the child. */
PSI_HIDDEN void psi_actions_lock(void);
PSI_HIDDEN void psi_actions_unlock(void);
PSI_HIDDEN void psi_actions_after_fork(void);

/* identity.c: what survives exec but cannot be given to a zygote child. */
#define PSI_MAX_GROUPS 64
#define PSI_NAMESPACES 10
struct psi_identity {
    uid_t uid[3];
    gid_t gid[3];
    int groups; /* -1: more than PSI_MAX_GROUPS */
    gid_t group[PSI_MAX_GROUPS];
    uint32_t caps[6];
    int securebits, seccomp, pdeathsig, personality, timerslack, ioprio, mempolicy;
    int seccomp_filters; /* stacked filters (Seccomp_filters, Linux 5.9+), -1 if unknown */
    uint64_t ns[PSI_NAMESPACES];
    uint64_t cgroup, oom_score_adj; /* hashes of the /proc files */
};
PSI_HIDDEN void psi_identity_take(struct psi_identity *id);
/* When an identity's namespaces were read: the namespace epoch then (bumped by every
 * unshare() and setns() of the process) and the thread that read them (namespaces are per
 * thread). */
struct psi_ns_mark {
    unsigned epoch;
    pid_t tid;
};
PSI_HIDDEN struct psi_ns_mark psi_namespace_mark(void);
/* The calling thread's identity, given `then`, taken at `mark`: the namespaces are read again
 * unless they cannot have moved since — no unshare() or setns() in the process since, and
 * none ever or the same thread (those are interposed, and syscall() on x86-64; an inline
 * system call is not seen). */
PSI_HIDDEN void psi_identity_take_since(struct psi_identity *id, const struct psi_identity *then,
                                        struct psi_ns_mark mark);
/* Its namespaces alone, in the same way. */
PSI_HIDDEN void psi_namespaces_take_since(uint64_t ns[PSI_NAMESPACES], const struct psi_identity *then,
                                          struct psi_ns_mark mark);
/* All but the namespaces (left zero): for a process that knows it has not moved. */
PSI_HIDDEN void psi_identity_take_but_namespaces(struct psi_identity *id);
/* Whether every way to change the namespaces short of an inline system call moves the
 * epoch: unshare() and setns() everywhere, syscall() where it is interposed (x86-64). */
#if defined(__x86_64__)
#define PSI_SEES_NAMESPACE_SYSCALLS 1
PSI_HIDDEN extern long (*psi_real_syscall)(long, ...);
PSI_HIDDEN long psi_syscall_counted(long number, long a1, long a2, long a3, long a4, long a5, long a6);
#else
#define PSI_SEES_NAMESPACE_SYSCALLS 0
#endif
PSI_HIDDEN unsigned psi_namespace_epoch(void);
/* NULL if the same, else what differs. */
PSI_HIDDEN const char *psi_identity_differs(const struct psi_identity *a, const struct psi_identity *b);

/* The caller's state a context's proxy was created with (its children inherit it). */
struct psi_snapshot {
    struct stat exe;            /* identity of the executable */
    dev_t cwd_dev;
    ino_t cwd_ino;
    dev_t root_dev;             /* the root directory (chroot) the proxy was started in */
    ino_t root_ino;
    pid_t pgrp;
    pid_t sid;
    struct rlimit limits[RLIM_NLIMITS];
    cpu_set_t affinity;
    int policy;
    int sched_priority;
    int nice;
    uint64_t slice;             /* psi_slice_current() */
    int no_new_privs;
    int umask;
    struct psi_identity identity; /* the proxy's: what a zygote child gets */
    struct psi_ns_mark ns_mark;   /* when its namespaces were read */
};
PSI_HIDDEN int psi_snapshot_take(struct psi_snapshot *s, const char *path);
/* The caller's root directory is still the one the proxy was started in (no chroot since). */
PSI_HIDDEN bool psi_root_unchanged(const struct psi_snapshot *s);

/* state.c: what a child of a process inherits from it, taken in that process: its
 * descriptors, working directory, signal mask and dispositions, group, session, limits,
 * umask, CPUs and scheduling. In the launcher for posix_spawn; in a forked child at exec
 * for the fork handoff (fork.c), where it travels to the launcher (descriptors and the
 * working directory over SCM_RIGHTS, `source` then naming the launcher's copies). */
#define PSI_MAX_STATE_FDS 1024
/* Descriptor tables up to this size are scanned with F_GETFD (~0.2 µs a number here),
 * larger ones listed from /proc/self/fd. The listing is cheap in a process that has
 * listed before (the launcher: ~30 µs for a few descriptors) and dear in a freshly forked
 * one (~80 µs more, and its reaper's waitpid tears the entries down again). */
#define PSI_FD_SCAN_MAX_LAUNCHER 64
#define PSI_FD_SCAN_MAX_FORKED 256
struct psi_fd {
    int target;   /* the descriptor number in the process */
    int source;   /* a descriptor of the builder's process for the same file */
    bool cloexec;
};
struct psi_state {
    pid_t pid;
    pid_t pgrp;
    pid_t sid;
    bool own_group_is_new; /* handoff: a group the process leads becomes the child's own new group */
    int cwd_fd;            /* -1: the builder's working directory; else a descriptor of it */
    dev_t root_dev;        /* the root directory ("/"), which a zygote child cannot be given */
    ino_t root_ino;
    sigset_t mask;
    sigset_t ignored;
    bool sigchld_ignored;  /* SIG_IGN or SA_NOCLDWAIT: children would be reaped by the kernel */
    struct rlimit limits[RLIM_NLIMITS];
    int umask;
    cpu_set_t affinity;
    int policy;
    int sched_priority;
    int nice;
    uint64_t slice; /* psi_slice_current() */
    int no_new_privs;
    int fd_count;
    struct psi_fd fds[PSI_MAX_STATE_FDS]; /* fd_count used */
};
/* 0, or -1 (*why): /proc/self unreadable or more than PSI_MAX_STATE_FDS open. scan_max:
 * PSI_FD_SCAN_MAX_LAUNCHER or _FORKED. */
PSI_HIDDEN int psi_state_take(struct psi_state *st, int scan_max, const char **why);

/* child_state.c: the attr that gives a zygote child exactly what posix_spawn's child
 * (or, for the fork handoff, the exec of the forked child) would get, from `st` and the
 * file actions and attributes on top. psi_child_build returns 0 (use c->attr, then
 * psi_child_done), an errno the real posix_spawn would have returned (a file action
 * failed: no child), or -1: not expressible (*why says what): make the real call. */
#define PSI_MAX_TEMP_FDS 64
struct psi_child {
    pspawn_attr_t *attr;
    int temps[PSI_MAX_TEMP_FDS]; /* descriptors we opened for the child (closed when done) */
    int temp_count;
};
PSI_HIDDEN int psi_child_build(struct psi_child *c, const struct psi_snapshot *snap, const struct psi_state *st,
                               const struct psi_actions *fa, const posix_spawnattr_t *sa, const char **why);
PSI_HIDDEN void psi_child_done(struct psi_child *c);
/* Checks the actions and attributes before anything has a side effect: -1 (*why) if one
 * cannot be expressed, else 0. exe_relative: the executable path is relative. */
PSI_HIDDEN int psi_child_precheck(const struct psi_actions *fa, const posix_spawnattr_t *sa, bool exe_relative,
                                  const char **why);

/* fork.c / handoff.c: the fork handoff. An intercepted fork() of a single-threaded
 * launcher waits (signals blocked) until its child reaches exec; the child sends what
 * it would exec with (state, identity, descriptors) and the launcher serves it from a
 * zygote: the zygote's child (a child of the launcher) takes the forked child's place,
 * the forked child exits unseen and fork() returns the zygote child's pid. Anything
 * else (a timeout, no zygote, a difference it cannot express) and the forked child
 * runs on and execs for real, its own pid returned. docs/design.md, "Interception". */
#define PSI_HANDOFF_MAGIC 0x50534846u /* "PSHF" */
#define PSI_HANDOFF_MAX_MESSAGE (192u << 10)
struct psi_handoff_request {
    uint32_t magic;
    uint32_t argc;
    uint32_t envc;
    uint32_t strings; /* bytes after the state: path, argv, envp, each NUL-terminated */
    bool namespaces_inherited; /* identity.ns not read: the launcher's, as at the fork */
    struct psi_identity identity;
    struct psi_state state; /* sent up to fds[state.fd_count]; the strings follow */
};
struct psi_handoff_reply {
    uint32_t magic;
    int32_t pid; /* > 0: served, the forked child exits; 0: it execs for real */
};
/* In the forked child: arms the handoff on socket fd (owned from now on). settle: the
 * launcher sets this child's slice and then sends a one-byte note (slice.c). */
PSI_HIDDEN void psi_handoff_arm(int fd, bool settle);
/* In an armed child: waits for the launcher's note if it is still to come, before the
 * child changes its own scheduling or reads the reply. */
PSI_HIDDEN void psi_handoff_settle(void);
/* pthread_atfork, in the child: drops an armed parent's socket. */
PSI_HIDDEN void psi_handoff_after_fork(void);
/* An armed child's handoff socket (close.c keeps it open), else -1. */
PSI_HIDDEN int psi_handoff_fd(void);
/* At exec in an armed child: never returns if served; else disarmed, and the caller
 * makes the real call. */
PSI_HIDDEN void psi_handoff_exec(const char *file, char *const argv[], char *const envp[], bool search);
/* The launcher's side: a request from its forked child; the pid served, or 0. */
PSI_HIDDEN pid_t psi_handoff_serve(const struct psi_handoff_request *req, size_t size, int *fds, int nfds);
PSI_HIDDEN bool psi_loaded(void);
/* vfork.c's stub: whether this vfork is served as a handoff fork that waits until the
 * child exec'd or exited, and that fork. */
PSI_HIDDEN bool psi_vfork_takes_handoff(void);
PSI_HIDDEN pid_t psi_vfork_handoff(void);

/* slice.c: the forked child's short scheduler slice. In the launcher, before the real
 * fork: true if its child is to get the short slice (*previous: the launcher's). */
PSI_HIDDEN bool psi_slice_applies(uint64_t *previous);
/* In the launcher, right after the fork: the child's slice shortened (the child, running
 * on, waits for the note that follows only before its own scheduling changes or its
 * request: psi_handoff_settle). */
PSI_HIDDEN void psi_slice_shorten(pid_t child, uint64_t previous);
/* pid's (0: this thread's) slice back to `previous`, if it is still the short one. */
PSI_HIDDEN void psi_slice_restore(pid_t pid, uint64_t previous);
/* In the forked child: it runs with the short slice, to undo with psi_slice_undo. */
PSI_HIDDEN void psi_slice_inherit(uint64_t previous);
/* Before anything outlives the forked child's state (exec, fork, vfork, posix_spawn):
 * its slice back to the launcher's; nothing elsewhere. */
PSI_HIDDEN void psi_slice_undo(void);
/* The slice (ns) a program exec'd by this thread would run with: the short one counts as
 * the one it replaces. 0 if the kernel reports none (before 6.12) or it is unreadable. */
PSI_HIDDEN uint64_t psi_slice_current(void);

/* contexts.c: zygote contexts by executable and loader environment. */
struct psi_zygote;
/* The zygote to serve `path` with `envp` from, with a reference (psi_zygote_put), or
 * NULL (the real call: below the threshold, unservable, being created...; logged). */
PSI_HIDDEN struct psi_zygote *psi_zygote_get(const char *path, char *const envp[]);
PSI_HIDDEN void psi_zygote_put(struct psi_zygote *z);
PSI_HIDDEN const struct psi_snapshot *psi_zygote_snapshot(const struct psi_zygote *z);
/* Spawns argv/envp with child->attr (then psi_child_done): the pid, or 0 (*why; logged;
 * a failure that may last retires the zygote). */
PSI_HIDDEN pid_t psi_zygote_spawn(struct psi_zygote *z, const char *exe, char *const argv[], char *const envp[],
                                  struct psi_child *child, const char **why);
/* A spawn failed in a way that may last (EPERM, EPIPE, ...): stop using this zygote. */
PSI_HIDDEN void psi_zygote_retire(struct psi_zygote *z, int err);
PSI_HIDDEN void psi_contexts_forget(void);   /* in a forked child: not ours */
PSI_HIDDEN void psi_contexts_destroy(void);  /* at exit */
/* An exec that psi_own_end_before_exec prepared for failed: the next launch retires every
 * zygote (their proxies are gone) and starts them again on demand. Async-signal-safe. */
PSI_HIDDEN void psi_contexts_after_failed_exec(void);
PSI_HIDDEN void psi_contexts_lock(void);
PSI_HIDDEN void psi_contexts_unlock(void);

/* environment.c */
/* envp with this library removed from LD_PRELOAD (unless inherit), newly allocated
 * pointer array (strings shared but the edited one), or envp itself if unchanged. */
PSI_HIDDEN char **psi_child_environment(char *const envp[], char **edited);
/* Writes `entry` ("LD_PRELOAD=...") without this library into out (size bytes);
 * false if nothing was removed or it does not fit. No allocation: vfork-safe. */
PSI_HIDDEN bool psi_strip_self_into(const char *entry, char *out, size_t size);
/* The variables the loader and libc read before main (LD_*, GLIBC_TUNABLES, MALLOC_*)
 * concatenated: the part of a context's key that comes from the environment. */
PSI_HIDDEN char *psi_loader_signature(char *const envp[]);

/* resolve.c: the file posix_spawnp would execute (PATH of the caller's environment);
 * absolute, malloc'ed; NULL if no candidate (the real call reports the error). */
PSI_HIDDEN char *psi_resolve(const char *file, bool search, bool *relative);

/* Guard: set while the interceptor itself runs, so that its own calls are real. */
PSI_HIDDEN extern __thread int psi_busy;

#endif
