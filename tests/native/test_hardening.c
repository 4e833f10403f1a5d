/* Hardening of the launcher/proxy channel against a hostile world: forged requests from
 * processes of the same user, a launcher killed in mid-batch, a launcher that changes
 * its credentials, a full pending-signal quota, dead proxies, tiny descriptor limits. */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/protocol.h"
#include "support.h"

#define NOBODY 65534

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An unprivileged process of user NOBODY that is dumpable, as any ordinary process of a
 * user is (a credential change would otherwise make it non-dumpable). */
static void become_nobody(void)
{
    if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0 || prctl(PR_SET_DUMPABLE, 1) != 0)
        _exit(90);
}

/* A directory every user may enter, with copies of the files NOBODY must reach (the
 * build tree may sit below a directory only root can enter, as mktemp's are). */
static const char *world_copy(const char *source, const char *name)
{
    static char path[4][4096];
    static int next;
    CHECK(chmod(temp_dir(), 0755) == 0);
    char *out = path[next++ % 4];
    snprintf(out, 4096, "%s/%s", temp_dir(), name);
    FILE *in = fopen(source, "rb");
    CHECK(in != NULL);
    FILE *dst = fopen(out, "wb");
    CHECK(dst != NULL);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        CHECK(fwrite(buf, 1, n, dst) == n);
    CHECK(fclose(in) == 0 && fclose(dst) == 0 && chmod(out, 0755) == 0);
    return out;
}

/* fork(), with the child killed if this test process dies first (a failed CHECK exits):
 * no helper process may outlive the test. */
static pid_t fork_tied(void)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0 && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent))
        _exit(99);
    return pid;
}

static bool is_root(const char *test)
{
    if (geteuid() == 0)
        return true;
    printf("skip %s: needs root to play two unprivileged processes of one user\n", test);
    return false;
}

/* The intruder: as a process of the launcher's user without ptrace rights over it, try
 * every way into the channel. Exit status: bit 0 = a segment opened, bit 1 = a request
 * written, bit 2 = ptrace attach to the proxy succeeded, bit 3 = an eventfd opened. */
static int intrude(pid_t launcher, pid_t proxy, const char *target, const char *marker)
{
    int result = 0;
    pid_t victims[2] = {proxy, launcher};
    for (int v = 0; v < 2; v++) {
        char dir_path[64];
        snprintf(dir_path, sizeof(dir_path), "/proc/%d/fd", (int)victims[v]);
        DIR *dir = opendir(dir_path);
        if (dir == NULL)
            continue; /* the non-dumpable proxy's fd directory is root's: that is the point */
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char path[384], link[256];
            snprintf(path, sizeof(path), "%s/%s", dir_path, e->d_name);
            ssize_t len = readlink(path, link, sizeof(link) - 1);
            link[len > 0 ? len : 0] = '\0';
            int fd = open(path, O_RDWR | O_CLOEXEC);
            if (fd < 0)
                continue;
            if (strstr(link, "eventfd") != NULL)
                result |= 8;
            struct stat st;
            if (strncmp(link, "/memfd:pspawn", 13) == 0 && fstat(fd, &st) == 0) {
                result |= 1;
                struct psp_shared *sh = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (sh != MAP_FAILED) {
                    char option[4300];
                    snprintf(option, sizeof(option), "--report-out=%s", marker);
                    char *argv[] = {(char *)target, option, NULL};
                    char *envp[] = {NULL};
                    size_t bytes;
                    int argc, envc;
                    psp_measure(argv, envp, &bytes, &argc, &envc);
                    uint64_t at = (sh->data_offset + 63) & ~(uint64_t)63;
                    struct psp_wire_set *set = (struct psp_wire_set *)((char *)sh + at);
                    *set = (struct psp_wire_set){.argc = (uint32_t)argc, .envc = (uint32_t)envc};
                    psp_pack((char *)sh + at + 64, argv, envp);
                    uint64_t results = (at + 64 + bytes + 63) & ~(uint64_t)63;
                    sh->slots[0].request = (struct psp_request){
                        .count = 1, .set_count = 1, .region_offset = at, .region_length = results + 64 - at,
                        .sets_offset = at, .strings_offset = at + 64, .strings_length = bytes,
                        .results_offset = results, .errors_offset = results + 4};
                    atomic_fetch_add(&sh->slots[0].request_seq, 1);
                    result |= 2;
                }
            }
            uint64_t one = 1;
            (void)!write(fd, &one, sizeof(one)); /* ring whatever it is */
            close(fd);
        }
        closedir(dir);
    }
    /* The doorbell of protocol 1: a queued signal with a made-up sender. */
    union sigval value = {.sival_int = 0};
    for (int i = 0; i < 5; i++) {
        sigqueue(proxy, SIGRTMIN + 5, value);
        kill(proxy, SIGRTMIN + 5);
    }
    if (ptrace(PTRACE_ATTACH, proxy, NULL, NULL) == 0) {
        result |= 4;
        waitpid(proxy, NULL, __WALL);
        ptrace(PTRACE_DETACH, proxy, NULL, NULL);
    }
    return result;
}

static bool holds_segment(void)
{
    DIR *dir = opendir("/proc/self/fd");
    CHECK(dir != NULL);
    bool found = false;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        char path[384], link[256];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(path, link, sizeof(link) - 1);
        link[len > 0 ? len : 0] = '\0';
        found |= strncmp(link, "/memfd:pspawn", 13) == 0;
    }
    closedir(dir);
    return found;
}

/* Defect 4: any process of the user could open the proxy's segment through
 * /proc/<proxy>/fd/3, write a request and ring with a forged sender. */
static void forged_requests_refused(void)
{
    if (!is_root("forged_requests_refused"))
        return;
    const char *target = world_copy(fixture("report"), "report");
    const char *library = world_copy(PSPAWN_FIXTURE_DIR "/../lib/libpspawn_proxy.so", "libpspawn_proxy.so");
    char marker[4200];
    snprintf(marker, sizeof(marker), "%s.forged.json", target);
    int to_parent[2], to_launcher[2];
    CHECK(pipe(to_parent) == 0 && pipe(to_launcher) == 0);

    pid_t launcher = fork_tied();
    CHECK(launcher >= 0);
    if (launcher == 0) {
        become_nobody();
        pspawn_context_attr_t attr;
        pspawn_context_attr_init(&attr);
        attr.proxy_library = library;
        pspawn_context_t ctx;
        if (pspawn_context_create_ex(&ctx, target, &attr) != 0)
            _exit(10);
        if (holds_segment())
            _exit(11); /* no descriptor of the segment may be left for others to open */
        pid_t proxy = pspawn_context_proxy_pid(&ctx);
        char go;
        if (write(to_parent[1], &proxy, sizeof(proxy)) != sizeof(proxy) || read(to_launcher[0], &go, 1) != 1)
            _exit(12);
        usleep(300000);
        /* The intruder may kill the proxy (any process of the user may signal it): the
         * only exited child allowed is the proxy, and the next spawn restarts it. */
        if (count_zombie_children() - (process_alive(proxy) ? 0 : 1) != 0)
            _exit(13); /* a child we never asked for */
        if (access(marker, F_OK) == 0)
            _exit(14);
        char *argv[] = {"report", "--report-exit=9", NULL};
        pid_t pid = pspawn(&ctx, argv);
        int st;
        if (pid <= 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 9)
            _exit(15); /* the launcher's own requests are still served */
        pspawn_context_destroy(&ctx);
        _exit(0);
    }
    pid_t proxy;
    CHECK(read(to_parent[0], &proxy, sizeof(proxy)) == sizeof(proxy) && proxy > 0);
    pid_t intruder = fork_tied();
    CHECK(intruder >= 0);
    if (intruder == 0) {
        become_nobody();
        _exit(intrude(launcher, proxy, target, marker));
    }
    int st = wait_child(intruder, 10000);
    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(WEXITSTATUS(st), 0);
    CHECK(write(to_launcher[1], "g", 1) == 1);
    st = wait_child(launcher, 20000);
    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(WEXITSTATUS(st), 0);
    CHECK(access(marker, F_OK) != 0);
}

/* Reaps every child (we are a subreaper: orphans come to us) until none is left. */
static int reap_all(int timeout_ms)
{
    int reaped = 0;
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(-1, NULL, WNOHANG);
        if (r > 0) {
            reaped++;
            continue;
        }
        if (r < 0 && errno == ECHILD)
            return reaped;
        CHECK(now_ms() < deadline);
        usleep(2000);
    }
}

/* Defect 2: a launcher SIGKILLed during pspawn_n(100000) left its proxy forking the
 * whole batch (~28,000 orphans here). It must stop within a second, between two forks. */
enum { MID_BATCH_COUNT = 100000 };

static int spawn_huge_batch(pspawn_context_t *ctx)
{
    static pid_t pids[MID_BATCH_COUNT];
    char *argv[] = {"noop", NULL};
    pspawn_n(pids, ctx, MID_BATCH_COUNT, argv);
    return 0;
}

static void launcher_killed_mid_batch(void)
{
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    pid_t proxy;
    pid_t launcher = fork_launcher(fixture("noop"), spawn_huge_batch, &proxy);
    int proxy_fd = (int)syscall(SYS_pidfd_open, proxy, 0);
    CHECK(proxy_fd >= 0);
    usleep(300000);
    CHECK(process_alive(proxy)); /* still forking the batch */
    CHECK(kill(launcher, SIGKILL) == 0);
    int64_t killed = now_ms();
    struct pollfd p = {.fd = proxy_fd, .events = POLLIN};
    CHECK(poll(&p, 1, 1000) == 1);
    printf("proxy gone %lld ms after its launcher\n", (long long)(now_ms() - killed));
    close(proxy_fd);
    int reaped = reap_all(10000);
    printf("%d processes reaped (launcher, proxy, children started before the kill)\n", reaped);
    CHECK(reaped < MID_BATCH_COUNT / 10);
    usleep(200000);
    CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD); /* nobody forks any more */
}

/* Defect 3: after setuid, pspawn, ping and destroy blocked forever (the proxy could no
 * longer be signalled). Now: spawns fail EPERM at once, ping works, destroy is bounded. */
static int spawn_as_nobody(pspawn_context_t *ctx)
{
    become_nobody();
    char *argv[] = {"noop", NULL};
    int64_t t0 = now_ms();
    errno = 0;
    if (pspawn(ctx, argv) != -1 || errno != EPERM)
        return 12;
    pid_t pids[3];
    if (pspawn_n(pids, ctx, 3, argv) != -1 || errno != EPERM || pids[2] != -1)
        return 13;
    if (pspawn_context_ping(ctx) != 0)
        return 14;
    pspawn_context_destroy(ctx);
    return now_ms() - t0 > 3000 ? 15 : 0;
}

static void credentials_changed(void)
{
    if (!is_root("credentials_changed"))
        return;
    pid_t proxy;
    pid_t launcher = fork_launcher(fixture("noop"), spawn_as_nobody, &proxy);
    int st = wait_child(launcher, 10000);
    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(WEXITSTATUS(st), 0);
    CHECK(!process_alive(proxy));
}

/* Defect 8: with the user's pending-signal quota exhausted (by anyone), the signal
 * doorbell failed EAGAIN and the context was marked broken for good. */
static void signal_queue_full(void)
{
    struct rlimit small = {.rlim_cur = 16, .rlim_max = 16};
    CHECK(setrlimit(RLIMIT_SIGPENDING, &small) == 0); /* this test process only */
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, fixture("noop"), -1) == 0);
    sigset_t rt;
    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN + 1);
    pid_t sink = fork_tied();
    CHECK(sink >= 0);
    if (sink == 0) {
        sigprocmask(SIG_BLOCK, &rt, NULL);
        for (;;)
            pause();
    }
    usleep(50000);
    union sigval value = {.sival_int = 1};
    int queued = 0;
    while (queued < 100000 && sigqueue(sink, SIGRTMIN + 1, value) == 0)
        queued++;
    CHECK_EQ_INT(errno, EAGAIN); /* the quota is really full */
    char *argv[] = {"noop", NULL};
    for (int i = 0; i < 3; i++) {
        pid_t pid = pspawn(&ctx, argv);
        CHECK(pid > 0);
        int st = wait_child(pid, 10000);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK(pspawn_context_ping(&ctx) == 0);
    CHECK_EQ_INT(pspawn_context_restarts(&ctx), 0);
    kill(sink, SIGKILL);
    waitpid(sink, NULL, 0);
    pspawn_context_destroy(&ctx);
}

static pid_t spawn_report(pspawn_context_t *ctx, const char *sleep_option, const char *exit_option)
{
    char *argv[] = {"report", (char *)sleep_option, (char *)exit_option, NULL};
    return pspawn(ctx, argv);
}

/* Defect 10: a killed proxy broke the context until it was re-created. */
static void dead_proxy_restarts(void)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.request_timeout_ms = 500;
    attr.proxies = 1; /* one proxy: what happens to it is what the context sees */
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("report"), &attr) == 0);
    pid_t before = spawn_report(&ctx, "--report-sleep-ms=300", "--report-exit=4");
    CHECK(before > 0);
    pid_t old_proxy = pspawn_context_proxy_pid(&ctx);
    CHECK(kill(old_proxy, SIGKILL) == 0);
    usleep(50000);
    pid_t after = spawn_report(&ctx, "--report-sleep-ms=0", "--report-exit=3");
    CHECK(after > 0);
    CHECK_EQ_INT(pspawn_context_restarts(&ctx), 1);
    pid_t new_proxy = pspawn_context_proxy_pid(&ctx);
    CHECK(new_proxy > 0 && new_proxy != old_proxy && process_alive(new_proxy));
    int st = wait_child(after, 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    st = wait_child(before, 10000); /* earlier children stay waitable */
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 4);
    /* A stopped proxy times out, is replaced, and the next request is served. */
    CHECK(kill(new_proxy, SIGSTOP) == 0);
    CHECK(pspawn_context_ping(&ctx) == 0 || errno == ETIMEDOUT);
    pid_t third = spawn_report(&ctx, "--report-sleep-ms=0", "--report-exit=5");
    CHECK(third > 0);
    st = wait_child(third, 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 5);
    CHECK(!process_alive(new_proxy));
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

static void restarts_bounded(void)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.max_restarts = 1;
    attr.proxies = 1; /* one proxy: what happens to it is what the context sees */
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == 0);
    char *argv[] = {"noop", NULL};
    for (int round = 0; round < 2; round++) {
        CHECK(kill(pspawn_context_proxy_pid(&ctx), SIGKILL) == 0);
        usleep(50000);
        errno = 0;
        pid_t pid = pspawn(&ctx, argv);
        if (round == 0) {
            CHECK(pid > 0);
            CHECK(WIFEXITED(wait_child(pid, 10000)));
        } else {
            CHECK(pid == -1 && errno == EPIPE); /* used up */
            CHECK_EQ_INT(pspawn_context_proxy_pid(&ctx), -1);
        }
    }
    CHECK(pspawn(&ctx, argv) == -1 && errno == EPIPE);
    CHECK_EQ_INT(pspawn_context_restarts(&ctx), 1);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);

    attr.max_restarts = -2;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == -1 && errno == EINVAL);
}

/* Relay mode: the restarted proxy serves new children; the old proxy's children were
 * its own, so their statuses went with it (documented: ECHILD). */
static void relay_proxy_restarts(void)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = PSPAWN_CTX_RELAY;
    attr.proxies = 1; /* one proxy: what happens to it is what the context sees */
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("report"), &attr) == 0);
    pid_t before = spawn_report(&ctx, "--report-sleep-ms=200", "--report-exit=4");
    CHECK(before > 0);
    CHECK(kill(pspawn_context_proxy_pid(&ctx), SIGKILL) == 0);
    usleep(50000);
    pid_t after = spawn_report(&ctx, "--report-sleep-ms=0", "--report-exit=6");
    CHECK(after > 0);
    CHECK_EQ_INT(pspawn_context_restarts(&ctx), 1);
    int st;
    CHECK(pspawn_waitpid(&ctx, after, &st, 0) == after && WIFEXITED(st) && WEXITSTATUS(st) == 6);
    errno = 0;
    CHECK(pspawn_waitpid(&ctx, before, &st, 0) == -1 && errno == ECHILD);
    pspawn_context_destroy(&ctx);
}

/* Defect 9 (native part): RLIMIT_NOFILE 8-10 made create fail EINVAL; and a child whose
 * error pipe could not be moved above stdio was reported as started. With stdin closed,
 * the request's error pipe takes descriptor 0; every small limit must then give either
 * a context and correct per-instance results, or EMFILE. */
static void low_descriptor_limits(void)
{
    pid_t sub = fork_tied();
    CHECK(sub >= 0);
    if (sub == 0) {
        close(0);
        pspawn_attr_t *attr;
        if (pspawn_attr_create(&attr) != 0 || pspawn_attr_stdio_file(attr, 1, "/nonexistent/dir/out", O_WRONLY, 0) != 0)
            _exit(10);
        char *argv[] = {"noop", NULL};
        int created = 0;
        for (rlim_t limit = 4; limit <= 24; limit++) {
            struct rlimit rl;
            getrlimit(RLIMIT_NOFILE, &rl);
            rl.rlim_cur = limit;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                _exit(11);
            pspawn_context_t ctx;
            errno = 0;
            if (pspawn_context_create(&ctx, fixture("noop"), -1) != 0) {
                if (errno != EMFILE) {
                    fprintf(stderr, "limit %d: create failed with errno %d, not EMFILE\n", (int)limit, errno);
                    _exit(12);
                }
                continue;
            }
            created++;
            pid_t pid;
            int error;
            int n = pspawn_nx(&pid, &error, NULL, &ctx, 1, argv, NULL, attr);
            if (n > 0 || pid != -1 || (error != ENOENT && error != EMFILE)) {
                fprintf(stderr, "limit %d: started %d, pid %d, error %d\n", (int)limit, n, (int)pid, error);
                _exit(13);
            }
            pspawn_context_destroy(&ctx);
        }
        pspawn_attr_destroy(attr);
        _exit(created > 0 ? 0 : 14);
    }
    int st = wait_child(sub, 60000);
    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(WEXITSTATUS(st), 0);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"forged_requests_refused", forged_requests_refused},
        {"launcher_killed_mid_batch", launcher_killed_mid_batch},
        {"credentials_changed", credentials_changed},
        {"signal_queue_full", signal_queue_full},
        {"dead_proxy_restarts", dead_proxy_restarts},
        {"restarts_bounded", restarts_bounded},
        {"relay_proxy_restarts", relay_proxy_restarts},
        {"low_descriptor_limits", low_descriptor_limits},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
