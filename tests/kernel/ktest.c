/* ktest: the guest tests of the pspawn/ipspawn system calls (run in the guest through
 * native/kernel/guest.sh; see run.sh). Usage: ktest BIN_DIR [TEST...]; BIN_DIR holds the
 * report and noop fixtures. Prints "PASS name" or "FAIL name: why" per test, then
 * "ktest: N passed, N failed"; exit status 0 only if all passed. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pspawn_sys.h"

#define WORK "/tmp/ktest"
#define MAXN 16

static struct pspawn_sys sys;
static const char *bin_dir;
static char report_path[512], noop_path[512], exit0_path[512];
static char failure[512];
static int ncpus;

/* Records why the current test failed (the first reason wins) and returns -1. */
__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...)
{
    va_list ap;

    if (failure[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(failure, sizeof failure, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#define CHECK(cond, ...) do { if (!(cond)) return fail(__VA_ARGS__); } while (0)

static uint64_t ptr(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void args_init(struct pspawn_args *a, const char *file, unsigned int n)
{
    memset(a, 0, sizeof *a);
    a->filename = ptr(file);
    a->nspawns = n;
}

/* Reads a whole small file into buf (NUL-terminated); -1 on failure. */
static int slurp(const char *path, char *buf, size_t size)
{
    ssize_t n, total = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    while ((n = read(fd, buf + total, size - 1 - (size_t)total)) > 0)
        total += n;
    close(fd);
    if (n < 0)
        return -1;
    buf[total] = '\0';
    return 0;
}

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = write(fd, text, strlen(text));
    if (close(fd) != 0 || n != (ssize_t)strlen(text))
        return -1;
    return 0;
}

/* Waits for pid; its exit status, or -1 if it did not exit normally. */
static int wait_exit(pid_t pid)
{
    int status;

    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Fails if any child is left (failed instances must have been reaped by the kernel). */
static int check_no_children(void)
{
    pid_t p = waitpid(-1, NULL, __WALL | WNOHANG);

    CHECK(p < 0 && errno == ECHILD, "a child is left over (waitpid -> %d)", (int)p);
    return 0;
}

/* The report of instance i: argv {report, inst-I, --report-out=...}, env
 * {PSPAWN_INSTANCE=I, KTEST_TAG=tag}, affinity {cpu}, parent us. */
struct expect {
    char out[128];
    char arg1[32];
    char env0[48];
    char env1[48];
    int cpu;
};

static void expect_init(struct expect *e, const char *tag, int i, int cpu)
{
    snprintf(e->out, sizeof e->out, "--report-out=" WORK "/%s-%d.json", tag, i);
    snprintf(e->arg1, sizeof e->arg1, "inst-%d", i);
    snprintf(e->env0, sizeof e->env0, "PSPAWN_INSTANCE=%d", i);
    snprintf(e->env1, sizeof e->env1, "KTEST_TAG=%s", tag);
    e->cpu = cpu;
}

static int check_report(const struct expect *e, pid_t pid)
{
    char json[65536], want[1024];
    const char *path = e->out + strlen("--report-out=");

    CHECK(slurp(path, json, sizeof json) == 0, "no report %s: %s", path, strerror(errno));
    snprintf(want, sizeof want, "\"argv\":[\"%s\",\"%s\",\"%s\"]", report_path, e->arg1, e->out);
    CHECK(strstr(json, want), "%s: argv is not %s", path, want);
    snprintf(want, sizeof want, "\"env\":[\"%s\",\"%s\"]", e->env0, e->env1);
    CHECK(strstr(json, want), "%s: env is not %s", path, want);
    if (e->cpu >= 0) {
        snprintf(want, sizeof want, "\"affinity\":[%d]", e->cpu);
        CHECK(strstr(json, want), "%s: affinity is not %s", path, want);
    }
    snprintf(want, sizeof want, "\"pid\":%d,\"ppid\":%d", (int)pid, (int)getpid());
    CHECK(strstr(json, want), "%s: pid/ppid are not %s", path, want);
    snprintf(want, sizeof want, "\"uid\":%d,\"gid\":%d,\"euid\":%d", (int)getuid(), (int)getgid(),
             (int)geteuid());
    CHECK(strstr(json, want), "%s: credentials are not %s", path, want);
    return 0;
}

/* Per-instance vectors for n report instances; masks pin instance i to CPU i % ncpus. */
struct batch {
    struct expect e[MAXN];
    const char *argv[MAXN][4];
    const char *envp[MAXN][3];
    const char *const *argvp[MAXN];
    const char *const *envpp[MAXN];
    cpu_set_t masks[MAXN];
    pspawn_result_t pids[MAXN];
};

static void batch_init(struct batch *b, struct pspawn_args *a, const char *tag, unsigned int n)
{
    memset(b, 0, sizeof *b);
    args_init(a, report_path, n);
    for (unsigned int i = 0; i < n; i++) {
        int cpu = (int)i % ncpus;

        expect_init(&b->e[i], tag, (int)i, cpu);
        b->argv[i][0] = report_path;
        b->argv[i][1] = b->e[i].arg1;
        b->argv[i][2] = b->e[i].out;
        b->envp[i][0] = b->e[i].env0;
        b->envp[i][1] = b->e[i].env1;
        b->argvp[i] = b->argv[i];
        b->envpp[i] = b->envp[i];
        CPU_ZERO(&b->masks[i]);
        CPU_SET(cpu, &b->masks[i]);
    }
    a->argv = ptr(b->argvp);
    a->envp = ptr(b->envpp);
    a->cpumasks = ptr(b->masks);
    a->cpumask_size = sizeof(cpu_set_t);
}

/* Reads all n results of a session, blocking. */
static int read_session(int fd, pspawn_result_t *out, unsigned int n)
{
    ssize_t got = read(fd, out, n * sizeof *out);

    CHECK(got == (ssize_t)(n * sizeof *out), "session read returned %zd (%s)", got,
          got < 0 ? strerror(errno) : "short");
    return 0;
}

static int check_batch(struct batch *b, unsigned int n, const pspawn_result_t *res)
{
    for (unsigned int i = 0; i < n; i++) {
        CHECK(res[i] > 0, "instance %u failed: %s", i, strerror(-res[i]));
        CHECK(wait_exit(res[i]) == 0, "instance %u (pid %d) did not exit 0", i, (int)res[i]);
        if (check_report(&b->e[i], res[i]) != 0)
            return -1;
    }
    return check_no_children();
}

static int test_detect(void)
{
    char text[64];

    CHECK(sys.abi_version == PSPAWN_ABI_VERSION, "abi_version %d", sys.abi_version);
    CHECK(slurp(PSPAWN_SYSFS_DIR "/max_spawns", text, sizeof text) == 0 &&
          atoi(text) == PSPAWN_MAX_SPAWNS, "max_spawns");
    CHECK(sys.pspawn_nr != sys.ipspawn_nr, "same numbers");
    return 0;
}

static int test_pspawn_report(void)
{
    struct pspawn_args a;
    struct batch b;
    long r;

    batch_init(&b, &a, "sync", 6);
    a.pids = ptr(b.pids);
    r = pspawn_sys_pspawn(&sys, &a, sizeof a);
    CHECK(r == 6, "pspawn returned %ld (%s)", r, strerror(errno));
    return check_batch(&b, 6, b.pids);
}

static int test_ipspawn_report(void)
{
    struct pollfd pfd;
    struct pspawn_args a;
    struct batch b;
    int fd;

    batch_init(&b, &a, "async", 6);
    fd = (int)pspawn_sys_ipspawn(&sys, &a, sizeof a);
    CHECK(fd >= 0, "ipspawn: %s", strerror(errno));
    CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC, "session fd is not close-on-exec");
    pfd = (struct pollfd){.fd = fd, .events = POLLIN};
    CHECK(poll(&pfd, 1, 60000) == 1 && (pfd.revents & POLLIN), "session never readable");
    if (read_session(fd, b.pids, 6) != 0)
        return -1;
    CHECK(read(fd, b.pids, sizeof b.pids) == 0, "no end of file after the results");
    close(fd);
    return check_batch(&b, 6, b.pids);
}

static int test_shared_vectors(void)
{
    const char *argv[] = {noop_path, "shared", NULL};
    const char *envp[] = {"A=1", NULL};
    pspawn_result_t pids[3];
    struct pspawn_args a;
    cpu_set_t mask;
    long r;

    CPU_ZERO(&mask);
    CPU_SET(ncpus - 1, &mask);
    args_init(&a, noop_path, 3);
    a.argv = ptr(argv);
    a.envp = ptr(envp);
    a.cpumasks = ptr(&mask);
    a.cpumask_size = sizeof mask;
    a.flags = PSPAWN_SHARED_ARGV | PSPAWN_SHARED_ENVP | PSPAWN_SHARED_CPUMASK;
    a.pids = ptr(pids);
    r = pspawn_sys_pspawn(&sys, &a, sizeof a);
    CHECK(r == 3, "pspawn returned %ld (%s)", r, strerror(errno));
    for (int i = 0; i < 3; i++)
        CHECK(pids[i] > 0 && wait_exit(pids[i]) == 0, "instance %d", i);
    return check_no_children();
}

/* Instances 1 (a CPU that does not exist) and 2 (a string over MAX_ARG_STRLEN) fail alone. */
static int per_instance_errors(bool async)
{
    static char huge[200000];
    struct pspawn_args a;
    struct batch b;
    long r;

    memset(huge, 'x', sizeof huge - 1);
    batch_init(&b, &a, async ? "err-async" : "err-sync", 4);
    CPU_ZERO(&b.masks[1]);
    CPU_SET(7, &b.masks[1]);
    b.argv[2][1] = huge;
    if (async) {
        int fd = (int)pspawn_sys_ipspawn(&sys, &a, sizeof a);

        CHECK(fd >= 0, "ipspawn: %s", strerror(errno));
        if (read_session(fd, b.pids, 4) != 0)
            return -1;
        close(fd);
    } else {
        a.pids = ptr(b.pids);
        r = pspawn_sys_pspawn(&sys, &a, sizeof a);
        CHECK(r == 2, "pspawn returned %ld, not 2 (%s)", r, strerror(errno));
    }
    CHECK(b.pids[1] == -EINVAL, "absent CPU: %d, not -EINVAL", b.pids[1]);
    CHECK(b.pids[2] == -E2BIG, "huge argument: %d, not -E2BIG", b.pids[2]);
    for (int i = 0; i < 4; i += 3) {
        CHECK(b.pids[i] > 0 && wait_exit(b.pids[i]) == 0, "instance %d: %d", i, b.pids[i]);
        if (check_report(&b.e[i], b.pids[i]) != 0)
            return -1;
    }
    return check_no_children();
}

static int test_errors_sync(void)
{
    return per_instance_errors(false);
}

static int test_errors_async(void)
{
    return per_instance_errors(true);
}

/* Every instance of a bad file fails with exec's errno; nothing is left behind. */
static int bad_file(const char *file, int want)
{
    const char *argv[] = {file, NULL};
    pspawn_result_t pids[3], res[3];
    struct pspawn_args a;
    long r;
    int fd;

    args_init(&a, file, 3);
    a.argv = ptr(argv);
    a.flags = PSPAWN_SHARED_ARGV;
    a.pids = ptr(pids);
    r = pspawn_sys_pspawn(&sys, &a, sizeof a);
    CHECK(r == 0, "%s: pspawn returned %ld", file, r);
    a.pids = 0;
    fd = (int)pspawn_sys_ipspawn(&sys, &a, sizeof a);
    CHECK(fd >= 0, "%s: ipspawn: %s", file, strerror(errno));
    if (read_session(fd, res, 3) != 0)
        return -1;
    close(fd);
    for (int i = 0; i < 3; i++)
        CHECK(pids[i] == -want && res[i] == -want, "%s: %d/%d, not -%d", file, pids[i], res[i],
              want);
    return check_no_children();
}

static int test_bad_files(void)
{
    int fd = open(WORK "/not-executable", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    CHECK(fd >= 0 && write(fd, "#!/bin/sh\n", 10) == 10 && close(fd) == 0, "create file");
    if (bad_file("/nonexistent/program", ENOENT) != 0 ||
        bad_file(WORK "/not-executable", EACCES) != 0 || bad_file(WORK, EACCES) != 0)
        return -1;
    return 0;
}

/* A CPU taken offline fails only the instances pinned to nothing but it. */
static int test_offline_cpu(void)
{
    const char *online = "/sys/devices/system/cpu/cpu1/online";
    struct pspawn_args a;
    struct batch b;
    long r;
    int ret, status;

    if (ncpus < 2)
        return fail("needs 2 CPUs");
    CHECK(write_text(online, "0") == 0, "cannot take CPU 1 offline: %s", strerror(errno));
    batch_init(&b, &a, "offline", 2);
    CPU_ZERO(&b.masks[0]);
    CPU_SET(1, &b.masks[0]);
    CPU_SET(0, &b.masks[1]);
    CPU_SET(1, &b.masks[1]);
    b.e[1].cpu = 0;
    a.pids = ptr(b.pids);
    r = pspawn_sys_pspawn(&sys, &a, sizeof a);
    /* Instance 1 reports its affinity before CPU 1 comes back (it would show again). */
    status = r == 1 && b.pids[1] > 0 ? wait_exit(b.pids[1]) : -1;
    ret = write_text(online, "1");
    CHECK(ret == 0, "cannot bring CPU 1 back: %s", strerror(errno));
    CHECK(r == 1, "pspawn returned %ld", r);
    CHECK(b.pids[0] == -EINVAL, "offline CPU: %d", b.pids[0]);
    CHECK(status == 0, "instance 1: %d, status %d", b.pids[1], status);
    if (check_report(&b.e[1], b.pids[1]) != 0)
        return -1;
    return check_no_children();
}

/* Whole-call errors: nothing is launched. */
static int test_bad_calls(void)
{
    const char *argv[] = {noop_path, NULL};
    unsigned char big[PSPAWN_ARGS_SIZE_VER0 + 8] = {0};
    pspawn_result_t pids[2];
    struct pspawn_args a;
    struct {
        const char *what;
        bool async;
        size_t size;
        int want;
        void (*tweak)(struct pspawn_args *);
    } cases[] = {
        {"short size", false, PSPAWN_ARGS_SIZE_VER0 - 8, EINVAL, NULL},
        {"size over a page", false, 8192, E2BIG, NULL},
    };

    args_init(&a, noop_path, 2);
    a.argv = ptr(argv);
    a.flags = PSPAWN_SHARED_ARGV;
    a.pids = ptr(pids);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        errno = 0;
        CHECK(pspawn_sys_pspawn(&sys, &a, cases[i].size) == -1 && errno == cases[i].want,
              "%s: errno %d", cases[i].what, errno);
    }
    /* A longer block with a nonzero unknown tail: E2BIG; with a zero tail: accepted. */
    memcpy(big, &a, sizeof a);
    big[sizeof big - 1] = 1;
    CHECK(pspawn_sys_pspawn(&sys, (void *)big, sizeof big) == -1 && errno == E2BIG, "tail");
    big[sizeof big - 1] = 0;
    CHECK(pspawn_sys_pspawn(&sys, (void *)big, sizeof big) == 2, "zero tail: %s", strerror(errno));
    for (int i = 0; i < 2; i++)
        CHECK(wait_exit(pids[i]) == 0, "zero tail instance %d", i);

#define EXPECT_FAIL(call, want, what) \
    do { errno = 0; CHECK((call) == -1 && errno == (want), "%s: errno %d", what, errno); } while (0)
    a.flags |= 1ULL << 40;
    EXPECT_FAIL(pspawn_sys_pspawn(&sys, &a, sizeof a), EINVAL, "unknown flag");
    a.flags = PSPAWN_SHARED_ARGV;
    a.nspawns = 0;
    EXPECT_FAIL(pspawn_sys_pspawn(&sys, &a, sizeof a), EINVAL, "no instances");
    a.nspawns = PSPAWN_MAX_SPAWNS + 1;
    EXPECT_FAIL(pspawn_sys_pspawn(&sys, &a, sizeof a), EINVAL, "too many instances");
    a.nspawns = 2;
    a.pids = 0;
    EXPECT_FAIL(pspawn_sys_pspawn(&sys, &a, sizeof a), EINVAL, "pspawn without pids");
    a.pids = ptr(pids);
    EXPECT_FAIL(pspawn_sys_ipspawn(&sys, &a, sizeof a), EINVAL, "ipspawn with pids");
    a.filename = 0;
    EXPECT_FAIL(pspawn_sys_pspawn(&sys, &a, sizeof a), EFAULT, "NULL filename");
    a.filename = ptr(noop_path);
    a.cpumask_size = 8;
    EXPECT_FAIL(pspawn_sys_pspawn(&sys, &a, sizeof a), EINVAL, "mask size without masks");
    EXPECT_FAIL(pspawn_sys_pspawn(&sys, (void *)8, sizeof a), EFAULT, "bad block pointer");
    a.pids = ptr((void *)-4096L);
    a.cpumask_size = 0;
    EXPECT_FAIL(pspawn_sys_pspawn(&sys, &a, sizeof a), EFAULT, "kernel pids pointer");
#undef EXPECT_FAIL
    return check_no_children();
}

/* A SCHED_FIFO spinner on the last CPU keeps instances pinned there from exec'ing. */
static volatile int spin_stop;

static void *spinner(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&spin_stop, __ATOMIC_ACQUIRE))
        ;
    return NULL;
}

static int start_spinner(pthread_t *thread)
{
    struct sched_param param = {.sched_priority = 50};
    pthread_attr_t attr;
    cpu_set_t mask;
    int err;

    spin_stop = 0;
    CHECK(write_text("/proc/sys/kernel/sched_rt_runtime_us", "-1") == 0, "rt runtime");
    CPU_ZERO(&mask);
    CPU_SET(ncpus - 1, &mask);
    pthread_attr_init(&attr);
    pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
    pthread_attr_setschedparam(&attr, &param);
    pthread_attr_setaffinity_np(&attr, sizeof mask, &mask);
    err = pthread_create(thread, &attr, spinner, NULL);
    pthread_attr_destroy(&attr);
    CHECK(err == 0, "spinner: %s", strerror(err));
    usleep(100000);
    return 0;
}

static void stop_spinner(pthread_t thread)
{
    __atomic_store_n(&spin_stop, 1, __ATOMIC_RELEASE);
    pthread_join(thread, NULL);
}

struct reader {
    int fd;
    pspawn_result_t res[MAXN];
    ssize_t got;
    volatile int started;
};

static void *blocking_reader(void *arg)
{
    struct reader *r = arg;

    r->started = 1;
    r->got = read(r->fd, r->res, sizeof r->res);
    return NULL;
}

static int test_session_states(void)
{
    const char *argv[] = {noop_path, NULL};
    struct reader rd = {.fd = -1};
    pspawn_result_t res[4];
    struct pspawn_args a;
    struct pollfd pfd;
    pthread_t spin, reader;
    cpu_set_t mask;
    int fd, flags, ret = 0;

    if (ncpus < 2)
        return fail("needs 2 CPUs");
    CPU_ZERO(&mask);
    CPU_SET(ncpus - 1, &mask);
    args_init(&a, noop_path, 4);
    a.argv = ptr(argv);
    a.cpumasks = ptr(&mask);
    a.cpumask_size = sizeof mask;
    a.flags = PSPAWN_SHARED_ARGV | PSPAWN_SHARED_CPUMASK | PSPAWN_SESSION_NONBLOCK;
    if (start_spinner(&spin) != 0)
        return -1;
    fd = (int)pspawn_sys_ipspawn(&sys, &a, sizeof a);
    if (fd < 0) {
        stop_spinner(spin);
        return fail("ipspawn: %s", strerror(errno));
    }
    /* Before: nothing can have exec'd. */
    pfd = (struct pollfd){.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 200) != 0)
        ret = fail("session readable before the instances ran");
    else if (read(fd, res, sizeof res) != -1 || errno != EAGAIN)
        ret = fail("non-blocking read before completion: not EAGAIN");
    /* During: a blocking reader waits. */
    flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    rd.fd = fd;
    if (ret == 0 && pthread_create(&reader, NULL, blocking_reader, &rd) == 0) {
        usleep(200000);
        if (rd.got != 0)
            ret = fail("blocking read returned before completion");
        stop_spinner(spin);
        pthread_join(reader, NULL);
        if (ret == 0 && rd.got != (ssize_t)sizeof res)
            ret = fail("blocking read returned %zd", rd.got);
    } else {
        stop_spinner(spin);
    }
    /* After: the results were consumed: end of file; poll stays readable. */
    if (ret == 0 && read(fd, res, sizeof res) != 0)
        ret = fail("read after the results is not end of file");
    if (ret == 0 && (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLIN)))
        ret = fail("done session not readable");
    close(fd);
    for (int i = 0; ret == 0 && i < 4; i++)
        if (rd.res[i] <= 0 || wait_exit(rd.res[i]) != 0)
            ret = fail("instance %d: %d", i, rd.res[i]);
    if (ret == 0)
        ret = check_no_children();
    return ret;
}

/* Closed before any instance ran: they still run and are ordinary, reapable children. */
static int test_session_closed_early(void)
{
    const char *argv[] = {noop_path, NULL};
    struct pspawn_args a;
    pthread_t spin;
    cpu_set_t mask;
    int fd, reaped = 0, status;

    if (ncpus < 2)
        return fail("needs 2 CPUs");
    CPU_ZERO(&mask);
    CPU_SET(ncpus - 1, &mask);
    args_init(&a, noop_path, 5);
    a.argv = ptr(argv);
    a.cpumasks = ptr(&mask);
    a.cpumask_size = sizeof mask;
    a.flags = PSPAWN_SHARED_ARGV | PSPAWN_SHARED_CPUMASK;
    if (start_spinner(&spin) != 0)
        return -1;
    fd = (int)pspawn_sys_ipspawn(&sys, &a, sizeof a);
    if (fd >= 0)
        close(fd);
    stop_spinner(spin);
    CHECK(fd >= 0, "ipspawn: %s", strerror(errno));
    while (waitpid(-1, &status, 0) > 0) {
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "an instance failed");
        reaped++;
    }
    CHECK(reaped == 5, "reaped %d children, not 5", reaped);
    return check_no_children();
}

/* Counts the processes in /proc and those in state D (stuck in the kernel). */
static int count_tasks(int *total, int *stuck)
{
    char path[96], stat[512], *p;
    FILE *ls = popen("ls /proc", "r");
    char name[64];

    CHECK(ls, "popen");
    *total = *stuck = 0;
    while (fgets(name, sizeof name, ls)) {
        name[strcspn(name, "\n")] = '\0';
        if (name[0] < '0' || name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", name);
        if (slurp(path, stat, sizeof stat) != 0)
            continue;
        (*total)++;
        p = strrchr(stat, ')');
        if (p && p[1] == ' ' && p[2] == 'D')
            (*stuck)++;
    }
    pclose(ls);
    return 0;
}

/* The caller of a large ipspawn is SIGKILLed in the middle of it, a few times. */
static int test_killed_caller(void)
{
    int before, after, stuck, reaped = 0, status;

    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "subreaper");
    if (count_tasks(&before, &stuck) != 0)
        return -1;
    for (int round = 0; round < 4; round++) {
        pid_t caller = fork();

        CHECK(caller >= 0, "fork");
        if (caller == 0) {
            const char *argv[] = {noop_path, NULL};
            struct pspawn_args a;

            args_init(&a, noop_path, 300);
            a.argv = ptr(argv);
            a.flags = PSPAWN_SHARED_ARGV;
            for (;;)
                if (round % 2)
                    pspawn_sys_ipspawn(&sys, &a, sizeof a);
                else {
                    static pspawn_result_t pids[300];

                    a.pids = ptr(pids);
                    pspawn_sys_pspawn(&sys, &a, sizeof a);
                }
        }
        usleep(150000 + 100000 * round);
        kill(caller, SIGKILL);
        CHECK(waitpid(caller, &status, 0) == caller && WIFSIGNALED(status), "caller");
    }
    /* Its children come to us (subreaper): all must be ordinary and reapable. */
    alarm(120);
    for (;;) {
        pid_t p = waitpid(-1, &status, __WALL);

        if (p < 0)
            break;
        reaped++;
    }
    alarm(0);
    CHECK(errno == ECHILD, "waitpid: %s", strerror(errno));
    prctl(PR_SET_CHILD_SUBREAPER, 0);
    if (count_tasks(&after, &stuck) != 0)
        return -1;
    CHECK(stuck == 0, "%d tasks in state D", stuck);
    CHECK(after <= before, "%d tasks before, %d after (%d reaped)", before, after, reaped);
    printf("  killed_caller: reaped %d orphaned instances\n", reaped);
    return 0;
}

/* Credentials: an unprivileged caller; set-uid honoured, or not under no_new_privs;
 * RLIMIT_NPROC enforced. Runs in a child that drops to uid 65534. */
static int creds_child(void)
{
    const char *suid = WORK "/report-suid";
    char out[] = "--report-out=" WORK "/suid.json";
    const char *argv[] = {suid, out, NULL, NULL};
    char json[65536];
    pspawn_result_t pids[8];
    struct pspawn_args a;
    struct rlimit lim;
    long r;

    CHECK(setgroups(0, NULL) == 0 && setresgid(65534, 65534, 65534) == 0 &&
          setresuid(65534, 65534, 65534) == 0, "drop privileges");
    args_init(&a, suid, 1);
    a.argv = ptr(argv);
    a.flags = PSPAWN_SHARED_ARGV;
    a.pids = ptr(pids);
    r = pspawn_sys_pspawn(&sys, &a, sizeof a);
    CHECK(r == 1 && wait_exit(pids[0]) == 0, "set-uid spawn: %ld %d", r, pids[0]);
    CHECK(slurp(WORK "/suid.json", json, sizeof json) == 0, "no set-uid report");
    CHECK(strstr(json, "\"uid\":65534,\"gid\":65534,\"euid\":0"), "set-uid not applied");
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs");
    r = pspawn_sys_pspawn(&sys, &a, sizeof a);
    CHECK(r == 1 && wait_exit(pids[0]) == 0, "no_new_privs spawn: %ld", r);
    CHECK(slurp(WORK "/suid.json", json, sizeof json) == 0, "no report");
    CHECK(strstr(json, "\"euid\":65534"), "set-uid applied under no_new_privs");
    /* RLIMIT_NPROC counts this user's processes: room for 2 more. */
    lim.rlim_cur = lim.rlim_max = 3;
    CHECK(setrlimit(RLIMIT_NPROC, &lim) == 0, "setrlimit");
    argv[0] = report_path;
    argv[2] = "--report-sleep-ms=2000";
    a.filename = ptr(report_path);
    a.nspawns = 4;
    r = pspawn_sys_pspawn(&sys, &a, sizeof a);
    CHECK(r == 2, "RLIMIT_NPROC 3: %ld started, not 2", r);
    CHECK(pids[2] == -EAGAIN && pids[3] == -EAGAIN, "over the limit: %d %d", pids[2], pids[3]);
    for (int i = 0; i < 2; i++)
        wait_exit(pids[i]);
    return check_no_children();
}

static int test_credentials(void)
{
    char cmd[1024];
    pid_t pid;
    int status;

    snprintf(cmd, sizeof cmd, "cp %s %s/report-suid && chmod 4755 %s/report-suid && chmod 777 %s",
             report_path, WORK, WORK, WORK);
    CHECK(system(cmd) == 0, "cannot make a set-uid copy of report");
    pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        int r = creds_child();

        if (r)
            fprintf(stderr, "  credentials: %s\n", failure);
        _exit(r ? 1 : 0);
    }
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the unprivileged child failed (see above)");
    return 0;
}

/* Random argument blocks for a bounded time, in a child; the kernel must not oops. */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static uint64_t random_pointer(void *good, void *unmapped)
{
    static const uint64_t odd[] = {0, 1, 4096, 0xffff888000000000ULL, 0xffffffffffffffffULL,
                                   0x00007ffffffff000ULL, 0x8000000000000000ULL};

    switch (next_random() % 5) {
    case 0:
        return odd[next_random() % (sizeof odd / sizeof odd[0])];
    case 1:
        return ptr(unmapped) + next_random() % 8192;
    case 2:
        return ptr(good) + next_random() % 64;
    default:
        return ptr(good);
    }
}

static void fuzz_once(void *page, void *unmapped, const char *const *argv)
{
    const char *const *vecs[4] = {argv, argv, NULL, argv};
    unsigned char block[PSPAWN_ARGS_SIZE_VER0 + 64];
    struct pspawn_args a;
    pspawn_result_t pids[64];
    cpu_set_t masks[4];
    size_t size;
    long r;

    memset(masks, 0xff, sizeof masks);
    args_init(&a, noop_path, 1 + next_random() % 4);
    if (next_random() % 8 == 0)
        a.nspawns = (unsigned int)next_random();
    a.filename = next_random() % 4 ? ptr(noop_path) : random_pointer(page, unmapped);
    a.flags = next_random() % 3 ? next_random() & PSPAWN_FLAGS_ALL : next_random();
    a.argv = (a.flags & PSPAWN_SHARED_ARGV) ? ptr(argv) : ptr(vecs);
    if (next_random() % 3 == 0)
        a.argv = random_pointer(page, unmapped);
    a.envp = next_random() % 2 ? 0 : random_pointer(vecs, unmapped);
    if (next_random() % 2) {
        a.cpumasks = next_random() % 3 ? ptr(masks) : random_pointer(masks, unmapped);
        a.cpumask_size = next_random() % 3 ? sizeof(cpu_set_t) : (uint32_t)next_random() % 9000;
    }
    a.pids = next_random() % 4 ? ptr(pids) : random_pointer(pids, unmapped);
    if (a.nspawns > 64) {
        /* Bounded: many instances, each failing alone on an unreadable vector. */
        a.flags &= ~PSPAWN_SHARED_ARGV;
        a.argv = ptr(unmapped);
        if (a.pids == ptr(pids))
            a.pids = ptr(unmapped);
    } else if (a.nspawns > 4 && !(a.flags & PSPAWN_SHARED_ARGV)) {
        a.argv = ptr(unmapped);
    }
    size = sizeof a;
    switch (next_random() % 6) {
    case 0:
        size = next_random() % sizeof block;
        break;
    case 1:
        size = next_random() % 10000;
        break;
    }
    memset(block, 0, sizeof block);
    if (next_random() % 6 == 0)
        block[sizeof a + next_random() % 64] = (unsigned char)next_random();
    memcpy(block, &a, sizeof a);
    if (size > sizeof block)
        r = next_random() % 2 ? pspawn_sys_pspawn(&sys, (void *)block, size)
                              : pspawn_sys_ipspawn(&sys, (void *)block, size);
    else if (next_random() % 2)
        r = pspawn_sys_pspawn(&sys, (void *)block, size);
    else if ((r = pspawn_sys_ipspawn(&sys, (void *)block, size)) >= 0) {
        if (next_random() % 2) {
            pspawn_result_t res[8];
            while (read((int)r, res, sizeof res) > 0)
                ;
        }
        close((int)r);
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static int test_fuzz(void)
{
    const char *env = getenv("KTEST_FUZZ_SECONDS");
    double seconds = env ? atof(env) : 20, end;
    const char *argv[] = {noop_path, NULL};
    void *page, *unmapped;
    long calls = 0;
    pid_t pid;
    int status;

    pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        page = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        unmapped = mmap(NULL, 8192, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED || unmapped == MAP_FAILED)
            _exit(2);
        memset(page, 0x41, 8192);
        rng ^= (uint64_t)getpid();
        end = now_s() + seconds;
        while (now_s() < end) {
            fuzz_once(page, unmapped, argv);
            calls++;
        }
        while (waitpid(-1, NULL, __WALL) > 0)
            ;
        printf("  fuzz: %ld calls in %.0f s\n", calls, seconds);
        _exit(0);
    }
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "fuzzer died (status %#x)", status);
    return check_no_children();
}

/* Slab and memory counters before and after many spawns. */
struct mem_counts {
    long slab_kb, sunreclaim_kb, free_kb, task_structs, pids;
};

static long meminfo_field(const char *text, const char *key)
{
    const char *p = strstr(text, key);

    return p ? atol(p + strlen(key)) : -1;
}

static long slab_active(const char *text, const char *name)
{
    char key[64];
    const char *p;

    snprintf(key, sizeof key, "\n%s ", name);
    p = strstr(text, key);
    return p ? atol(p + strlen(key)) : -1;
}

static int mem_counts(struct mem_counts *m)
{
    static char text[1 << 20];

    CHECK(write_text("/proc/sys/vm/drop_caches", "3") == 0, "drop_caches");
    /* Per-CPU partial slabs count as active: give them back first (best effort). */
    (void)write_text("/sys/kernel/slab/task_struct/shrink", "1");
    (void)write_text("/sys/kernel/slab/pid/shrink", "1");
    CHECK(slurp("/proc/meminfo", text, sizeof text) == 0, "meminfo");
    m->slab_kb = meminfo_field(text, "\nSlab:");
    m->sunreclaim_kb = meminfo_field(text, "\nSUnreclaim:");
    m->free_kb = meminfo_field(text, "MemFree:");
    CHECK(slurp("/proc/slabinfo", text, sizeof text) == 0, "slabinfo: %s", strerror(errno));
    m->task_structs = slab_active(text, "task_struct");
    m->pids = slab_active(text, "pid");
    return 0;
}

static int spawn_batches(long total, unsigned int batch, bool async)
{
    const char *argv[] = {exit0_path, NULL};
    static pspawn_result_t pids[PSPAWN_MAX_SPAWNS];
    struct pspawn_args a;

    args_init(&a, exit0_path, batch);
    a.argv = ptr(argv);
    a.flags = PSPAWN_SHARED_ARGV;
    for (long done = 0; done < total; done += batch) {
        long r;

        if (async) {
            int fd = (int)pspawn_sys_ipspawn(&sys, &a, sizeof a);

            CHECK(fd >= 0, "ipspawn: %s", strerror(errno));
            if (read_session(fd, pids, batch) != 0)
                return -1;
            close(fd);
            r = 0;
            for (unsigned int i = 0; i < batch; i++)
                r += pids[i] > 0;
        } else {
            a.pids = ptr(pids);
            r = pspawn_sys_pspawn(&sys, &a, sizeof a);
        }
        CHECK(r == batch, "batch at %ld: %ld of %u started", done, r, batch);
        for (unsigned int i = 0; i < batch; i++)
            CHECK(wait_exit(pids[i]) == 0, "instance %d", pids[i]);
    }
    return 0;
}

static int test_leak(void)
{
    const char *env = getenv("KTEST_LEAK_SPAWNS");
    long total = env ? atol(env) : 10000;
    struct mem_counts before, after;
    double t0;
    /* The pid cache is merged with the other 128-byte caches (9p, dentries, ...), whose
     * use moves it by ~100-200 objects here; a leak of one pid per spawn moves it by
     * `total`. */
    long pid_slack = total / 20 > 32 ? total / 20 : 32;

    if (spawn_batches(500, 250, true) != 0 || mem_counts(&before) != 0)
        return -1;
    t0 = now_s();
    if (spawn_batches(total / 2, 250, true) != 0 || spawn_batches(total / 2, 250, false) != 0)
        return -1;
    /* Exited tasks and pids are freed after an RCU grace period: a burst of children
     * that exit at once leaves up to a few hundred pending for a moment. A leak never
     * comes back down; wait (at most ~10 s) for the counts to settle. */
    for (int tries = 0;; tries++) {
        if (mem_counts(&after) != 0)
            return -1;
        if (tries == 40 || (after.task_structs - before.task_structs < 32 && after.pids - before.pids < pid_slack))
            break;
        usleep(250 * 1000);
    }
    printf("  leak: %ld spawns in %.1f s; Slab %ld -> %ld kB, SUnreclaim %ld -> %ld kB, "
           "MemFree %ld -> %ld kB, task_struct %ld -> %ld, pid %ld -> %ld\n",
           total, now_s() - t0, before.slab_kb, after.slab_kb, before.sunreclaim_kb,
           after.sunreclaim_kb, before.free_kb, after.free_kb, before.task_structs,
           after.task_structs, before.pids, after.pids);
    CHECK(after.sunreclaim_kb - before.sunreclaim_kb < 1024, "SUnreclaim grew");
    CHECK(after.task_structs - before.task_structs < 32, "task_structs grew");
    CHECK(after.pids - before.pids < pid_slack, "pids grew");
    CHECK(before.free_kb - after.free_kb < 8192, "MemFree fell");
    return check_no_children();
}

/* Nothing the kernel would print for a bug appeared while the tests ran. */
static int test_dmesg_clean(void)
{
    static const char *bad[] = {"BUG:", "Oops", "WARNING:", "general protection", "Call Trace",
                                "kernel BUG", "refcount_t", "hung_task", "rcu_sched"};
    static char log[1 << 20];
    int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, log, sizeof log - 1);

    CHECK(n >= 0, "klogctl: %s", strerror(errno));
    log[n] = '\0';
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p = strstr(log, bad[i]);

        if (p) {
            const char *start = p;

            while (start > log && start[-1] != '\n')
                start--;
            fprintf(stderr, "%.*s\n", (int)strcspn(start, "\n"), start);
            return fail("the kernel log has \"%s\"", bad[i]);
        }
    }
    return 0;
}

struct test {
    const char *name;
    int (*run)(void);
};

static const struct test tests[] = {
    {"detect", test_detect},
    {"pspawn_report", test_pspawn_report},
    {"ipspawn_report", test_ipspawn_report},
    {"shared_vectors", test_shared_vectors},
    {"errors_per_instance_pspawn", test_errors_sync},
    {"errors_per_instance_ipspawn", test_errors_async},
    {"bad_files", test_bad_files},
    {"offline_cpu", test_offline_cpu},
    {"bad_calls", test_bad_calls},
    {"session_before_during_after", test_session_states},
    {"session_closed_early", test_session_closed_early},
    {"credentials_setuid_nnp_nproc", test_credentials},
    {"killed_caller", test_killed_caller},
    {"fuzz", test_fuzz},
    {"leak_10000", test_leak},
    {"dmesg_clean", test_dmesg_clean},
};

static bool selected(const char *name, int argc, char **argv)
{
    if (argc <= 2)
        return true;
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0, r;
    struct { char text[256]; } rel;

    if (argc < 2) {
        fprintf(stderr, "usage: ktest BIN_DIR [TEST...]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    bin_dir = argv[1];
    snprintf(report_path, sizeof report_path, "%s/report", bin_dir);
    snprintf(noop_path, sizeof noop_path, "%s/noop", bin_dir);
    {
        /* exit0 is built beside ktest (tests/kernel/Makefile). */
        char self[256];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

        self[n > 0 ? n : 0] = '\0';
        if (strrchr(self, '/'))
            *strrchr(self, '/') = '\0';
        snprintf(exit0_path, sizeof exit0_path, "%s/exit0", self);
    }
    ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (slurp("/proc/sys/kernel/osrelease", rel.text, sizeof rel.text) == 0)
        printf("ktest: kernel %s", rel.text);
    r = pspawn_sys_detect(&sys);
    if (r <= 0) {
        printf("FAIL detect: %s\n", r == 0 ? "absent" : strerror(-r));
        printf("ktest: 0 passed, 1 failed\n");
        return 1;
    }
    printf("ktest: pspawn=%ld ipspawn=%ld abi=%d, %d CPUs\n", sys.pspawn_nr, sys.ipspawn_nr,
           sys.abi_version, ncpus);
    if (mkdir(WORK, 0755) != 0 && errno != EEXIST) {
        perror("mkdir " WORK);
        return 1;
    }
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        double t0;

        if (!selected(tests[i].name, argc, argv))
            continue;
        failure[0] = '\0';
        t0 = now_s();
        r = tests[i].run();
        if (r == 0) {
            printf("PASS %s (%.1f s)\n", tests[i].name, now_s() - t0);
            passed++;
        } else {
            printf("FAIL %s: %s\n", tests[i].name, failure[0] ? failure : "?");
            failed++;
            while (waitpid(-1, NULL, __WALL | WNOHANG) > 0)
                ;
        }
    }
    printf("ktest: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
