/* The vector API: per-instance argv/envp/CPUs, synchronously or as a session. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "launcher/internal.h"

extern char **environ;

int psp_run_plan(pspawn_context_t *ctx, pid_t *pids, int *errors, int *stdio_fds, int n,
                 const pspawn_instance_t *instances, char *const argv[], char *const envp[],
                 const pspawn_attr_t *attr, _Atomic bool *cancel, int *first_error);

static bool vector_args_ok(pspawn_context_t *ctx, const pspawn_instance_t *instances, int n,
                           const pspawn_attr_t *attr)
{
    return ctx != NULL && ctx->impl != NULL && n >= 0 && n <= PSPAWN_MAX_SPAWNS && (instances != NULL || n == 0) &&
           psp_attr_pipe_count(attr) == 0;
}

int pspawn_vector(pid_t *pids, int *errors, pspawn_context_t *ctx, const pspawn_instance_t *instances, int n,
                  const pspawn_attr_t *attr)
{
    if (pids == NULL || !vector_args_ok(ctx, instances, n, attr)) {
        errno = EINVAL;
        return -1;
    }
    int first_error = 0;
    int started = psp_run_plan(ctx, pids, errors, NULL, n, instances, NULL, NULL, attr, NULL, &first_error);
    if (first_error != 0)
        errno = first_error;
    return started;
}

/* ---- Sessions ------------------------------------------------------------------- */

struct pspawn_session {
    pspawn_context_t ctx;      /* a copy of the caller's handle (the impl pointer) */
    int n;
    pspawn_instance_t *instances;
    char *arena;               /* every copied string and pointer array */
    cpu_set_t *cpus;           /* copied CPU sets, one per instance that has one */
    pspawn_attr_t *attr;
    pid_t *pids;
    int *errors;
    int started;
    int mode;                  /* the backend that serves it (pspawn_request_mode) */
    int fd;                    /* eventfd, written once when done */
    _Atomic bool done;
    _Atomic bool cancel;
    pthread_t thread;
};

/* Bytes to copy an entry array (pointers + strings). */
static size_t list_bytes(char *const *list)
{
    size_t n = 0, bytes = 0;
    for (; list[n] != NULL; n++)
        bytes += strlen(list[n]) + 1;
    return (n + 1) * sizeof(char *) + bytes;
}

static char **copy_list(char *const *list, char **cursor)
{
    size_t n = 0;
    while (list[n] != NULL)
        n++;
    char **out = (char **)*cursor;
    char *strings = *cursor + (n + 1) * sizeof(char *);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(list[i]) + 1;
        memcpy(strings, list[i], len);
        out[i] = strings;
        strings += len;
    }
    out[n] = NULL;
    /* Keep the next array aligned for its pointers. */
    size_t used = (size_t)(strings - *cursor);
    *cursor += (used + sizeof(char *) - 1) & ~(sizeof(char *) - 1);
    return out;
}

static size_t aligned(size_t v)
{
    return (v + sizeof(char *) - 1) & ~(sizeof(char *) - 1);
}

/* Deep copies of the instances. Consecutive instances that share arrays share the copy
 * (so they still travel once); NULL envp becomes one copy of environ, taken now. */
static int copy_instances(struct pspawn_session *s, const pspawn_instance_t *src, int n)
{
    char *const *env_now = environ;
    size_t bytes = aligned(list_bytes(env_now));
    int ncpus = 0;
    for (int i = 0; i < n; i++) {
        if (src[i].argv != NULL && (i == 0 || src[i].argv != src[i - 1].argv))
            bytes += aligned(list_bytes(src[i].argv));
        if (src[i].envp != NULL && (i == 0 || src[i].envp != src[i - 1].envp))
            bytes += aligned(list_bytes(src[i].envp));
        ncpus += src[i].cpus != NULL;
    }
    s->instances = calloc((size_t)(n > 0 ? n : 1), sizeof(*s->instances));
    s->arena = malloc(bytes);
    s->cpus = calloc((size_t)(ncpus > 0 ? ncpus : 1), sizeof(cpu_set_t));
    if (s->instances == NULL || s->arena == NULL || s->cpus == NULL)
        return ENOMEM;
    char *cursor = s->arena;
    char **env_copy = copy_list(env_now, &cursor);
    int c = 0;
    for (int i = 0; i < n; i++) {
        pspawn_instance_t *out = &s->instances[i];
        if (src[i].argv != NULL)
            out->argv = i > 0 && src[i].argv == src[i - 1].argv ? s->instances[i - 1].argv : copy_list(src[i].argv, &cursor);
        if (src[i].envp == NULL)
            out->envp = env_copy;
        else
            out->envp = i > 0 && src[i].envp == src[i - 1].envp ? s->instances[i - 1].envp : copy_list(src[i].envp, &cursor);
        if (src[i].cpus != NULL) {
            /* What does not fit a cpu_set_t is checked (and refused) by the plan. */
            size_t keep = src[i].cpusetsize < sizeof(cpu_set_t) ? src[i].cpusetsize : sizeof(cpu_set_t);
            memcpy(&s->cpus[c], src[i].cpus, keep);
            bool beyond = false;
            for (size_t b = keep; b < src[i].cpusetsize; b++)
                beyond |= ((const unsigned char *)src[i].cpus)[b] != 0;
            out->cpus = &s->cpus[c++];
            out->cpusetsize = beyond || src[i].cpusetsize == 0 ? 0 : sizeof(cpu_set_t); /* 0: EINVAL */
        }
    }
    return 0;
}

static void session_release(struct pspawn_session *s)
{
    free(s->instances);
    free(s->arena);
    free(s->cpus);
    pspawn_attr_destroy(s->attr);
    free(s->pids);
    free(s->errors);
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

static void *session_main(void *arg)
{
    struct pspawn_session *s = arg;
    int first_error = 0;
    (void)pthread_setname_np(pthread_self(), "pspawn session"); /* for ps, top, and the leak tests */
    s->started = psp_run_plan(&s->ctx, s->pids, s->errors, NULL, s->n, s->instances, NULL, NULL, s->attr,
                              &s->cancel, &first_error);
    struct pspawn_impl *impl = s->ctx.impl;
    atomic_store(&s->done, true);
    uint64_t one = 1;
    while (write(s->fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&impl->sessions_lock);
    if (--impl->sessions_active == 0)
        pthread_cond_broadcast(&impl->sessions_done);
    pthread_mutex_unlock(&impl->sessions_lock);
    return NULL;
}

int pspawn_vector_async(pspawn_session_t **session, pspawn_context_t *ctx, const pspawn_instance_t *instances, int n,
                        const pspawn_attr_t *attr)
{
    if (session == NULL || !vector_args_ok(ctx, instances, n, attr)) {
        errno = EINVAL;
        return -1;
    }
    *session = NULL;
    struct pspawn_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        errno = ENOMEM;
        return -1;
    }
    s->fd = -1;
    s->ctx = *ctx;
    s->n = n;
    s->mode = pspawn_request_mode(ctx, attr);
    int err = copy_instances(s, instances, n);
    if (err == 0 && attr != NULL)
        err = psp_attr_clone(attr, &s->attr);
    if (err == 0) {
        s->pids = malloc((size_t)(n > 0 ? n : 1) * sizeof(pid_t));
        s->errors = malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
        if (s->pids == NULL || s->errors == NULL)
            err = ENOMEM;
    }
    if (err == 0 && (s->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        err = errno;
    if (err != 0) {
        session_release(s);
        errno = err;
        return -1;
    }
    struct pspawn_impl *impl = ctx->impl;
    pthread_mutex_lock(&impl->sessions_lock);
    impl->sessions_active++;
    pthread_mutex_unlock(&impl->sessions_lock);
    /* The launching thread blocks no signal the caller expects to receive. */
    pthread_attr_t ta;
    pthread_attr_init(&ta);
    pthread_attr_setstacksize(&ta, 256 << 10);
    err = pthread_create(&s->thread, &ta, session_main, s);
    pthread_attr_destroy(&ta);
    if (err != 0) {
        pthread_mutex_lock(&impl->sessions_lock);
        if (--impl->sessions_active == 0)
            pthread_cond_broadcast(&impl->sessions_done);
        pthread_mutex_unlock(&impl->sessions_lock);
        session_release(s);
        errno = EAGAIN;
        return -1;
    }
    *session = s;
    return 0;
}

int pspawn_session_fd(pspawn_session_t *s)
{
    if (s == NULL) {
        errno = EINVAL;
        return -1;
    }
    return s->fd;
}

int pspawn_session_wait(pspawn_session_t *s, int timeout_ms)
{
    if (s == NULL) {
        errno = EINVAL;
        return -1;
    }
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : psp_now_ms() + timeout_ms;
    while (!atomic_load(&s->done)) {
        int64_t left = deadline - psp_now_ms();
        if (left <= 0 && timeout_ms >= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        int wait = timeout_ms < 0 ? -1 : (int)(left > 1000 ? 1000 : left);
        if (poll(&p, 1, wait) < 0 && errno != EINTR)
            return -1;
    }
    return 0;
}

int pspawn_session_results(pspawn_session_t *s, pid_t *pids, int *errors)
{
    if (s == NULL) {
        errno = EINVAL;
        return -1;
    }
    if (!atomic_load(&s->done)) {
        errno = EAGAIN;
        return -1;
    }
    if (pids != NULL)
        memcpy(pids, s->pids, (size_t)s->n * sizeof(pid_t));
    if (errors != NULL)
        memcpy(errors, s->errors, (size_t)s->n * sizeof(int));
    return s->started;
}

int pspawn_session_mode(pspawn_session_t *s)
{
    if (s == NULL) {
        errno = EINVAL;
        return -1;
    }
    if (s->mode < 0)
        errno = ENOTSUP;
    return s->mode;
}

void pspawn_session_cancel(pspawn_session_t *s)
{
    if (s != NULL)
        atomic_store(&s->cancel, true);
}

void pspawn_session_free(pspawn_session_t *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->cancel, true);
    pthread_join(s->thread, NULL);
    session_release(s);
}
