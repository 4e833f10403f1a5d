/* Starting a proxy: shared segment, eventfds, exec with LD_PRELOAD, handshake; and
 * stopping one within a bounded time, also one we may no longer signal. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launcher/internal.h"
#include "launcher/topology.h"

#define PROXY_LIBRARY_NAME "libpspawn_proxy.so"
#define ENV_PROXY_LIBRARY "PSPAWN_PROXY_LIBRARY"

extern char **environ;

int64_t psp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int pidfd_open_checked(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

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

/* The proxy's environment: the caller's (or attr's), with our variables set. */
static char **build_proxy_env(char *const *base, const char *proxy_library, const char *config,
                              bool bind_now)
{
    size_t n = 0;
    while (base[n] != NULL)
        n++;
    char **env = calloc(n + 4, sizeof(char *));
    if (env == NULL)
        return NULL;
    size_t out = 0;
    const char *user_preload = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(base[i], "LD_PRELOAD=", 11) == 0)
            user_preload = base[i] + 11;
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
    env[out] = NULL;
    return env;
}

/* Frees what build_proxy_env allocated: the array and our two strings (the caller's
 * LD_PRELOAD and configuration entries were left out of the copy, so these are ours). */
static void free_proxy_env(char **env)
{
    for (size_t i = 0; env[i] != NULL; i++) {
        if (strncmp(env[i], "LD_PRELOAD=", 11) == 0 || strncmp(env[i], PSP_ENV_CONFIG "=", sizeof(PSP_ENV_CONFIG)) == 0)
            free(env[i]);
    }
    free(env);
}

/* While we hold a descriptor of a fresh segment, processes of our user could reopen it
 * through /proc/<us>/fd. For those few system calls we are not dumpable, which makes
 * our /proc files root's. Nested and concurrent creations share one window. */
static pthread_mutex_t g_window_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_window_depth;
static bool g_window_restore;

static void private_window_enter(void)
{
    pthread_mutex_lock(&g_window_lock);
    if (g_window_depth++ == 0) {
        g_window_restore = prctl(PR_GET_DUMPABLE) == 1;
        if (g_window_restore)
            prctl(PR_SET_DUMPABLE, 0);
    }
    pthread_mutex_unlock(&g_window_lock);
}

static void private_window_leave(void)
{
    pthread_mutex_lock(&g_window_lock);
    if (--g_window_depth == 0 && g_window_restore)
        prctl(PR_SET_DUMPABLE, 1);
    pthread_mutex_unlock(&g_window_lock);
}

static void init_segment(struct psp_shared *sh, size_t size, const struct psp_proxy_config *cfg)
{
    bool relay = cfg->relay;
    sh->magic = PSP_MAGIC;
    sh->version = PSP_PROTOCOL_VERSION;
    sh->size = size;
    sh->launcher_pid = getpid();
    sh->relay = relay;
    sh->slot_count = PSP_RING_SLOTS;
    sh->relay_offset = (sizeof(*sh) + 63) & ~(uint64_t)63;
    sh->relay_capacity = relay ? PSP_RELAY_CAPACITY : 0;
    sh->data_offset = sh->relay_offset + (uint64_t)sh->relay_capacity * sizeof(struct psp_relay_slot);
    sh->data_offset = (sh->data_offset + 63) & ~(uint64_t)63;
    atomic_store(&sh->state, PSP_STATE_STARTING);
    if (cfg->mempolicy >= 0 && cfg->node >= 0)
        sh->child_flags |= PSP_CHILD_RESET_MEMPOLICY;
    if (cfg->reset_children) {
        _Static_assert(sizeof(sh->child_cpus) == sizeof(cpu_set_t), "a cpu_set_t in the header");
        memcpy(sh->child_cpus, &cfg->child_cpus, sizeof(sh->child_cpus));
        sh->child_cpus_set = 1;
    }
}

/* Creates, seals and maps the segment, and queues it on the socket for the proxy (its
 * first message); no descriptor of it remains with us. */
static int create_segment(struct psp_channel *ch, size_t size)
{
    private_window_enter();
    int err = 0;
    int fd = memfd_create("pspawn", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    void *map = MAP_FAILED;
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0 ||
        /* A fixed size: neither side can make the other's accesses fault with SIGBUS. */
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0 ||
        (map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED)
        err = errno;
    if (err == 0) {
        init_segment(map, size, &ch->config);
        err = psp_send_fds(ch->socket_fd, &fd, 1);
    }
    /* The second message: the reply eventfd of each ring slot. */
    if (err == 0)
        err = psp_send_fds(ch->socket_fd, ch->slot_fds, PSP_RING_SLOTS);
    if (fd >= 0)
        close(fd);
    private_window_leave();
    if (err != 0) {
        if (map != MAP_FAILED)
            munmap(map, size);
        return err;
    }
    ch->size = size;
    __atomic_store_n(&ch->shared, (struct psp_shared *)map, __ATOMIC_RELEASE);
    return 0;
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

bool psp_channel_terminate(struct psp_channel *ch)
{
    if (ch->proxy_pidfd < 0)
        return true;
    /* EPERM after the caller changed its credentials: the hang-up below still stops it
     * (the proxy watches the socket, also between two forks), so that wait is short. A
     * delivered SIGKILL always completes, only late on a loaded machine: wait longer. */
    bool killed = syscall(SYS_pidfd_send_signal, ch->proxy_pidfd, SIGKILL, NULL, 0) == 0;
    if (ch->socket_fd >= 0)
        shutdown(ch->socket_fd, SHUT_RDWR);
    struct pollfd p = {.fd = ch->proxy_pidfd, .events = POLLIN};
    int64_t deadline = psp_now_ms() + (killed ? PSP_KILLED_TIMEOUT_MS : PSP_TERMINATE_TIMEOUT_MS);
    for (;;) {
        int64_t left = deadline - psp_now_ms();
        if (left <= 0)
            return false;
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return true;
        if (n < 0 && errno != EINTR)
            return false;
    }
}

/* Proxies that outlived their stop: their pidfds, reaped (WNOHANG) whenever a proxy is
 * started or stopped later, so that none stays a zombie for long. */
static pthread_mutex_t g_late_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_late[64];
static int g_late_count;

static bool reaped(int pidfd)
{
    siginfo_t info = {0};
    int r;
    while ((r = waitid(P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG)) != 0 && errno == EINTR) {
    }
    return r != 0 || info.si_pid != 0; /* ECHILD: somebody else reaped it */
}

static void reap_late_proxies(void)
{
    pthread_mutex_lock(&g_late_lock);
    for (int i = 0; i < g_late_count;) {
        if (reaped(g_late[i])) {
            close(g_late[i]);
            g_late[i] = g_late[--g_late_count];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&g_late_lock);
}

static void reap_later(int pidfd)
{
    pthread_mutex_lock(&g_late_lock);
    if (g_late_count == (int)(sizeof(g_late) / sizeof(g_late[0])))
        close(g_late[--g_late_count]); /* give the oldest up rather than grow */
    g_late[g_late_count++] = pidfd;
    pthread_mutex_unlock(&g_late_lock);
}

/* Stops and reaps the proxy, bounded. One that outlives the bound (stopped by a ptracer,
 * unkillable after a credential change and stuck in the kernel, or just late) is reaped
 * by a later start or stop. */
static void kill_and_reap_proxy(struct psp_channel *ch)
{
    reap_late_proxies();
    if (ch->proxy_pid <= 0)
        return;
    bool gone = psp_channel_terminate(ch);
    if (ch->proxy_pidfd >= 0) {
        if (gone) {
            (void)reaped(ch->proxy_pidfd); /* ECHILD is fine: a runtime that reaps every child (pid 1) may have */
        } else if (!reaped(ch->proxy_pidfd)) {
            reap_later(ch->proxy_pidfd);
            ch->proxy_pidfd = -1;
        }
    }
    ch->proxy_pid = -1;
}

/* Wait for the proxy to report READY or FAILED, or to die, or for the timeout. */
static int await_handshake(struct psp_channel *ch, int timeout_ms)
{
    int64_t deadline = psp_now_ms() + timeout_ms;
    for (;;) {
        int32_t state = atomic_load(&ch->shared->state);
        if (state == PSP_STATE_READY)
            return 0;
        if (state == PSP_STATE_FAILED) {
            int err = atomic_load(&ch->shared->startup_error);
            return err > 0 ? err : EPIPE;
        }
        int64_t left = deadline - psp_now_ms();
        if (left <= 0)
            return ETIMEDOUT;
        struct pollfd fds[2] = {{.fd = ch->reply_fd, .events = POLLIN}, {.fd = ch->proxy_pidfd, .events = POLLIN}};
        int n = poll(fds, 2, (int)left);
        if (n < 0 && errno != EINTR)
            return errno;
        if (n > 0 && (fds[0].revents & POLLIN)) {
            uint64_t value;
            if (read(ch->reply_fd, &value, sizeof(value)) < 0 && errno != EAGAIN)
                return errno;
        } else if (n > 0 && fds[1].revents) {
            /* Died: unless it managed to report a failure first, that is EPIPE. */
            state = atomic_load(&ch->shared->state);
            if (state == PSP_STATE_FAILED)
                continue;
            return EPIPE;
        }
    }
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Stops the current proxy and releases what belongs to it. With `retire`, its segment
 * stays mapped until the channel is stopped (see struct psp_retired_segment). */
static void stop_proxy(struct psp_channel *ch, bool retire)
{
    kill_and_reap_proxy(ch);
    close_fd(&ch->proxy_pidfd);
    close_fd(&ch->reply_fd);
    close_fd(&ch->doorbell_fd);
    close_fd(&ch->socket_fd);
    for (unsigned k = 0; k < PSP_RING_SLOTS; k++)
        close_fd(&ch->slot_fds[k]);
    if (ch->shared != NULL) {
        struct psp_retired_segment *r = retire ? malloc(sizeof(*r)) : NULL;
        if (r != NULL) {
            *r = (struct psp_retired_segment){.next = ch->retired, .map = ch->shared, .size = ch->size};
            ch->retired = r;
        } else {
            munmap(ch->shared, ch->size);
        }
    }
    __atomic_store_n(&ch->shared, NULL, __ATOMIC_RELEASE);
}

static void start_failed(struct psp_channel *ch);

/* The first half of a start: segment, eventfds, spawn, pin. */
static int start_proxy_begin(struct psp_channel *ch)
{
    const struct psp_proxy_config *cfg = &ch->config;
    ch->proxy_pid = -1;
    ch->broken = false;
    int proxy_socket = -1;
    int err = 0;
    int pair[2];
    ch->reply_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ch->doorbell_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    bool slots_ok = true;
    for (unsigned k = 0; k < PSP_RING_SLOTS; k++) {
        ch->slot_busy[k] = false;
        slots_ok &= (ch->slot_fds[k] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) >= 0;
    }
    ch->busy = 0;
    if (ch->reply_fd < 0 || ch->doorbell_fd < 0 || !slots_ok ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
        err = errno;
        goto fail;
    }
    ch->socket_fd = pair[0];
    proxy_socket = pair[1];
    if ((err = create_segment(ch, cfg->buffer_size ? cfg->buffer_size : PSP_DEFAULT_BUFFER_SIZE)) != 0)
        goto fail;

    char config[64];
    unsigned flags = (cfg->relay ? PSP_CONFIG_RELAY : 0) | (cfg->flags & PSPAWN_CTX_PREFAULT ? PSP_CONFIG_PREFAULT : 0);
    snprintf(config, sizeof(config), "%u:%d:%u", PSP_PROTOCOL_VERSION, (int)getpid(), flags);
    char **env = build_proxy_env(cfg->proxy_envp ? cfg->proxy_envp : environ, cfg->proxy_library, config,
                                 !(cfg->flags & PSPAWN_CTX_NO_BIND_NOW));
    if (env == NULL) {
        err = ENOMEM;
        goto fail;
    }
    err = spawn_proxy(ch, proxy_socket, env);
    free_proxy_env(env);
    close_fd(&proxy_socket);
    if (err != 0)
        goto fail;
    ch->proxy_pidfd = pidfd_open_checked(ch->proxy_pid);
    if (ch->proxy_pidfd < 0) {
        err = errno;
        goto fail;
    }
    int timeout = cfg->startup_timeout_ms > 0 ? cfg->startup_timeout_ms : PSP_DEFAULT_STARTUP_TIMEOUT_MS;
    ch->start_deadline = psp_now_ms() + timeout;
    return 0;
fail:
    close_fd(&proxy_socket);
    start_failed(ch);
    return err;
}

/* The second half: the handshake, bounded by the deadline set when it was spawned. */
static int start_proxy_end(struct psp_channel *ch)
{
    int64_t left = ch->start_deadline - psp_now_ms();
    int err = await_handshake(ch, left > 0 ? (int)left : 0);
    if (err != 0)
        start_failed(ch);
    return err;
}

static int start_proxy(struct psp_channel *ch)
{
    int err = start_proxy_begin(ch);
    return err != 0 ? err : start_proxy_end(ch);
}

static void start_failed(struct psp_channel *ch)
{
    if (ch->proxy_pid > 0 && ch->proxy_pidfd < 0) {
        /* No pidfd: the pid is still our unreaped child, so it cannot have been reused. */
        kill(ch->proxy_pid, SIGKILL);
        while (waitpid(ch->proxy_pid, NULL, 0) < 0 && errno == EINTR) {
        }
        ch->proxy_pid = -1;
    }
    stop_proxy(ch, false);
    ch->broken = true;
}

void psp_proxy_config_free(struct psp_proxy_config *config)
{
    free(config->path);
    free(config->proxy_library);
    if (config->proxy_envp != NULL) {
        for (size_t i = 0; config->proxy_envp[i] != NULL; i++)
            free(config->proxy_envp[i]);
        free(config->proxy_envp);
    }
    memset(config, 0, sizeof(*config));
}

int psp_channel_start_begin(struct psp_channel *ch, struct psp_proxy_config *config)
{
    memset(ch, 0, sizeof(*ch));
    ch->base.ops = &psp_channel_ops;
    ch->shared = NULL;
    ch->reply_fd = ch->doorbell_fd = ch->socket_fd = ch->proxy_pidfd = -1;
    for (unsigned k = 0; k < PSP_RING_SLOTS; k++)
        ch->slot_fds[k] = -1;
    ch->config = *config;
    memset(config, 0, sizeof(*config));
    ch->base.domain = -1;
    ch->domain = ch->config.cpus;
    if (ch->config.cpus_set) {
        ch->cpus = ch->config.cpus;
        ch->pinned = true;
        if (CPU_COUNT(&ch->config.domain) > 0)
            ch->domain = ch->config.domain;
    } else if (ch->config.core >= 0) {
        CPU_ZERO(&ch->cpus);
        CPU_SET((size_t)ch->config.core, &ch->cpus);
        ch->pinned = true;
        ch->domain = ch->cpus;
    }
    ch->base.domain = ch->config.domain_index;
    int err = psp_credentials_read(&ch->credentials);
    if (err != 0 || (err = pthread_mutex_init(&ch->lock, NULL)) != 0) {
        psp_proxy_config_free(&ch->config);
        return err;
    }
    if ((err = pthread_cond_init(&ch->changed, NULL)) != 0) {
        pthread_mutex_destroy(&ch->lock);
        psp_proxy_config_free(&ch->config);
        return err;
    }
    if ((err = start_proxy_begin(ch)) != 0) {
        pthread_cond_destroy(&ch->changed);
        pthread_mutex_destroy(&ch->lock);
        psp_proxy_config_free(&ch->config);
    }
    return err;
}

int psp_channel_start_end(struct psp_channel *ch)
{
    int err = start_proxy_end(ch);
    if (err != 0) {
        pthread_cond_destroy(&ch->changed);
        pthread_mutex_destroy(&ch->lock);
        psp_proxy_config_free(&ch->config);
    }
    return err;
}

int psp_channel_start(struct psp_channel *ch, struct psp_proxy_config *config)
{
    int err = psp_channel_start_begin(ch, config);
    return err != 0 ? err : psp_channel_start_end(ch);
}

int psp_channel_restart(struct psp_channel *ch)
{
    int restarts = atomic_load(&ch->restarts);
    if (ch->config.max_restarts >= 0 && restarts >= ch->config.max_restarts) {
        /* For good: the dispatcher routes around it (other proxies of the context). */
        atomic_store(&ch->out_of_rotation, true);
        return EPIPE;
    }
    stop_proxy(ch, true);
    atomic_store(&ch->restarts, restarts + 1);
    return start_proxy(ch);
}

void psp_channel_stop(struct psp_channel *ch)
{
    stop_proxy(ch, false);
    while (ch->retired != NULL) {
        struct psp_retired_segment *r = ch->retired;
        ch->retired = r->next;
        munmap(r->map, r->size);
        free(r);
    }
    psp_proxy_config_free(&ch->config);
    pthread_cond_destroy(&ch->changed);
    pthread_mutex_destroy(&ch->lock);
}
