/* A channel's proxy over its life: started (descriptors, segment, exec, handshake; see
 * segment.c and proxy_exec.c), restarted, stopped (proxy_stop.c). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
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
#include "launcher/topology.h"

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

/* Stops the current proxy and releases what belongs to it. With `retire`, its segment
 * stays mapped until the channel is stopped (see struct psp_retired_segment). */
static void stop_proxy(struct psp_channel *ch, bool retire)
{
    psp_kill_and_reap_proxy(ch);
    psp_pool_drain(ch); /* its parked children: dying with it, reaped here */
    psp_close_fd(&ch->proxy_pidfd);
    psp_close_fd(&ch->reply_fd);
    psp_close_fd(&ch->doorbell_fd);
    psp_close_fd(&ch->socket_fd);
    for (unsigned k = 0; k < PSP_RING_SLOTS; k++)
        psp_close_fd(&ch->slot_fds[k]);
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
    if ((err = psp_create_segment(ch, (cfg->buffer_size ? cfg->buffer_size : PSP_DEFAULT_BUFFER_SIZE) +
                                          psp_pool_table_bytes(cfg))) != 0)
        goto fail;

    err = psp_exec_proxy(ch, proxy_socket);
    psp_close_fd(&proxy_socket);
    if (err != 0)
        goto fail;
    ch->proxy_pidfd = pidfd_open_checked(ch->proxy_pid);
    if (ch->proxy_pidfd < 0) {
        err = errno;
        goto fail;
    }
    if (cfg->flags & PSPAWN_CTX_FDS_ABOVE_LIMIT)
        psp_channel_lift_fds(ch);
    int timeout = cfg->startup_timeout_ms > 0 ? cfg->startup_timeout_ms : PSP_DEFAULT_STARTUP_TIMEOUT_MS;
    ch->start_deadline = psp_now_ms() + timeout;
    return 0;
fail:
    psp_close_fd(&proxy_socket);
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
    free(config->library_path);
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
