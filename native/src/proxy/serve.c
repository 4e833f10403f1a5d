/* The proxy's life: start-up checks, handshake, then the request loop (fork on request). */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/self.h"
#include "proxy/proxy.h"

static void notify(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
}

static void notify_launcher(struct psp_proxy *p)
{
    notify(p->reply_fd);
}

static _Noreturn void fail_startup(struct psp_proxy *p, int err)
{
    if (p->shared != NULL) {
        atomic_store(&p->shared->startup_error, err);
        atomic_store(&p->shared->state, PSP_STATE_FAILED);
        notify_launcher(p);
    }
    _exit(127);
}

/* The segment is the first message on the socket: the launcher sent it before it
 * started us and closed its own descriptor. Ours is closed once it is mapped, so no
 * descriptor of it is left in any process for others to reopen. */
static int map_segment(struct psp_proxy *p)
{
    int fd;
    int err = psp_receive_fds(&fd, 1);
    if (err != 0)
        return err;
    struct stat st;
    void *map = MAP_FAILED;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(struct psp_shared))
        err = EPROTO;
    else if ((map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED)
        err = errno;
    close(fd);
    if (err != 0)
        return err;
    struct psp_shared *sh = map;
    p->shared = sh;
    p->size = (size_t)st.st_size;
    if (sh->magic != PSP_MAGIC || sh->version != PSP_PROTOCOL_VERSION || sh->size != p->size ||
        sh->launcher_pid != p->launcher_pid || (sh->relay != 0) != p->relay)
        return EPROTO;
    uint64_t table_end = sh->relay_offset + (uint64_t)sh->relay_capacity * sizeof(struct psp_relay_slot);
    if (sh->relay_offset < sizeof(*sh) || table_end > sh->data_offset || sh->data_offset > p->size ||
        sh->slot_count != PSP_RING_SLOTS)
        return EPROTO;
    /* Private copy: a CPU mask cannot hurt us, but it must not change under a child. */
    CPU_ZERO(&p->child_cpus);
    memcpy(&p->child_cpus, sh->child_cpus, sizeof(sh->child_cpus) < sizeof(p->child_cpus) ? sizeof(sh->child_cpus) : sizeof(p->child_cpus));
    p->reset_cpus = sh->child_cpus_set != 0 && CPU_COUNT(&p->child_cpus) > 0;
    p->reset_mempolicy = (sh->child_flags & PSP_CHILD_RESET_MEMPOLICY) != 0;
    /* The second message: one reply eventfd per ring slot. */
    err = psp_receive_fds(p->slot_fds, PSP_RING_SLOTS);
    return err != 0 ? err : psp_pool_start(p);
}

/* Forking a process with more than one thread copies only the caller: locks held by
 * the others stay locked forever in every child. */
/* The highest descriptor open now (those of the proxy: later ones are a request's). */
static int highest_descriptor(void)
{
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return INT32_MAX / 2; /* unknown: no descriptor map is ever sure to fit */
    int highest = dirfd(dir);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        int fd = atoi(e->d_name);
        if (fd > highest)
            highest = fd;
    }
    closedir(dir);
    return highest;
}

/* glibc caches the thread id in its thread descriptor (pthread_setaffinity_np, mutex
 * ownership, ... use it). A raw clone does not update it, so we let the kernel write
 * the child's tid there (CLONE_CHILD_SETTID). glibc publishes the field's offset for
 * libthread_db; we use it only if it holds our tid right now. */
static pid_t *find_tid_field(void)
{
    const uint32_t *desc = dlsym(RTLD_DEFAULT, "_thread_db_pthread_tid");
    if (desc == NULL || desc[0] != 32 || desc[2] > 4096 || desc[2] % sizeof(pid_t) != 0)
        return NULL;
    pid_t *field = (pid_t *)((char *)pthread_self() + desc[2]);
    return *field == (pid_t)syscall(SYS_gettid) ? field : NULL;
}

static char *own_library_path(void)
{
    Dl_info info;
    if (dladdr((void *)&psp_serve, &info) == 0 || info.dli_fname == NULL)
        return NULL;
    return strdup(info.dli_fname);
}

/* Relay mode only: SIGCHLD of our children, through a signalfd. */
static int watch_children(struct psp_proxy *p)
{
    if (!p->relay)
        return 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return errno;
    p->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return p->signal_fd < 0 ? errno : 0;
}

/* Watch the launcher as a process, not a thread: PR_SET_PDEATHSIG fires when the
 * launcher *thread* that started us exits, and .NET retires thread-pool threads. */
static int watch_launcher(struct psp_proxy *p)
{
    p->launcher_pidfd = (int)syscall(SYS_pidfd_open, p->launcher_pid, 0);
    if (p->launcher_pidfd < 0)
        return errno;
    if (getppid() != p->launcher_pid)
        _exit(127); /* it died before we could watch it */
    prctl(PR_SET_PDEATHSIG, 0);
    return 0;
}

/* Records each slot's sequence number before READY is published: the first request may
 * follow immediately. */
static void start_up(struct psp_proxy *p)
{
    p->reply_fd = PSP_FD_REPLY;
    p->doorbell_fd = PSP_FD_DOORBELL;
    p->socket_fd = PSP_FD_SOCKET;
    p->signal_fd = p->launcher_pidfd = -1;
    for (uint32_t k = 0; k < PSP_RING_SLOTS; k++)
        p->slot_fds[k] = -1;
    /* The state the target reached main with, before we touch anything. */
    sigprocmask(SIG_BLOCK, NULL, &p->saved_mask);
    /* Not dumpable: our /proc files (fd/, mem, environ) become root's, and processes of
     * our user can no longer ptrace us. Children restore the value exec left. */
    p->saved_dumpable = prctl(PR_GET_DUMPABLE);
    if (prctl(PR_SET_DUMPABLE, 0) != 0)
        fail_startup(p, errno);
    psp_child_image_init(p);

    int err = map_segment(p);
    if (err != 0)
        fail_startup(p, err);
    if (psp_thread_count() > 1)
        fail_startup(p, EDEADLK);
    p->tid_field = find_tid_field();
    if (p->prefault)
        psp_prefault_mappings();
    if (p->merge_text)
        psp_merge_text(); /* best effort: unmerged areas only cost time */
    p->image_watch_fd = -1;
    if (p->watch_image && (err = psp_image_watch_start(p)) != 0)
        fail_startup(p, err);
    syscall(SYS_get_robust_list, 0, &p->robust_head, &p->robust_len);
    p->library_path = own_library_path();
    if ((err = watch_children(p)) != 0 || (err = watch_launcher(p)) != 0)
        fail_startup(p, err);
    p->fd_ceiling = highest_descriptor();

    for (uint32_t k = 0; k < PSP_RING_SLOTS; k++)
        p->served[k] = atomic_load(&p->shared->slots[k].request_seq);
}

static void publish_ready(struct psp_proxy *p)
{
    atomic_store(&p->shared->proxy_pid, getpid());
    atomic_store(&p->shared->state, PSP_STATE_READY);
    notify_launcher(p);
}

/* The launcher died, or hung up the socket (destroy, or it could not kill us): we must
 * stop at once, also in the middle of a batch. Checked between two forks. */
static bool launcher_gone(const struct psp_proxy *p)
{
    struct pollfd fds[2] = {{.fd = p->launcher_pidfd, .events = POLLIN}, {.fd = p->socket_fd, .events = 0}};
    return poll(fds, 2, 0) > 0;
}

/* The error pipe of a request must not take 0-2: a child moves its stdio there, and
 * moving the pipe away in the child can fail (EMFILE), losing the child's report. */
static int error_pipe_above_stdio(int pipe_fds[2])
{
    if (pipe2(pipe_fds, O_CLOEXEC) != 0)
        return errno;
    for (int k = 0; k < 2; k++) {
        if (pipe_fds[k] > 2)
            continue;
        int moved = fcntl(pipe_fds[k], F_DUPFD_CLOEXEC, 3);
        int err = errno;
        close(pipe_fds[k]);
        pipe_fds[k] = moved;
        if (moved < 0) {
            if (pipe_fds[1 - k] >= 0)
                close(pipe_fds[1 - k]);
            pipe_fds[0] = pipe_fds[1] = -1;
            return err == EINVAL ? EMFILE : err;
        }
    }
    return 0;
}

/* Children that failed before main wrote {instance, errno} here; EOF means every child
 * has either failed or closed its copy on the way to main. */
static void collect_child_errors(int error_fd, _Atomic int32_t *errors, uint32_t count)
{
    int32_t record[2];
    for (;;) {
        ssize_t r = read(error_fd, record, sizeof(record));
        if (r < 0 && errno == EINTR)
            continue;
        if (r != (ssize_t)sizeof(record))
            break;
        if (record[0] >= 0 && (uint32_t)record[0] < count)
            atomic_store_explicit(&errors[record[0]], record[1], memory_order_relaxed);
    }
}

/* Fork every instance of the request in `slot_index`. Returns true in a child. */
static bool serve_request(struct psp_proxy *p, uint32_t slot_index, uint64_t seq, struct psp_decoded *req)
{
    struct psp_shared *sh = p->shared;
    struct psp_slot *slot_state = &sh->slots[slot_index];
    bool ping = slot_state->request.count == 0;
    int err = ping ? 0 : psp_decode_request(sh, p->size, slot_index, req);
    if (err == 0 && !ping && psp_image_changed(p))
        err = ESTALE;
    int *fds = NULL;
    int error_pipe[2] = {-1, -1};
    /* Children report failures before main through a pipe: with options, or when an
     * instance has a CPU set. */
    if (!ping && err == 0 && req->cgroup && p->cgroup_placement == PSP_CGROUP_UNKNOWN)
        p->cgroup_placement = psp_probe_cgroup_placement();
    bool move = !ping && err == 0 && req->cgroup && p->cgroup_placement == PSP_CGROUP_MOVE;
    if (err == 0 && !ping && req->fd_count > 0) {
        fds = calloc(req->fd_count, sizeof(int));
        err = fds == NULL ? ENOMEM : psp_receive_fds(fds, req->fd_count);
    }
    bool report = !ping && err == 0 && (move || psp_setup_may_fail(p, req, fds));
    if (err == 0 && report)
        err = error_pipe_above_stdio(error_pipe);
    if (err == 0 && !ping) {
        for (uint32_t k = 0; k < req->set_count; k++)
            psp_clean_environment(req->sets[k].envp, p->library_path);
        _Atomic int32_t *results = psp_results(sh, req->results_offset);
        _Atomic int32_t *errors = psp_errors(sh, req->errors_offset);
        for (uint32_t i = 0; i < req->count; i++) {
            if (i > 0 && launcher_gone(p))
                _exit(0);
            struct psp_relay_slot *slot = p->relay ? psp_relay_reserve(p) : NULL;
            pid_t pid = -1;
            atomic_store_explicit(&errors[i], 0, memory_order_relaxed);
            if (p->relay && slot == NULL) {
                errno = EAGAIN;
            } else if (report && !req->cgroup &&
                       (pid = psp_pool_hand(p, slot_index, i, fds, req->fd_count, error_pipe[1])) > 0) {
                atomic_store_explicit(&results[i], pid, memory_order_relaxed); /* a parked child took it */
            } else {
                pid = psp_clone_child(p, &results[i], req->cgroup ? fds[req->fd_count - 1] : -1);
                if (pid == 0) {
                    if (move)
                        psp_move_into_cgroup(fds[req->fd_count - 1], i, error_pipe[1]);
                    psp_become_instance(p, req, i, error_pipe[1]);
                    psp_child_prepare(p, req, i, fds, error_pipe[1]);
                    return true;
                }
            }
            if (slot != NULL && pid > 0)
                psp_relay_commit(slot, pid);
            else if (slot != NULL)
                atomic_store(&slot->state, PSP_RELAY_FREE);
            atomic_store_explicit(&results[i], pid > 0 ? pid : -errno, memory_order_relaxed);
            if (!report)
                atomic_store(&slot_state->progress, i + 1);
        }
        if (report) {
            /* Results are final only once every child got past its set-up. */
            close(error_pipe[1]);
            error_pipe[1] = -1;
            collect_child_errors(error_pipe[0], errors, req->count);
            for (uint32_t i = 0; i < req->count && !p->setup_proven; i++)
                p->setup_proven = atomic_load_explicit(&results[i], memory_order_relaxed) > 0 &&
                                  atomic_load_explicit(&errors[i], memory_order_relaxed) == 0;
            if (p->relay)
                psp_relay_release_failed(p, results, errors, req->count);
            atomic_store(&slot_state->progress, req->count);
        }
    }
    if (fds != NULL) {
        psp_close_fds(fds, req->fd_count);
        free(fds);
    } else if (err != 0) {
        psp_drain_fds(); /* a rejected request may have sent descriptors */
    }
    if (!ping)
        psp_decoded_free(req);
    for (int k = 0; k < 2; k++)
        if (error_pipe[k] >= 0)
            close(error_pipe[k]);
    atomic_store(&slot_state->reply_error, err);
    atomic_store(&slot_state->reply_seq, seq);
    notify(p->slot_fds[slot_index]);
    return false;
}

/* The pending slot with the lowest ticket, or -1: requests are served in the order the
 * launcher published them, which is also the order of their descriptors on the socket. */
static int next_pending(struct psp_proxy *p, uint64_t *seq)
{
    int best = -1;
    *seq = 0;
    for (uint32_t k = 0; k < PSP_RING_SLOTS; k++) {
        uint64_t s = atomic_load(&p->shared->slots[k].request_seq);
        if (s != p->served[k] && (best < 0 || s < *seq)) {
            best = (int)k;
            *seq = s;
        }
    }
    return best;
}

/* Relay mode: SIGCHLDs only say "collect"; psp_relay_collect finds who exited. */
static void drain_signals(int signal_fd)
{
    struct signalfd_siginfo si;
    while (read(signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
    }
}

void psp_serve(struct psp_proxy *p, struct psp_decoded *child_request)
{
    start_up(p);
    /* A warm pool is full before the context is: its first spawns are claims. */
    if (psp_pool_fill(p, child_request))
        return;
    publish_ready(p);
    for (;;) {
        struct pollfd fds[4 + PSP_POOL_MAX] = {
            {.fd = p->doorbell_fd, .events = POLLIN},
            {.fd = p->launcher_pidfd, .events = POLLIN},
            {.fd = p->socket_fd, .events = 0}, /* hang-up only: descriptors are read per request */
            {.fd = p->signal_fd, .events = POLLIN}, /* -1 (ignored by poll) but in relay mode */
        };
        int pool_fds = psp_pool_pollfds(p, fds + 4);
        if (poll(fds, pool_fds > 0 ? (nfds_t)(4 + pool_fds) : (p->signal_fd >= 0 ? 4 : 3),
                 psp_pool_timeout(p)) < 0) {
            if (errno == EINTR)
                continue;
            _exit(127);
        }
        if (fds[1].revents || fds[2].revents)
            _exit(0); /* the launcher is gone: so are we, with no destructors of the target */
        if (fds[0].revents)
            psp_drain_eventfd(p->doorbell_fd);
        if (p->signal_fd >= 0 && fds[3].revents)
            drain_signals(p->signal_fd);
        uint64_t seq = 0;
        int slot;
        while ((slot = next_pending(p, &seq)) >= 0) {
            p->served[slot] = seq;
            psp_pool_activity(p); /* a spawn: the pool is in use */
            if (serve_request(p, (uint32_t)slot, seq, child_request))
                return;
        }
        if (p->relay)
            psp_relay_collect(p); /* also after a doorbell: the launcher consumed statuses */
        if (psp_pool_service(p, fds + 4, child_request))
            return;
    }
}
