/* Sending spawn requests to a proxy and collecting the results. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/internal.h"

/* An eventfd write: no signal, so no permission check after a credential change and no
 * pending-signal quota that other processes of the user can exhaust. */
static int ring_doorbell(struct psp_channel *ch)
{
    uint64_t one = 1;
    while (write(ch->doorbell_fd, &one, sizeof(one)) < 0) {
        if (errno != EINTR)
            return errno; /* EAGAIN needs 2^64 - 2 unread rings: not transient */
    }
    return 0;
}

void psp_channel_ring(struct psp_channel *ch)
{
    pthread_mutex_lock(&ch->lock);
    if (!ch->broken)
        (void)ring_doorbell(ch);
    pthread_mutex_unlock(&ch->lock);
}

static void drain_reply(struct psp_channel *ch)
{
    uint64_t value;
    while (read(ch->reply_fd, &value, sizeof(value)) < 0 && errno == EINTR) {
    }
}

static bool proxy_alive(const struct psp_channel *ch)
{
    struct pollfd p = {.fd = ch->proxy_pidfd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

/* Before a request: a proxy that died since the last one (killed, OOM) is replaced, so
 * the request does not fail for a death nobody could have prevented. */
static int ensure_proxy(struct psp_channel *ch)
{
    if (!ch->broken && proxy_alive(ch))
        return 0;
    ch->broken = true;
    return psp_channel_restart(ch);
}

/* Wait until the proxy completes request `seq`. The timeout is a liveness limit: it
 * restarts whenever the proxy reports progress, so a long batch never times out. */
static int await_reply(struct psp_channel *ch, uint64_t seq)
{
    int timeout = ch->config.request_timeout_ms == 0 ? PSP_DEFAULT_REQUEST_TIMEOUT_MS : ch->config.request_timeout_ms;
    uint32_t last_progress = 0;
    int64_t deadline = timeout < 0 ? INT64_MAX : psp_now_ms() + timeout;
    while (atomic_load(&ch->shared->reply_seq) != seq) {
        uint32_t progress = atomic_load(&ch->shared->progress);
        if (progress != last_progress && timeout >= 0) {
            last_progress = progress;
            deadline = psp_now_ms() + timeout;
        }
        int64_t left = deadline - psp_now_ms();
        if (left <= 0)
            return ETIMEDOUT;
        struct pollfd fds[2] = {{.fd = ch->reply_fd, .events = POLLIN}, {.fd = ch->proxy_pidfd, .events = POLLIN}};
        int n = poll(fds, 2, (int)(left < 1000 ? left : 1000));
        if (n < 0 && errno != EINTR)
            return errno;
        if (n > 0 && (fds[0].revents & POLLIN))
            drain_reply(ch);
        if (n > 0 && fds[1].revents && atomic_load(&ch->shared->reply_seq) != seq)
            return EPIPE;
    }
    return 0;
}

static uint64_t align64(uint64_t v)
{
    return (v + 63) & ~(uint64_t)63;
}

/* Where one call's data goes: [strings | options | results | errors]. The strings and
 * options are written once per call; a batch is as many instances as fit the rest. */
struct batch_layout {
    uint64_t strings_offset;
    size_t string_bytes;
    uint64_t options_offset;
    size_t option_bytes;
    uint64_t arrays_offset;
    int capacity;
};

/* Instances per batch when pipes travel: bounds the descriptors in flight (the kernel
 * limits in-flight SCM_RIGHTS descriptors to RLIMIT_NOFILE) and those held at once. */
#define PSP_MAX_PIPED_BATCH 64

static void plan_layout(const struct psp_channel *ch, size_t string_bytes, size_t option_bytes,
                        bool piped, struct batch_layout *out)
{
    out->strings_offset = ch->shared->data_offset;
    out->string_bytes = string_bytes;
    out->options_offset = align64(out->strings_offset + string_bytes);
    out->option_bytes = option_bytes;
    out->arrays_offset = align64(out->options_offset + option_bytes);
    out->capacity = 0;
    if (out->arrays_offset + 2 * sizeof(int32_t) > ch->size)
        return;
    uint64_t fit = (ch->size - out->arrays_offset) / (2 * sizeof(int32_t));
    if (fit > PSP_MAX_COUNT)
        fit = PSP_MAX_COUNT;
    if (piped && fit > PSP_MAX_PIPED_BATCH)
        fit = PSP_MAX_PIPED_BATCH;
    out->capacity = (int)fit;
}

/* Publish `request`, ring, and wait for the reply. On failure the channel is broken
 * and the proxy is stopped, so everything it wrote is final. Returns 0 or an errno. */
static int round_trip(struct psp_channel *ch, const struct psp_request *request)
{
    struct psp_shared *sh = ch->shared;
    sh->request = *request;
    atomic_store(&sh->progress, 0);
    atomic_store(&sh->reply_error, 0);
    uint64_t seq = atomic_load(&sh->request_seq) + 1;
    atomic_store(&sh->request_seq, seq);
    int err = ring_doorbell(ch);
    if (err == 0)
        err = await_reply(ch, seq);
    if (err != 0) {
        ch->broken = true;
        /* Bounded: a proxy we cannot stop makes `progress` unreliable, but it stops
         * forking at the hang-up, which terminate sends too. */
        (void)psp_channel_terminate(ch);
    }
    return err;
}

int psp_send_fds(int socket_fd, const int *fds, int count)
{
    for (int sent = 0; sent < count;) {
        int n = count - sent < PSP_MAX_FDS_PER_MESSAGE ? count - sent : PSP_MAX_FDS_PER_MESSAGE;
        char byte = 0;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        union {
            char buf[CMSG_SPACE(PSP_MAX_FDS_PER_MESSAGE * sizeof(int))];
            struct cmsghdr align;
        } control;
        memset(&control, 0, sizeof(control));
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = CMSG_SPACE((size_t)n * sizeof(int))};
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
        memcpy(CMSG_DATA(cmsg), fds + sent, (size_t)n * sizeof(int));
        ssize_t r;
        while ((r = sendmsg(socket_fd, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
        }
        if (r < 0)
            return errno == ECONNREFUSED || errno == EPIPE ? EPIPE : errno;
        sent += n;
    }
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Creates the batch's pipes: the caller's ends go to stdio_fds, the child ends (in
 * instance order, stdin/stdout/stderr order within one) to child_fds. */
static int make_pipes(const pspawn_attr_t *attr, int count, int *stdio_fds, int *child_fds)
{
    int n = 0;
    for (int i = 0; i < count; i++) {
        for (int k = 0; k < 3; k++) {
            stdio_fds[3 * i + k] = -1;
            if (attr->stdio[k].kind != PSP_STDIO_PIPE)
                continue;
            int p[2];
            if (pipe2(p, O_CLOEXEC) != 0)
                return errno;
            /* stdin: the child reads; stdout/stderr: the child writes. */
            stdio_fds[3 * i + k] = k == 0 ? p[1] : p[0];
            child_fds[n++] = k == 0 ? p[0] : p[1];
        }
    }
    return 0;
}

static int submit_batch(struct psp_channel *ch, const struct batch_layout *layout, int argc, int envc,
                        const pspawn_attr_t *attr, const int *shared_fds, int nshared, int count,
                        pid_t *pids, int *errors, int *stdio_fds)
{
    struct psp_shared *sh = ch->shared;
    uint64_t results_offset = layout->arrays_offset;
    uint64_t errors_offset = results_offset + (uint64_t)count * sizeof(int32_t);
    _Atomic int32_t *results = psp_results(sh, results_offset);
    _Atomic int32_t *child_errors = psp_errors(sh, errors_offset);

    int npipes = psp_attr_pipe_count(attr);
    int fd_count = nshared + npipes * count;
    int *fds = NULL;
    int err = 0;
    if (fd_count > 0) {
        fds = malloc((size_t)fd_count * sizeof(int));
        if (fds == NULL)
            err = ENOMEM;
        else {
            memcpy(fds, shared_fds, (size_t)nshared * sizeof(int));
            for (int i = 0; i < fd_count - nshared; i++)
                fds[nshared + i] = -1;
            if (npipes > 0)
                err = make_pipes(attr, count, stdio_fds, fds + nshared);
            if (err == 0 && (err = psp_send_fds(ch->socket_fd, fds, fd_count)) != 0)
                ch->broken = true; /* the socket may hold part of this batch: unusable */
            for (int i = nshared; i < fd_count; i++)
                close_fd(&fds[i]); /* the child ends now travel in the socket */
        }
    }

    /* Zero: no child. The kernel itself writes each pid here as the proxy forks. */
    for (int i = 0; i < count; i++)
        atomic_store_explicit(&results[i], 0, memory_order_relaxed);
    bool sent = err == 0;
    if (sent) {
        struct psp_request request = {
            .count = (uint32_t)count,
            .flags = attr != NULL ? PSP_REQ_OPTIONS : 0,
            .argc = (uint32_t)argc,
            .envc = (uint32_t)envc,
            .strings_offset = layout->strings_offset,
            .strings_length = layout->string_bytes,
            .results_offset = results_offset,
            .errors_offset = errors_offset,
            .options_offset = attr != NULL ? layout->options_offset : 0,
            .options_length = attr != NULL ? layout->option_bytes : 0,
            .fd_count = (uint32_t)fd_count,
        };
        err = round_trip(ch, &request);
    }
    free(fds);
    /* Whatever happened, every child that exists is reported: a positive slot is a pid
     * (written by the kernel at fork), a negative one the errno of a failed fork, and a
     * zero one an instance never forked, which gets the request's error. */
    uint32_t done = sent ? atomic_load(&sh->progress) : 0;
    if (err == 0 && (err = atomic_load(&sh->reply_error)) <= 0)
        err = done < (uint32_t)count ? EPROTO : 0;
    int started = 0;
    for (int i = 0; i < count; i++) {
        int32_t r = sent ? atomic_load_explicit(&results[i], memory_order_relaxed) : 0;
        if (r == 0)
            r = -(err != 0 ? err : EPROTO);
        int32_t child_error = r > 0 && attr != NULL ? atomic_load_explicit(&child_errors[i], memory_order_relaxed) : 0;
        if (r > 0 && child_error != 0) {
            /* It failed before main and exited: reap it here (relay: the proxy does). */
            if (!ch->config.relay)
                while (waitpid(r, NULL, 0) < 0 && errno == EINTR) {
                }
            r = -child_error;
        }
        pids[i] = r > 0 ? r : -1;
        errors[i] = r > 0 ? 0 : (r < 0 ? -r : EPROTO);
        started += r > 0;
        if (r <= 0 && stdio_fds != NULL && npipes > 0)
            for (int k = 0; k < 3; k++)
                close_fd(&stdio_fds[3 * i + k]);
    }
    return started;
}

static void fail_all(pid_t *pids, int *errors, int *stdio_fds, int count, int err)
{
    for (int i = 0; i < count; i++) {
        pids[i] = -1;
        errors[i] = err;
        if (stdio_fds != NULL)
            stdio_fds[3 * i] = stdio_fds[3 * i + 1] = stdio_fds[3 * i + 2] = -1;
    }
}

int psp_channel_spawn(struct psp_channel *ch, char *const argv[], char *const envp[], int count,
                      const pspawn_attr_t *attr, pid_t *pids, int *errors, int *stdio_fds)
{
    size_t bytes;
    int argc, envc, err = 0;
    if (psp_measure(argv, envp, &bytes, &argc, &envc) != 0)
        err = errno;
    else if (argc == 0)
        err = EINVAL;
    else if (psp_exceeds_arg_limits(argv, envp, strlen(ch->config.path) + 1))
        err = E2BIG;
    else if (psp_attr_pipe_count(attr) > 0 && stdio_fds == NULL)
        err = EINVAL;

    pthread_mutex_lock(&ch->lock);
    struct batch_layout layout = {0};
    if (err == 0 && !psp_credentials_unchanged(&ch->credentials))
        err = EPERM;
    if (err == 0)
        err = ensure_proxy(ch);
    if (err == 0)
        plan_layout(ch, bytes, attr != NULL ? psp_attr_wire_size(attr) : 0, psp_attr_pipe_count(attr) > 0,
                    &layout);
    if (err == 0 && layout.capacity == 0)
        err = E2BIG;
    if (err != 0) {
        pthread_mutex_unlock(&ch->lock);
        fail_all(pids, errors, stdio_fds, count, err);
        return 0;
    }
    psp_pack((char *)ch->shared + layout.strings_offset, argv, envp);
    int shared_fds[3];
    int nshared = 0;
    if (attr != NULL) {
        psp_attr_encode(attr, (char *)ch->shared + layout.options_offset, shared_fds);
        nshared = (int)((struct psp_wire_options *)((char *)ch->shared + layout.options_offset))->shared_fds;
    }
    int started = 0;
    for (int first = 0; first < count;) {
        int batch = count - first < layout.capacity ? count - first : layout.capacity;
        started += submit_batch(ch, &layout, argc, envc, attr, shared_fds, nshared, batch, pids + first,
                                errors + first, stdio_fds != NULL ? stdio_fds + 3 * first : NULL);
        first += batch;
        if (ch->broken) {
            fail_all(pids + first, errors + first, stdio_fds != NULL ? stdio_fds + 3 * first : NULL,
                     count - first, EPIPE);
            break;
        }
    }
    pthread_mutex_unlock(&ch->lock);
    return started;
}

int psp_channel_ping(struct psp_channel *ch)
{
    pthread_mutex_lock(&ch->lock);
    struct psp_request ping = {.count = 0};
    int err = ensure_proxy(ch);
    if (err == 0)
        err = round_trip(ch, &ping);
    pthread_mutex_unlock(&ch->lock);
    return err;
}
