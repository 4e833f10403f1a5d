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
};
PSI_HIDDEN extern struct psi_real psi_real;
PSI_HIDDEN void psi_real_load(void);
/* The umask as the launcher last set it (umask() is interposed), -1 if unknown. */
PSI_HIDDEN int psi_current_umask(void);

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

/* The caller's state a context's proxy was created with (its children inherit it). */
struct psi_snapshot {
    struct stat exe;            /* identity of the executable */
    dev_t cwd_dev;
    ino_t cwd_ino;
    pid_t pgrp;
    pid_t sid;
    struct rlimit limits[RLIM_NLIMITS];
    cpu_set_t affinity;
    int policy;
    int sched_priority;
    int nice;
    int no_new_privs;
    int umask;
};
PSI_HIDDEN int psi_snapshot_take(struct psi_snapshot *s, const char *path);

/* child_state.c: the attr that gives a zygote child exactly what posix_spawn's child
 * would get. psi_child_build returns 0 (use c->attr, then psi_child_done), an errno the
 * real posix_spawn would have returned (a file action failed: no child), or -1: not
 * expressible (*why says what): make the real call. */
#define PSI_MAX_TEMP_FDS 64
struct psi_child {
    pspawn_attr_t *attr;
    int temps[PSI_MAX_TEMP_FDS]; /* descriptors we opened for the child (closed when done) */
    int temp_count;
};
PSI_HIDDEN int psi_child_build(struct psi_child *c, const struct psi_snapshot *snap, const struct psi_actions *fa,
                               const posix_spawnattr_t *sa, const char **why);
PSI_HIDDEN void psi_child_done(struct psi_child *c);
/* Checks the actions and attributes before anything has a side effect: -1 (*why) if one
 * cannot be expressed, else 0. exe_relative: the executable path is relative. */
PSI_HIDDEN int psi_child_precheck(const struct psi_actions *fa, const posix_spawnattr_t *sa, bool exe_relative,
                                  const char **why);

/* contexts.c: zygote contexts by executable and loader environment. */
struct psi_zygote;
/* The zygote to serve `path` with `envp` from, with a reference (psi_zygote_put), or
 * NULL (the real call: below the threshold, unservable, being created...; logged). */
PSI_HIDDEN struct psi_zygote *psi_zygote_get(const char *path, char *const envp[]);
PSI_HIDDEN void psi_zygote_put(struct psi_zygote *z);
PSI_HIDDEN pspawn_context_t *psi_zygote_context(struct psi_zygote *z);
PSI_HIDDEN const struct psi_snapshot *psi_zygote_snapshot(const struct psi_zygote *z);
/* A spawn failed in a way that may last (EPERM, EPIPE, ...): stop using this zygote. */
PSI_HIDDEN void psi_zygote_retire(struct psi_zygote *z, int err);
PSI_HIDDEN void psi_contexts_forget(void);   /* in a forked child: not ours */
PSI_HIDDEN void psi_contexts_destroy(void);  /* at exit */
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
