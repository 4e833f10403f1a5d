/* The parallel exec backend: for executables a zygote cannot serve (static, set-uid,
 * threaded constructors, their own entry point) and for contexts that ask for exec
 * semantics (PSPAWN_CTX_EXEC). One worker per usable CPU (the calling thread is one of
 * them) creates its share of a part with clone(CLONE_VM | CLONE_VFORK), as glibc's
 * posix_spawn does, and the child applies its placement and options before execve.
 *
 * The child runs on the worker's memory until it execs or exits (CLONE_VFORK suspends
 * only the worker), so it reports a set-up or exec failure by writing its errno into
 * the worker's memory before _exit(127); the worker reads it when clone returns, reaps
 * that child and reports the errno for the instance. (dotnet/runtime's pal_process.c
 * uses a CLOEXEC pipe for the same report; with CLONE_VFORK the shared word says the
 * same thing without two descriptors and three system calls per child.) Workers block
 * every signal, and the child sets every disposition to default and unblocks every
 * signal right before execve, so no handler of the caller ever runs on the child's
 * stack. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/internal.h"

#define PSP_EXEC_STACK (64u << 10)
/* Below this many instances per worker, more workers cost more than they gain. */
#define PSP_EXEC_MIN_SHARE 4

/* What one worker does: instances index[0..count) of the plan. */
struct exec_worker {
    struct psp_exec_backend *backend;
    struct psp_plan *plan;
    const int *index;
    int count;
    int cpu_group;        /* index into backend->groups, or -1: not pinned */
    void *stack;
    /* The instance being created, read by the child. */
    int instance;
    int child_fds[3];
    volatile int child_error;
};

static int move_above_stdio(int fd)
{
    if (fd > 2)
        return fd;
    return fcntl(fd, F_DUPFD, 3);
}

/* In the child (shares the worker's memory until execve): no allocation, no lock. */
static int exec_child(void *arg)
{
    struct exec_worker *w = arg;
    struct psp_exec_backend *b = w->backend;
    const struct psp_plan *plan = w->plan;
    const struct psp_plan_instance *in = &plan->instances[w->instance];
    const struct psp_plan_set *set = &plan->sets[in->set];
    const pspawn_attr_t *attr = plan->attr;
    int err = 0;
    /* Placement: the instance's CPU set; else the context's core; else, when the
     * worker is pinned to its group, the caller's whole mask of context creation. */
    const cpu_set_t *cpus = NULL;
    if (in->cpuset >= 0)
        cpus = &plan->cpusets[in->cpuset];
    else if (b->core_set)
        cpus = &b->core;
    else if (b->pinned)
        cpus = &b->affinity;
    if (cpus != NULL && sched_setaffinity(0, sizeof(*cpus), cpus) != 0) {
        err = errno;
        goto fail;
    }
    if (attr != NULL) {
        if ((attr->set & PSP_OPT_SETSID) && setsid() < 0) {
            err = errno;
            goto fail;
        }
        if ((attr->set & PSP_OPT_PGROUP) && setpgid(0, attr->pgroup) != 0) {
            err = errno;
            goto fail;
        }
        if (attr->cwd != NULL && chdir(attr->cwd) != 0) {
            err = errno;
            goto fail;
        }
        int sources[3] = {-1, -1, -1};
        for (int k = 0; k < 3; k++) {
            const struct psp_attr_stdio *st = &attr->stdio[k];
            int fd = -1;
            switch (st->kind) {
            case PSP_STDIO_NULL:
                fd = open("/dev/null", O_RDWR | O_CLOEXEC);
                break;
            case PSP_STDIO_FILE:
                fd = open(st->path, st->oflags | O_CLOEXEC, st->mode);
                break;
            case PSP_STDIO_FD:
                fd = st->caller_fd;
                break;
            case PSP_STDIO_PIPE:
                fd = w->child_fds[k];
                break;
            default:
                continue;
            }
            if (fd < 0 || (sources[k] = move_above_stdio(fd)) < 0) {
                err = errno;
                goto fail;
            }
        }
        for (int k = 0; k < 3; k++)
            if (sources[k] >= 0 && dup2(sources[k], k) < 0) {
                err = errno;
                goto fail;
            }
    }
    /* Every disposition default (handlers are per process: the child has its own copy
     * without CLONE_SIGHAND), only 0-2 open, then no signal blocked: as a fresh exec. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL); /* glibc refuses its own two: they are default */
    syscall(SYS_close_range, 3u, ~0u, 0u);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(b->path, set->argv, set->envp);
    err = errno;
fail:
    w->child_error = err != 0 ? err : EPROTO;
    _exit(127);
}

/* Creates instance i: its pipes, the child, its result. */
static void create_one(struct exec_worker *w, int i)
{
    struct psp_plan *plan = w->plan;
    int *stdio_fds = plan->stdio_fds != NULL ? plan->stdio_fds + 3 * i : NULL;
    w->instance = i;
    w->child_error = 0;
    int err = 0;
    for (int k = 0; k < 3; k++) {
        w->child_fds[k] = -1;
        if (stdio_fds != NULL)
            stdio_fds[k] = -1;
        if (plan->attr == NULL || plan->attr->stdio[k].kind != PSP_STDIO_PIPE || err != 0)
            continue;
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
            err = errno;
            continue;
        }
        stdio_fds[k] = k == 0 ? p[1] : p[0];
        w->child_fds[k] = k == 0 ? p[0] : p[1];
    }
    pid_t pid = -1;
    if (err == 0) {
        pid = clone(exec_child, (char *)w->stack + PSP_EXEC_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, w);
        if (pid < 0)
            err = errno;
        else if (w->child_error != 0) {
            err = w->child_error; /* it exited before main: reap it for the caller */
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
            }
            pid = -1;
        }
    }
    for (int k = 0; k < 3; k++) {
        if (w->child_fds[k] >= 0)
            close(w->child_fds[k]);
        if (err != 0 && stdio_fds != NULL && stdio_fds[k] >= 0) {
            close(stdio_fds[k]);
            stdio_fds[k] = -1;
        }
    }
    plan->pids[i] = err == 0 ? pid : -1;
    plan->errors[i] = err;
}

static void run_share(struct exec_worker *w)
{
    for (int j = 0; j < w->count; j++)
        create_one(w, w->index[j]);
}

static void *worker_main(void *arg)
{
    (void)pthread_setname_np(pthread_self(), "pspawn exec");
    run_share(arg);
    return NULL;
}

/* Options the exec backend cannot give: a umask or limits (ENOTSUP, as before: the
 * contract of fallback mode), a parent-death signal (the parent would be a worker
 * thread, whose exit fires it). */
static int unsupported(const pspawn_attr_t *attr)
{
    const uint32_t exact = PSP_OPT_FDMAP | PSP_OPT_SIGMASK | PSP_OPT_SIGIGN | PSP_OPT_REPLY_EARLY; /* the interceptor's */
    if (attr != NULL && ((attr->set & (PSP_OPT_UMASK | PSP_OPT_PDEATHSIG | exact)) || attr->rlimit_count > 0))
        return ENOTSUP;
    return 0;
}

static int exec_submit(struct psp_backend *be, struct psp_plan *plan, const int *todo, int n, bool block,
                       struct psp_part *part, int *taken)
{
    (void)block;
    struct psp_exec_backend *b = (struct psp_exec_backend *)be;
    part->count = n;
    *taken = n;
    int err = unsupported(plan->attr);
    for (int j = 0; j < n && err == 0; j++)
        if (psp_plan_instance_cgroup(plan, todo[j]) >= 0)
            err = ENOTSUP; /* explicit cgroups: zygote contexts only (children here are born
                          in the caller's cgroup, as with fork+exec) */
    if (err != 0) {
        for (int j = 0; j < n; j++) {
            plan->pids[todo[j]] = -1;
            plan->errors[todo[j]] = err;
        }
        return 0;
    }
    int workers = b->workers;
    if (workers > n / PSP_EXEC_MIN_SHARE)
        workers = n / PSP_EXEC_MIN_SHARE;
    if (workers < 1)
        workers = 1;
    struct exec_worker w[PSP_MAX_PROXIES];
    pthread_t threads[PSP_MAX_PROXIES];
    bool running[PSP_MAX_PROXIES] = {false};
    size_t stacks = (size_t)workers * PSP_EXEC_STACK;
    void *stack = mmap(NULL, stacks, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        for (int j = 0; j < n; j++) {
            plan->pids[todo[j]] = -1;
            plan->errors[todo[j]] = ENOMEM;
        }
        return 0;
    }
    /* No handler of the caller may run in a child while it shares our memory: workers
     * block everything (threads inherit the mask), and so does this thread meanwhile. */
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    for (int k = 0; k < workers; k++) {
        int lo = (int)((long)n * k / workers), hi = (int)((long)n * (k + 1) / workers);
        w[k] = (struct exec_worker){.backend = b, .plan = plan, .index = todo + lo, .count = hi - lo,
                                    .cpu_group = workers > 1 && b->pinned ? k % b->workers : -1,
                                    .stack = (char *)stack + (size_t)k * PSP_EXEC_STACK};
    }
    for (int k = 1; k < workers; k++) {
        pthread_attr_t ta;
        pthread_attr_init(&ta);
        pthread_attr_setstacksize(&ta, 64 << 10);
        if (w[k].cpu_group >= 0)
            pthread_attr_setaffinity_np(&ta, sizeof(cpu_set_t), &b->groups[w[k].cpu_group]);
        running[k] = pthread_create(&threads[k], &ta, worker_main, &w[k]) == 0;
        pthread_attr_destroy(&ta);
    }
    /* The calling thread is worker 0 (on its own CPUs: it is not re-pinned). A worker
     * that could not be started has its share done here too. */
    w[0].cpu_group = -1;
    run_share(&w[0]);
    for (int k = 1; k < workers; k++) {
        if (running[k])
            pthread_join(threads[k], NULL);
        else
            run_share(&w[k]);
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    munmap(stack, stacks);
    return 0;
}

static int exec_pollfds(struct psp_backend *b, struct psp_part *part, struct pollfd *fds)
{
    (void)b, (void)part, (void)fds;
    return 0;
}

static bool exec_collect(struct psp_backend *b, struct psp_plan *plan, struct psp_part *part)
{
    (void)b, (void)plan, (void)part;
    return true;
}

/* Backends without a process or state of their own (exec, kernel) share these. */
int psp_backend_ping_nothing(struct psp_backend *b)
{
    (void)b;
    return 0;
}

void psp_backend_destroy_nothing(struct psp_backend *b)
{
    (void)b;
}

bool psp_backend_covers_all(struct psp_backend *b, const cpu_set_t *set)
{
    (void)b, (void)set;
    return true;
}

bool psp_backend_always_available(struct psp_backend *b)
{
    (void)b;
    return true;
}

const struct psp_backend_ops psp_exec_ops = {
    .submit = exec_submit,
    .pollfds = exec_pollfds,
    .collect = exec_collect,
    .ping = psp_backend_ping_nothing,
    .destroy = psp_backend_destroy_nothing,
    .covers = psp_backend_covers_all,
    .available = psp_backend_always_available,
};

void psp_exec_backend_init(struct psp_exec_backend *b, const char *path, int core, const cpu_set_t *usable,
                           const cpu_set_t *affinity)
{
    memset(b, 0, sizeof(*b));
    b->base.ops = &psp_exec_ops;
    b->base.domain = -1;
    b->path = path;
    if (core >= 0) {
        b->core_set = true;
        CPU_ZERO(&b->core);
        CPU_SET((size_t)core, &b->core);
    }
    b->affinity = *affinity;
    int list[CPU_SETSIZE];
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, usable))
            list[n++] = c;
    b->workers = n < 1 ? 1 : (n > PSP_DEFAULT_MAX_PROXIES ? PSP_DEFAULT_MAX_PROXIES : n);
    /* Workers pinned to their group; children then get the caller's mask (or their own). */
    b->pinned = b->workers > 1 && !b->core_set && CPU_COUNT(&b->affinity) > 0;
    for (int g = 0; g < b->workers && b->pinned; g++) {
        CPU_ZERO(&b->groups[g]);
        for (int j = g * n / b->workers; j < (g + 1) * n / b->workers; j++)
            CPU_SET((size_t)list[j], &b->groups[g]);
    }
}
