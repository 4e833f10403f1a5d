/* Sending spawn requests to a proxy and collecting the results. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/internal.h"

static int ring_doorbell(struct psp_channel *ch)
{
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    info.si_signo = ch->doorbell_signo;
    info.si_code = SI_QUEUE;
    info.si_pid = getpid();
    info.si_uid = getuid();
    /* Through the pidfd: a reaped-and-reused pid can never receive our doorbell. */
    if (syscall(SYS_pidfd_send_signal, ch->proxy_pidfd, ch->doorbell_signo, &info, 0) != 0)
        return errno == ESRCH ? EPIPE : errno;
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

static bool proxy_exited(struct psp_channel *ch)
{
    struct pollfd p = {.fd = ch->proxy_pidfd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* Kill an unresponsive proxy and wait until it is gone, so that `progress` is final. */
static void kill_proxy(struct psp_channel *ch)
{
    syscall(SYS_pidfd_send_signal, ch->proxy_pidfd, SIGKILL, NULL, 0);
    struct pollfd p = {.fd = ch->proxy_pidfd, .events = POLLIN};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
}

/* Wait until the proxy completes request `seq`. The timeout is a liveness limit: it
 * restarts whenever the proxy reports progress, so a long batch never times out. */
static int await_reply(struct psp_channel *ch, uint64_t seq)
{
    int timeout = ch->request_timeout_ms == 0 ? PSP_DEFAULT_REQUEST_TIMEOUT_MS : ch->request_timeout_ms;
    uint32_t last_progress = 0;
    int64_t deadline = timeout < 0 ? INT64_MAX : psp_now_ms() + timeout;
    while (atomic_load(&ch->shared->reply_seq) != seq) {
        uint32_t progress = atomic_load(&ch->shared->progress);
        if (progress != last_progress && timeout >= 0) {
            last_progress = progress;
            deadline = psp_now_ms() + timeout;
        }
        int64_t left = deadline - psp_now_ms();
        if (left <= 0) {
            kill_proxy(ch);
            return ETIMEDOUT;
        }
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

/* Data area: [strings | results]. The strings are packed once per call; the largest
 * batch is what fits in the rest. */
static int batch_capacity(const struct psp_channel *ch, size_t string_bytes)
{
    uint64_t results_offset = align64(ch->shared->data_offset + string_bytes);
    if (results_offset + sizeof(int32_t) > ch->size)
        return 0;
    uint64_t fit = (ch->size - results_offset) / sizeof(int32_t);
    return fit > (1u << 20) ? (1 << 20) : (int)fit;
}

/* Publish `request`, ring, and wait for the reply. On failure the channel is broken
 * and the proxy is dead, so everything it wrote is final. Returns 0 or an errno. */
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
        if (!proxy_exited(ch))
            kill_proxy(ch);
    }
    return err;
}

static int submit_batch(struct psp_channel *ch, int argc, int envc, size_t string_bytes, int count,
                        pid_t *pids, int *errors)
{
    struct psp_shared *sh = ch->shared;
    uint64_t strings_offset = sh->data_offset;
    uint64_t results_offset = align64(strings_offset + string_bytes);
    _Atomic int32_t *results = psp_results(sh, results_offset);

    struct psp_request request = {
        .count = (uint32_t)count,
        .argc = (uint32_t)argc,
        .envc = (uint32_t)envc,
        .strings_offset = strings_offset,
        .strings_length = string_bytes,
        .results_offset = results_offset,
    };
    int err = round_trip(ch, &request);
    /* Whatever happened, the first `progress` results are final and reported. */
    uint32_t done = atomic_load(&sh->progress);
    if (err == 0 && (err = atomic_load(&sh->reply_error)) <= 0)
        err = done < (uint32_t)count ? EPROTO : 0;
    int started = 0;
    for (int i = 0; i < count; i++) {
        int32_t r = (uint32_t)i < done ? atomic_load_explicit(&results[i], memory_order_relaxed) : -err;
        pids[i] = r > 0 ? r : -1;
        errors[i] = r > 0 ? 0 : (r < 0 ? -r : EPROTO);
        started += r > 0;
    }
    return started;
}

int psp_channel_ping(struct psp_channel *ch)
{
    pthread_mutex_lock(&ch->lock);
    struct psp_request ping = {.count = 0};
    int err = ch->broken ? EPIPE : round_trip(ch, &ping);
    pthread_mutex_unlock(&ch->lock);
    return err;
}

static void fail_all(pid_t *pids, int *errors, int count, int err)
{
    for (int i = 0; i < count; i++) {
        pids[i] = -1;
        errors[i] = err;
    }
}

int psp_channel_spawn(struct psp_channel *ch, char *const argv[], char *const envp[], int count,
                      pid_t *pids, int *errors)
{
    size_t bytes;
    int argc, envc, err = 0;
    if (psp_measure(argv, envp, &bytes, &argc, &envc) != 0)
        err = errno;
    else if (argc == 0)
        err = EINVAL;
    else if (bytes > (size_t)sysconf(_SC_ARG_MAX))
        err = E2BIG;

    pthread_mutex_lock(&ch->lock);
    int capacity = err == 0 ? batch_capacity(ch, bytes) : 0;
    if (err == 0 && capacity == 0)
        err = E2BIG;
    if (err == 0 && ch->broken)
        err = EPIPE;
    if (err != 0) {
        pthread_mutex_unlock(&ch->lock);
        fail_all(pids, errors, count, err);
        return 0;
    }
    psp_pack((char *)ch->shared + ch->shared->data_offset, argv, envp);
    int started = 0;
    for (int first = 0; first < count;) {
        int batch = count - first < capacity ? count - first : capacity;
        started += submit_batch(ch, argc, envc, bytes, batch, pids + first, errors + first);
        first += batch;
        if (ch->broken) {
            fail_all(pids + first, errors + first, count - first, EPIPE);
            break;
        }
    }
    pthread_mutex_unlock(&ch->lock);
    return started;
}
