/* posix_spawn / posix_spawnp: served by a zygote when every part of the child's state can
 * be given exactly, else the real call. Load, exit and fork handling. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "intercept/intercept.h"

__thread int psi_busy;
static bool loaded;

bool psi_loaded(void)
{
    return loaded;
}

static const char *kind_name(bool search)
{
    return search ? "posix_spawnp" : "posix_spawn";
}

/* What a zygote child would not share with a child of the launcher now: credentials,
 * capabilities, namespaces, cgroup, seccomp, oom_score_adj... changed by the launcher
 * since its proxy started (then the proxy's children would have the old ones). A
 * parent-death signal is not inherited, so not compared. NULL if nothing. */
static const char *launcher_identity_differs(const struct psi_snapshot *snap)
{
    struct psi_identity now;
    psi_identity_take_since(&now, &snap->identity, snap->ns_mark);
    now.pdeathsig = snap->identity.pdeathsig;
    return psi_identity_differs(&now, &snap->identity);
}

/* Through the zygote: 0 and *pid, an errno posix_spawn would return, or -1 (real call). */
static int serve(pid_t *pid, const char *exe, bool relative, const posix_spawn_file_actions_t *fa,
                 const posix_spawnattr_t *sa, char *const argv[], char *const envp[], const char **why)
{
    struct psi_actions actions;
    if (!psi_actions_copy(fa, &actions)) {
        *why = "file actions not recorded (object copied or built elsewhere)";
        return -1;
    }
    if (argv == NULL || argv[0] == NULL || envp == NULL) {
        *why = "argv or envp NULL or empty";
        psi_actions_free(&actions);
        return -1;
    }
    if (psi_child_precheck(&actions, sa, relative, why) != 0) {
        psi_actions_free(&actions);
        return -1;
    }
    struct psi_zygote *z = psi_zygote_get(exe, envp);
    if (z == NULL) {
        *why = NULL; /* logged by psi_zygote_get */
        psi_actions_free(&actions);
        return -1;
    }
    struct psi_child child;
    struct psi_state *st = malloc(sizeof(*st));
    int rc = -1;
    if (!psi_root_unchanged(psi_zygote_snapshot(z)))
        *why = "the root directory changed (chroot) since the proxy started"; /* also before /proc is read */
    else if ((*why = launcher_identity_differs(psi_zygote_snapshot(z))) != NULL)
        ; /* logged by the caller */
    else if (st == NULL)
        *why = "out of memory";
    else if (psi_state_take(st, PSI_FD_SCAN_MAX_LAUNCHER, why) == 0)
        rc = psi_child_build(&child, psi_zygote_snapshot(z), st, &actions, sa, why);
    free(st);
    psi_actions_free(&actions);
    if (rc == 0) {
        pid_t p = psi_zygote_spawn(z, exe, argv, envp, &child, why);
        if (p == 0)
            rc = -1;
        else if (pid != NULL)
            *pid = p;
    }
    psi_zygote_put(z);
    return rc;
}

static int intercepted(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                       const posix_spawnattr_t *sa, char *const argv[], char *const envp[], bool search)
{
    __typeof__(psi_real.spawn) real = search ? psi_real.spawnp : psi_real.spawn;
    psi_slice_undo(); /* a forked child spawning: its child gets the launcher's slice */
    if (!loaded || psi_busy || psi_config.disabled)
        return real(pid, file, fa, sa, argv, envp);
    psi_busy++;
    int saved = errno;
    char *edited = NULL;
    char **child_env = psi_child_environment(envp, &edited);
    bool relative = false;
    char *exe = psi_resolve(file, search, &relative);
    const char *why = NULL;
    int rc = -1;
    if (exe == NULL)
        why = "no executable file found (the real call reports the error)";
    else if (!psi_config_allows(exe))
        why = "not allowed (PSPAWN_INTERCEPT_ALLOW / _DENY)";
    else
        rc = serve(pid, exe, relative, fa, sa, argv, child_env, &why);
    if (rc == 0)
        psi_log("%s %s: served by zygote, pid %d", kind_name(search), exe, pid != NULL ? (int)*pid : -1);
    else if (rc > 0)
        psi_log("%s %s: file action failed in the zygote model: %s (returned)", kind_name(search), exe,
                strerror(rc));
    if (rc < 0) {
        if (why != NULL)
            psi_log("%s %s: real call: %s", kind_name(search), exe != NULL ? exe : file, why);
        psi_busy--;
        rc = real(pid, file, fa, sa, argv, child_env);
        psi_busy++;
    }
    if (child_env != envp)
        free(child_env);
    free(edited);
    free(exe);
    psi_busy--;
    errno = saved;
    return rc;
}

__attribute__((visibility("default"))) int posix_spawn(pid_t *restrict pid, const char *restrict path,
                                                       const posix_spawn_file_actions_t *fa,
                                                       const posix_spawnattr_t *restrict sa,
                                                       char *const argv[restrict], char *const envp[restrict])
{
    if (psi_real.spawn == NULL)
        psi_real_load();
    return intercepted(pid, path, fa, sa, argv, envp, false);
}

__attribute__((visibility("default"))) int posix_spawnp(pid_t *restrict pid, const char *restrict file,
                                                        const posix_spawn_file_actions_t *fa,
                                                        const posix_spawnattr_t *restrict sa,
                                                        char *const argv[restrict], char *const envp[restrict])
{
    if (psi_real.spawnp == NULL)
        psi_real_load();
    return intercepted(pid, file, fa, sa, argv, envp, true);
}

static void before_fork(void)
{
    psi_slice_undo();
    psi_contexts_lock();
    psi_actions_lock();
}

static void after_fork_parent(void)
{
    psi_actions_unlock();
    psi_contexts_unlock();
}

static void after_fork_child(void)
{
    psi_handoff_after_fork();
    psi_actions_after_fork();
    psi_contexts_forget();
}

__attribute__((constructor)) static void load(void)
{
    psi_real_load();
    psi_config_load();
    psi_log_init();
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    loaded = psi_real.spawn != NULL && psi_real.spawnp != NULL;
    psi_log("loaded (after %d launches; inherit %d; disabled %d; merge text %d; slice %d us)", psi_config.after,
            psi_config.inherit, psi_config.disabled, psi_config.merge_text, psi_config.slice_us);
}

__attribute__((destructor)) static void unload(void)
{
    loaded = false;
    psi_contexts_destroy();
}
