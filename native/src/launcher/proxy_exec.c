/* How a proxy process comes to life: its library found, its environment built, and the
 * clone(CLONE_VM | CLONE_VFORK) child that pins it, sets its memory policy and execs the
 * target with the channel's descriptors at their fixed numbers. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/internal.h"
#include "launcher/topology.h"

#define PROXY_LIBRARY_NAME "libpspawn_proxy.so"
#define ENV_PROXY_LIBRARY "PSPAWN_PROXY_LIBRARY"

extern char **environ;

int psp_find_proxy_library(const pspawn_context_attr_t *attr, char **out_path)
{
    const char *explicit_path = attr->proxy_library;
    if (explicit_path == NULL)
        explicit_path = getenv(ENV_PROXY_LIBRARY);
    char *path = NULL;
    if (explicit_path != NULL && explicit_path[0] != '\0') {
        path = realpath(explicit_path, NULL);
    } else {
        Dl_info info;
        if (dladdr((void *)&psp_find_proxy_library, &info) != 0 && info.dli_fname != NULL) {
            const char *slash = strrchr(info.dli_fname, '/');
            size_t dir_len = slash ? (size_t)(slash - info.dli_fname) : 1;
            const char *dir = slash ? info.dli_fname : ".";
            char candidate[PATH_MAX];
            int n = snprintf(candidate, sizeof(candidate), "%.*s/%s", (int)dir_len, dir, PROXY_LIBRARY_NAME);
            if (n > 0 && (size_t)n < sizeof(candidate))
                path = realpath(candidate, NULL);
        }
    }
    /* The loader splits LD_PRELOAD on ':' and spaces: such a path cannot be preloaded. */
    if (path == NULL || access(path, R_OK) != 0 || strpbrk(path, ": \t") != NULL) {
        free(path);
        return ELIBACC;
    }
    *out_path = path;
    return 0;
}

static void free_proxy_env(char **env, bool own_library_path);

/* The proxy's environment: the caller's (or attr's), with our variables set. */
static char **build_proxy_env(char *const *base, const char *proxy_library, const char *config,
                              bool bind_now, const char *library_path)
{
    size_t n = 0;
    while (base[n] != NULL)
        n++;
    char **env = calloc(n + 5, sizeof(char *));
    if (env == NULL)
        return NULL;
    size_t out = 0;
    const char *user_preload = NULL, *user_library_path = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(base[i], "LD_PRELOAD=", 11) == 0)
            user_preload = base[i] + 11;
        else if (library_path != NULL && strncmp(base[i], "LD_LIBRARY_PATH=", 16) == 0)
            user_library_path = base[i] + 16;
        else if (strncmp(base[i], PSP_ENV_CONFIG "=", sizeof(PSP_ENV_CONFIG)) != 0 &&
                 !(bind_now && strncmp(base[i], "LD_BIND_NOW=", 12) == 0))
            env[out++] = base[i];
    }
    /* Ours goes first so that its __libc_start_main is the one the executable binds. */
    size_t preload_len = strlen(proxy_library) + (user_preload ? strlen(user_preload) + 1 : 0) + 12;
    char *preload = malloc(preload_len);
    char *cfg = malloc(strlen(config) + sizeof(PSP_ENV_CONFIG) + 1);
    if (preload == NULL || cfg == NULL) {
        free(preload);
        free(cfg);
        free(env);
        return NULL;
    }
    snprintf(preload, preload_len, "LD_PRELOAD=%s%s%s", proxy_library, user_preload ? ":" : "",
             user_preload ? user_preload : "");
    sprintf(cfg, "%s=%s", PSP_ENV_CONFIG, config);
    env[out++] = preload;
    env[out++] = cfg;
    if (bind_now)
        env[out++] = "LD_BIND_NOW=1";
    /* Replicas: their directory first, so the loader finds the copies. */
    if (library_path != NULL &&
        asprintf(&env[out++], "LD_LIBRARY_PATH=%s%s%s", library_path, user_library_path ? ":" : "",
                 user_library_path ? user_library_path : "") < 0) {
        env[--out] = NULL;
        free_proxy_env(env, false);
        return NULL;
    }
    env[out] = NULL;
    return env;
}

/* Frees what build_proxy_env allocated: the array and our two strings (the caller's
 * LD_PRELOAD and configuration entries were left out of the copy, so these are ours). */
static void free_proxy_env(char **env, bool own_library_path)
{
    for (size_t i = 0; env[i] != NULL; i++) {
        if (strncmp(env[i], "LD_PRELOAD=", 11) == 0 || strncmp(env[i], PSP_ENV_CONFIG "=", sizeof(PSP_ENV_CONFIG)) == 0 ||
            (own_library_path && strncmp(env[i], "LD_LIBRARY_PATH=", 16) == 0))
            free(env[i]);
    }
    free(env);
}

/* A copy of `fd` at PSP_FD_FIRST_FREE or above, clear of the numbers dup2 will fill. */
static int move_clear(int fd)
{
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, PSP_FD_FIRST_FREE);
    if (moved < 0 && errno == EINVAL) /* the limit is below PSP_FD_FIRST_FREE */
        errno = EMFILE;
    return moved;
}

/* What the proxy's creator child needs; it runs on our memory until execve. */
struct proxy_exec {
    const struct psp_channel *ch;
    int fds[3];            /* reply, doorbell, socket: moved to PSP_FD_* */
    char *const *argv;
    char **env;
    volatile int error;    /* set-up or exec failure (the child then exits) */
    volatile int mempolicy_error; /* set_mempolicy refused: started without it */
};

/* The proxy's first moments, as posix_spawn would give them (descriptors 0-2 and ours
 * only, every signal default, none blocked), plus what posix_spawn cannot do: pinned to
 * its CPUs and its memory policy set *before* the target is exec'd, so the loader, the
 * libraries' private pages and the proxy's heap are allocated on its node (mempolicy
 * and affinity survive execve). Raw clone(CLONE_VM | CLONE_VFORK) child: no allocation,
 * no lock. */
static int proxy_exec_child(void *arg)
{
    struct proxy_exec *x = arg;
    const struct psp_channel *ch = x->ch;
    int err = 0;
    static const int targets[3] = {PSP_FD_REPLY, PSP_FD_DOORBELL, PSP_FD_SOCKET};
    for (int k = 0; k < 3; k++)
        if (dup2(x->fds[k], targets[k]) < 0) {
            err = errno;
            goto fail;
        }
    syscall(SYS_close_range, (unsigned)PSP_FD_FIRST_FREE, ~0u, 0u);
    if (ch->pinned && sched_setaffinity(0, sizeof(ch->cpus), &ch->cpus) != 0) {
        err = errno;
        goto fail;
    }
    if (ch->config.mempolicy >= 0 && ch->config.node >= 0) {
        unsigned long mask[PSP_MAX_NODES / (8 * sizeof(unsigned long)) + 1] = {0};
        mask[ch->config.node / (8 * sizeof(unsigned long))] |= 1UL << (ch->config.node % (8 * sizeof(unsigned long)));
        if (syscall(SYS_set_mempolicy, ch->config.mempolicy, mask, (unsigned long)(8 * sizeof(mask))) != 0)
            x->mempolicy_error = errno; /* a node we may not allocate on: start unbound */
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(ch->config.path, x->argv, x->env);
    err = errno;
fail:
    x->error = err != 0 ? err : EPROTO;
    _exit(127);
}

#define PSP_PROXY_EXEC_STACK (64u << 10)

static int spawn_proxy(struct psp_channel *ch, int proxy_socket, char **env)
{
    char *const argv[] = {ch->config.path, NULL};
    struct proxy_exec x = {.ch = ch, .fds = {move_clear(ch->reply_fd), -1, -1}, .argv = argv, .env = env};
    if (x.fds[0] >= 0)
        x.fds[1] = move_clear(ch->doorbell_fd);
    if (x.fds[1] >= 0)
        x.fds[2] = move_clear(proxy_socket);
    int err = x.fds[2] < 0 ? errno : 0;
    void *stack = MAP_FAILED;
    if (err == 0) {
        stack = mmap(NULL, PSP_PROXY_EXEC_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED)
            err = errno;
    }
    if (err == 0) {
        /* No handler of ours may run in the child while it shares our memory. */
        sigset_t all, saved;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        pid_t pid = clone(proxy_exec_child, (char *)stack + PSP_PROXY_EXEC_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &x);
        int clone_err = errno;
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (pid < 0) {
            err = clone_err;
        } else if (x.error != 0) {
            err = x.error; /* it never became the target: reap it */
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
            }
        } else {
            ch->proxy_pid = pid;
            ch->mempolicy_error = x.mempolicy_error;
        }
    }
    if (stack != MAP_FAILED)
        munmap(stack, PSP_PROXY_EXEC_STACK);
    for (int k = 0; k < 3; k++)
        if (x.fds[k] >= 0)
            close(x.fds[k]);
    return err;
}

int psp_exec_proxy(struct psp_channel *ch, int proxy_socket)
{
    const struct psp_proxy_config *cfg = &ch->config;
    char config[64];
    unsigned flags = (cfg->relay ? PSP_CONFIG_RELAY : 0) | (cfg->flags & PSPAWN_CTX_PREFAULT ? PSP_CONFIG_PREFAULT : 0) |
                     (cfg->flags & PSPAWN_CTX_WATCH_IMAGE ? PSP_CONFIG_WATCH_IMAGE : 0) |
                     (cfg->flags & PSPAWN_CTX_MERGE_TEXT ? PSP_CONFIG_MERGE_TEXT : 0) |
                     (cfg->flags & PSPAWN_CTX_DEFERRED ? PSP_CONFIG_DEFERRED : 0);
    snprintf(config, sizeof(config), "%u:%d:%u", PSP_PROTOCOL_VERSION, (int)getpid(), flags);
    char **env = build_proxy_env(cfg->proxy_envp ? cfg->proxy_envp : environ, cfg->proxy_library, config,
                                 !(cfg->flags & PSPAWN_CTX_NO_BIND_NOW), cfg->library_path);
    if (env == NULL)
        return ENOMEM;
    int err = spawn_proxy(ch, proxy_socket, env);
    free_proxy_env(env, cfg->library_path != NULL);
    return err;
}
