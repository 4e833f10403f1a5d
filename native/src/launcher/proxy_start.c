/* Starting a proxy: shared segment, reply eventfd, exec with LD_PRELOAD, handshake. */
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
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launcher/internal.h"

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

static int create_segment(struct psp_channel *ch, size_t size, bool relay)
{
    ch->segment_fd = memfd_create("pspawn", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (ch->segment_fd < 0)
        return errno;
    if (ftruncate(ch->segment_fd, (off_t)size) != 0)
        return errno;
    /* A fixed size: neither side can make the other's accesses fault with SIGBUS. */
    if (fcntl(ch->segment_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
        return errno;
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, ch->segment_fd, 0);
    if (map == MAP_FAILED)
        return errno;
    ch->shared = map;
    ch->size = size;

    struct psp_shared *sh = ch->shared;
    sh->magic = PSP_MAGIC;
    sh->version = PSP_PROTOCOL_VERSION;
    sh->size = size;
    sh->launcher_pid = getpid();
    sh->relay = relay;
    sh->relay_offset = (sizeof(*sh) + 63) & ~(uint64_t)63;
    sh->relay_capacity = relay ? PSP_RELAY_CAPACITY : 0;
    sh->data_offset = sh->relay_offset + (uint64_t)sh->relay_capacity * sizeof(struct psp_relay_slot);
    sh->data_offset = (sh->data_offset + 63) & ~(uint64_t)63;
    atomic_store(&sh->state, PSP_STATE_STARTING);
    return 0;
}

static int spawn_proxy(struct psp_channel *ch, const char *path, int proxy_socket, char **env)
{
    /* Move our descriptors out of the way of 3..5 before dup2-ing them there. */
    int seg = fcntl(ch->segment_fd, F_DUPFD_CLOEXEC, 10);
    int rep = seg < 0 ? -1 : fcntl(ch->reply_fd, F_DUPFD_CLOEXEC, 10);
    int sock = rep < 0 ? -1 : fcntl(proxy_socket, F_DUPFD_CLOEXEC, 10);
    int err = 0;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t sa;
    bool fa_ok = false, sa_ok = false;
    if (seg < 0 || rep < 0 || sock < 0) {
        err = errno;
        goto out;
    }
    if ((err = posix_spawn_file_actions_init(&fa)) != 0)
        goto out;
    fa_ok = true;
    if ((err = posix_spawn_file_actions_adddup2(&fa, seg, PSP_FD_SEGMENT)) != 0 ||
        (err = posix_spawn_file_actions_adddup2(&fa, rep, PSP_FD_REPLY)) != 0 ||
        (err = posix_spawn_file_actions_adddup2(&fa, sock, PSP_FD_SOCKET)) != 0 ||
        (err = posix_spawn_file_actions_addclosefrom_np(&fa, PSP_FD_SOCKET + 1)) != 0)
        goto out;
    if ((err = posix_spawnattr_init(&sa)) != 0)
        goto out;
    sa_ok = true;
    posix_spawnattr_setflags(&sa, psp_spawnattr_default_signals(&sa));

    char *const argv[] = {(char *)path, NULL};
    err = posix_spawn(&ch->proxy_pid, path, &fa, &sa, argv, env);
out:
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    if (sa_ok)
        posix_spawnattr_destroy(&sa);
    if (seg >= 0)
        close(seg);
    if (rep >= 0)
        close(rep);
    if (sock >= 0)
        close(sock);
    return err;
}

static void kill_and_reap_proxy(struct psp_channel *ch)
{
    if (ch->proxy_pid <= 0)
        return;
    if (ch->proxy_pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, ch->proxy_pidfd, SIGKILL, NULL, 0);
        siginfo_t info;
        /* ECHILD is fine: a runtime that reaps every child (pid 1) may have done it. */
        while (waitid(P_PIDFD, (id_t)ch->proxy_pidfd, &info, WEXITED) != 0 && errno == EINTR) {
        }
    } else {
        kill(ch->proxy_pid, SIGKILL);
        while (waitpid(ch->proxy_pid, NULL, 0) < 0 && errno == EINTR) {
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

static int pin_proxy(pid_t pid, int core)
{
    if (core < 0)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET((size_t)core, &set);
    return sched_setaffinity(pid, sizeof(set), &set) == 0 ? 0 : errno;
}

int psp_channel_start(struct psp_channel *ch, const char *path, const char *proxy_library,
                      const pspawn_context_attr_t *attr, bool relay)
{
    memset(ch, 0, sizeof(*ch));
    ch->segment_fd = ch->reply_fd = ch->proxy_pidfd = ch->socket_fd = -1;
    int proxy_socket = -1;
    ch->proxy_pid = -1;
    ch->relay = relay;
    ch->doorbell_signo = SIGRTMIN + PSP_DOORBELL_OFFSET;
    ch->request_timeout_ms = attr->request_timeout_ms;
    ch->exec_path_bytes = strlen(path) + 1;
    int err = pthread_mutex_init(&ch->lock, NULL);
    if (err != 0)
        return err;

    size_t size = attr->buffer_size ? attr->buffer_size : PSP_DEFAULT_BUFFER_SIZE;
    if ((err = create_segment(ch, size, relay)) != 0)
        goto fail;
    ch->reply_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int pair[2];
    if (ch->reply_fd < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
        err = errno;
        goto fail;
    }
    ch->socket_fd = pair[0];
    proxy_socket = pair[1];

    char config[128];
    unsigned flags = (relay ? PSP_CONFIG_RELAY : 0) | (attr->flags & PSPAWN_CTX_PREFAULT ? PSP_CONFIG_PREFAULT : 0);
    snprintf(config, sizeof(config), "1:%d:%d:%u", (int)getpid(), ch->doorbell_signo, flags);
    char **env = build_proxy_env(attr->proxy_envp ? attr->proxy_envp : environ, proxy_library, config,
                                 !(attr->flags & PSPAWN_CTX_NO_BIND_NOW));
    if (env == NULL) {
        err = ENOMEM;
        goto fail;
    }
    err = spawn_proxy(ch, path, proxy_socket, env);
    free_proxy_env(env);
    close(proxy_socket);
    proxy_socket = -1;
    if (err != 0)
        goto fail;
    ch->proxy_pidfd = pidfd_open_checked(ch->proxy_pid);
    if (ch->proxy_pidfd < 0) {
        err = errno;
        goto fail;
    }
    if ((err = pin_proxy(ch->proxy_pid, attr->core)) != 0)
        goto fail;
    int timeout = attr->startup_timeout_ms > 0 ? attr->startup_timeout_ms : PSP_DEFAULT_STARTUP_TIMEOUT_MS;
    if ((err = await_handshake(ch, timeout)) != 0)
        goto fail;
    return 0;
fail:
    if (proxy_socket >= 0)
        close(proxy_socket);
    psp_channel_stop(ch);
    return err;
}

void psp_channel_stop(struct psp_channel *ch)
{
    kill_and_reap_proxy(ch);
    if (ch->proxy_pidfd >= 0)
        close(ch->proxy_pidfd);
    if (ch->reply_fd >= 0)
        close(ch->reply_fd);
    if (ch->segment_fd >= 0)
        close(ch->segment_fd);
    if (ch->socket_fd >= 0)
        close(ch->socket_fd);
    if (ch->shared != NULL)
        munmap(ch->shared, ch->size);
    ch->proxy_pidfd = ch->reply_fd = ch->segment_fd = ch->socket_fd = -1;
    ch->shared = NULL;
    pthread_mutex_destroy(&ch->lock);
}
