/* The C API against real processes: what a child receives, and who owns it. */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

extern char **environ;

static pspawn_context_t open_context(const char *name)
{
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, fixture(name), -1) == 0);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_ZYGOTE);
    return ctx;
}

/* Runs the report fixture with argv[1..] = args and the given environment; returns
 * its JSON. argv gets a --report-out option appended. */
static char *report_with(pspawn_context_t *ctx, char **args, size_t nargs, char **envp, int *status)
{
    static int serial;
    char out[4200], option[4300];
    snprintf(out, sizeof(out), "%s/report-%d.json", temp_dir(), serial++);
    snprintf(option, sizeof(option), "--report-out=%s", out);
    char **argv = calloc(nargs + 3, sizeof(char *));
    argv[0] = "report";
    for (size_t i = 0; i < nargs; i++)
        argv[i + 1] = args[i];
    argv[nargs + 1] = option;
    pid_t pid = pspawn_e(ctx, argv, envp);
    CHECK(pid > 0);
    int st = wait_child(pid, 20000);
    if (status != NULL)
        *status = st;
    else
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(argv);
    return await_file(out, 5000);
}

static void argv_exact(void)
{
    pspawn_context_t ctx = open_context("report");
    char *big = malloc(100001);
    memset(big, 'x', 100000);
    big[100000] = '\0';
    char *args[] = {"", "plain", "with space", "tab\tand\nnewline", "\xc3\xa9t\xc3\xa9 \xe2\x82\xac", "\"quoted\\\"", big, ""};
    size_t nargs = sizeof(args) / sizeof(args[0]);
    char *json = report_with(&ctx, args, nargs, NULL, NULL);
    size_t n;
    char **argv = json_strings(json, "argv", &n);
    CHECK_EQ_INT(n, nargs + 2);
    CHECK(strcmp(argv[0], "report") == 0);
    for (size_t i = 0; i < nargs; i++)
        CHECK(strcmp(argv[i + 1], args[i]) == 0);
    CHECK(strncmp(argv[nargs + 1], "--report-out=", 13) == 0);
    free_strings(argv, n);
    free(json);
    free(big);
    pspawn_context_destroy(&ctx);
}

static bool has_entry(char **list, size_t n, const char *entry)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], entry) == 0)
            return true;
    return false;
}

static void env_exact(void)
{
    pspawn_context_t ctx = open_context("report");
    char *envp[] = {"A=1", "EMPTY=", "UTF=\xc3\xa9", "LD_PRELOAD=/nonexistent/user.so", "PSPAWN_PROXY_CONFIG=forged", NULL};
    char *json = report_with(&ctx, NULL, 0, envp, NULL);
    size_t n;
    char **env = json_strings(json, "env", &n);
    /* Exactly ours, in order; our own variable never reaches a child. */
    CHECK_EQ_INT(n, 4);
    CHECK(strcmp(env[0], "A=1") == 0);
    CHECK(strcmp(env[1], "EMPTY=") == 0);
    CHECK(strcmp(env[2], "UTF=\xc3\xa9") == 0);
    CHECK(strcmp(env[3], "LD_PRELOAD=/nonexistent/user.so") == 0);
    free_strings(env, n);
    free(json);

    char *empty[] = {NULL};
    json = report_with(&ctx, NULL, 0, empty, NULL);
    env = json_strings(json, "env", &n);
    CHECK_EQ_INT(n, 0);
    free_strings(env, n);
    free(json);
    pspawn_context_destroy(&ctx);
}

static void env_default_is_callers(void)
{
    pspawn_context_t ctx = open_context("report");
    /* Set after the proxy started: children get the environment at spawn time. */
    CHECK(setenv("PSPAWN_TEST_MARKER", "late value", 1) == 0);
    char *json = report_with(&ctx, NULL, 0, NULL, NULL);
    size_t n, expected = 0;
    char **env = json_strings(json, "env", &n);
    while (environ[expected] != NULL)
        expected++;
    CHECK_EQ_INT(n, expected);
    CHECK(has_entry(env, n, "PSPAWN_TEST_MARKER=late value"));
    for (size_t i = 0; i < n; i++) {
        CHECK(strncmp(env[i], "LD_PRELOAD=", 11) != 0 || getenv("LD_PRELOAD") != NULL);
        CHECK(strncmp(env[i], "PSPAWN_PROXY_CONFIG=", 20) != 0);
        CHECK(strncmp(env[i], "LD_BIND_NOW=", 12) != 0 || getenv("LD_BIND_NOW") != NULL);
    }
    free_strings(env, n);
    free(json);
    pspawn_context_destroy(&ctx);
}

static void children_belong_to_launcher(void)
{
    pspawn_context_t ctx = open_context("report");
    char *json = report_with(&ctx, NULL, 0, NULL, NULL);
    CHECK_EQ_INT(json_int(json, "ppid"), getpid());
    CHECK(json_int(json, "pid") != pspawn_context_proxy_pid(&ctx));
    /* Same process group as a fork would give. */
    CHECK_EQ_INT(json_int(json, "pgid"), getpgrp());
    free(json);
    pspawn_context_destroy(&ctx);
}

static void exit_codes(void)
{
    pspawn_context_t ctx = open_context("report");
    for (int code = 0; code < 256; code += 17) {
        char opt[32];
        snprintf(opt, sizeof(opt), "--report-exit=%d", code);
        char *argv[] = {"report", opt, "--report-out=/dev/null", NULL};
        pid_t pid = pspawn(&ctx, argv);
        CHECK(pid > 0);
        int st = wait_child(pid, 10000);
        CHECK(WIFEXITED(st));
        CHECK_EQ_INT(WEXITSTATUS(st), code);
    }
    pspawn_context_destroy(&ctx);
}

static void signals(void)
{
    pspawn_context_t ctx = open_context("report");
    int sigs[] = {SIGKILL, SIGTERM, SIGSEGV, SIGUSR1};
    for (size_t i = 0; i < 4; i++) {
        char opt[32];
        snprintf(opt, sizeof(opt), "--report-signal=%d", sigs[i]);
        char *argv[] = {"report", opt, "--report-out=/dev/null", NULL};
        pid_t pid = pspawn(&ctx, argv);
        CHECK(pid > 0);
        int st = wait_child(pid, 10000);
        CHECK(WIFSIGNALED(st));
        CHECK_EQ_INT(WTERMSIG(st), sigs[i]);
    }
    /* And one killed by us. */
    char *argv[] = {"report", "--report-sleep-ms=60000", "--report-out=/dev/null", NULL};
    pid_t pid = pspawn(&ctx, argv);
    CHECK(pid > 0 && kill(pid, SIGKILL) == 0);
    int st = wait_child(pid, 10000);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    pspawn_context_destroy(&ctx);
}

static void nothing_leaks(void)
{
    /* Give the launcher extra descriptors and a blocked signal: none may reach a child. */
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    CHECK(sigprocmask(SIG_BLOCK, &set, &old) == 0);
    pspawn_context_t ctx = open_context("report");
    char *json = report_with(&ctx, NULL, 0, NULL, NULL);
    size_t n;
    long long *fds = json_ints(json, "fds", &n);
    CHECK_EQ_INT(n, 3);
    CHECK(fds[0] == 0 && fds[1] == 1 && fds[2] == 2);
    free(fds);
    long long *mask = json_ints(json, "sigmask", &n);
    CHECK_EQ_INT(n, 0);
    free(mask);
    long long *handled = json_ints(json, "sighandled", &n);
    CHECK_EQ_INT(n, 0);
    free(handled);
    free(json);
    pspawn_context_destroy(&ctx);
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(pipefd[0]);
    close(pipefd[1]);
}

static void progname_and_cmdline(void)
{
    pspawn_context_t ctx = open_context("report");
    char *args[] = {"one", "two"};
    char *json = report_with(&ctx, args, 2, NULL, NULL);
    char *name = json_string_value(json, "progname");
    CHECK(strcmp(name, "report") == 0);
    free(name);
    size_t n;
    char **cmdline = json_strings(json, "cmdline", &n);
    CHECK(n == 4 && strcmp(cmdline[0], "report") == 0 && strcmp(cmdline[2], "two") == 0);
    free_strings(cmdline, n);
    free(json);
    pspawn_context_destroy(&ctx);
}

static void glibc_tid_fixed(void)
{
    pspawn_context_t ctx = open_context("tidcheck");
    /* Each proxy's own affinity (its share of the CPUs) before the children pin. */
    pid_t proxies[8];
    cpu_set_t before[8];
    int nproxies = pspawn_context_proxy_pids(&ctx, proxies, 8);
    CHECK(nproxies >= 1 && nproxies <= 8);
    for (int k = 0; k < nproxies; k++)
        CHECK(sched_getaffinity(proxies[k], sizeof(before[k]), &before[k]) == 0);
    char *argv[] = {"tidcheck", NULL};
    for (int i = 0; i < 3; i++) {
        pid_t pid = pspawn(&ctx, argv);
        CHECK(pid > 0);
        int st = wait_child(pid, 10000);
        CHECK(WIFEXITED(st));
        CHECK_EQ_INT(WEXITSTATUS(st), 0);
    }
    /* The proxies themselves were not the ones pinned. */
    for (int k = 0; k < nproxies; k++) {
        cpu_set_t proxy_set;
        CHECK(sched_getaffinity(proxies[k], sizeof(proxy_set), &proxy_set) == 0);
        CHECK(CPU_EQUAL(&before[k], &proxy_set));
    }
    pspawn_context_destroy(&ctx);
}

static void pspawn_n_200(void)
{
    pspawn_context_t ctx = open_context("noop");
    pid_t pids[200];
    char *argv[] = {"noop", NULL};
    CHECK_EQ_INT(pspawn_n(pids, &ctx, 200, argv), 200);
    for (int i = 0; i < 200; i++) {
        int st;
        CHECK(waitpid(pids[i], &st, 0) == pids[i]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_EQ_INT(pspawn_n(pids, &ctx, 0, argv), 0);
    pspawn_context_destroy(&ctx);
}

static pspawn_context_t shared_ctx;

static void *spawn_from_thread(void *arg)
{
    (void)arg;
    char *argv[] = {"report", "--report-exit=3", "--report-out=/dev/null", NULL};
    for (int i = 0; i < 25; i++) {
        pid_t pid = pspawn(&shared_ctx, argv);
        CHECK(pid > 0);
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    }
    return NULL;
}

static void concurrent_threads(void)
{
    shared_ctx = open_context("report");
    pthread_t threads[8];
    for (int i = 0; i < 8; i++)
        CHECK(pthread_create(&threads[i], NULL, spawn_from_thread, NULL) == 0);
    for (int i = 0; i < 8; i++)
        CHECK(pthread_join(threads[i], NULL) == 0);
    CHECK_EQ_INT(count_zombie_children(), 0);
    pspawn_context_destroy(&shared_ctx);
}

static void core_pinning(void)
{
    int last = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, fixture("report"), last) == 0);
    char *json = report_with(&ctx, NULL, 0, NULL, NULL);
    size_t n;
    long long *cpus = json_ints(json, "affinity", &n);
    CHECK(n == 1 && cpus[0] == last);
    free(cpus);
    free(json);
    pspawn_context_destroy(&ctx);

    errno = 0;
    CHECK(pspawn_context_create(&ctx, fixture("report"), 100000) == -1 && errno == EINVAL);
    CHECK(pspawn_context_create(&ctx, fixture("report"), -2) == -1 && errno == EINVAL);
}

static void bad_arguments(void)
{
    pspawn_context_t ctx = open_context("noop");
    pid_t pids[2];
    char *argv[] = {"noop", NULL};
    char *no_argv0[] = {NULL};
    errno = 0;
    CHECK(pspawn(&ctx, NULL) == -1 && errno == EINVAL);
    CHECK(pspawn(&ctx, no_argv0) == -1 && errno == EINVAL);
    CHECK(pspawn_n(pids, &ctx, -1, argv) == -1 && errno == EINVAL);
    CHECK(pspawn_n(pids, &ctx, PSPAWN_MAX_SPAWNS + 1, argv) == -1 && errno == EINVAL);
    CHECK(pspawn_n(NULL, &ctx, 1, argv) == -1 && errno == EINVAL);
    CHECK(pspawn(NULL, argv) == -1 && errno == EINVAL);
    CHECK(pspawn_context_create(NULL, fixture("noop"), -1) == -1 && errno == EINVAL);
    pspawn_context_t other;
    CHECK(pspawn_context_create(&other, NULL, -1) == -1 && errno == EINVAL);
    pspawn_context_destroy(&ctx);
    CHECK(pspawn(&ctx, argv) == -1 && errno == EINVAL); /* destroyed */
    pspawn_context_destroy(&ctx);                       /* idempotent */
    pspawn_context_destroy(NULL);
}

static void argv_too_large(void)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.buffer_size = 64 << 10;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == 0);
    char *big = malloc(100000);
    memset(big, 'y', 99999);
    big[99999] = '\0';
    char *argv[] = {"noop", big, NULL};
    errno = 0;
    CHECK(pspawn(&ctx, argv) == -1 && errno == E2BIG);
    free(big);
    /* The context is unharmed. */
    char *small[] = {"noop", NULL};
    pid_t pid = pspawn(&ctx, small);
    CHECK(pid > 0);
    CHECK(WIFEXITED(wait_child(pid, 10000)));
    /* More instances than fit in one batch are split, not refused: with a 60 kB
     * argument about 1300 results fit beside the strings. */
    enum { N = 3000 };
    char *arg = malloc(60000);
    memset(arg, 'z', 59999);
    arg[59999] = '\0';
    char *wide[] = {"noop", arg, NULL};
    pid_t *pids = malloc(N * sizeof(pid_t));
    CHECK(pspawn_n(pids, &ctx, N, wide) == N);
    free(arg);
    for (int i = 0; i < N; i++)
        CHECK(waitpid(pids[i], NULL, 0) == pids[i]);
    free(pids);
    pspawn_context_destroy(&ctx);
}

static void soak_1000_no_leaks(void)
{
    pspawn_context_t ctx = open_context("noop");
    char *argv[] = {"noop", NULL};
    int fds_before = count_open_fds();
    for (int round = 0; round < 10; round++) {
        pid_t pids[100];
        CHECK_EQ_INT(pspawn_n(pids, &ctx, 100, argv), 100);
        for (int i = 0; i < 100; i++)
            CHECK(waitpid(pids[i], NULL, 0) == pids[i]);
    }
    CHECK_EQ_INT(count_open_fds(), fds_before);
    CHECK_EQ_INT(count_zombie_children(), 0);
    int proxies = pspawn_context_proxy_count(&ctx);
    CHECK(proxies >= 1);
    /* Held per context: /proc/self/cgroup where there is a cgroup2 mount (the cheap
     * check whether we moved since create; see pspawn_attr_set_cgroup). */
    int per_context = 0;
    for (int fd = 0; fd < 1024; fd++) {
        char link[64], target[256];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n > 7 && (target[n] = '\0', strcmp(target + n - 7, "/cgroup") == 0))
            per_context++;
    }
    CHECK(per_context <= 1);
    pspawn_context_destroy(&ctx);
    /* Held per proxy: handshake and doorbell eventfds, socket, pidfd, and one reply
     * eventfd per ring slot (4); the segment is mapped, not open. */
    CHECK_EQ_INT(count_open_fds(), fds_before - 8 * proxies - per_context);
}

static void destroy_reaps_proxy(void)
{
    int fds_before = count_open_fds();
    pspawn_context_t ctx = open_context("noop");
    pid_t proxy = pspawn_context_proxy_pid(&ctx);
    CHECK(proxy > 0 && process_alive(proxy));
    pspawn_context_destroy(&ctx);
    CHECK(!process_alive(proxy));
    errno = 0;
    CHECK(waitpid(proxy, NULL, WNOHANG) == -1 && errno == ECHILD); /* already reaped */
    CHECK_EQ_INT(count_zombie_children(), 0);
    CHECK_EQ_INT(count_open_fds(), fds_before);
}

/* pspawn_context_fds lists the context's descriptors (open, close-on-exec); after the
 * caller has taken them back (closed, then a file of its own dup2'd onto each number),
 * pspawn_context_abandon stops the proxy and the parked children and touches none of
 * those numbers. */
static void abandon_spares_taken_descriptors(void)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.proxies = 1;
    attr.pool = 2;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == 0);
    pid_t proxy = pspawn_context_proxy_pid(&ctx);
    pid_t parked[2];
    for (int tries = 0; pspawn_context_pool_pids(&ctx, parked, 2) != 2; tries++) {
        CHECK(tries < 2000);
        usleep(5000);
    }
    int n = pspawn_context_fds(&ctx, NULL, 0);
    CHECK(n >= 4);
    int fds[256];
    CHECK_EQ_INT(pspawn_context_fds(&ctx, fds, 256), n);
    CHECK_EQ_INT(pspawn_context_fds(&ctx, fds, 2), n); /* the count, whatever fits */
    CHECK_EQ_INT(pspawn_context_fds(NULL, fds, 256), -1);
    CHECK_EQ_INT(errno, EINVAL);
    CHECK_EQ_INT(pspawn_context_fds(&ctx, NULL, 1), -1);
    CHECK_EQ_INT(pspawn_context_fds(&ctx, fds, 256), n);
    for (int i = 0; i < n; i++) {
        int flags = fcntl(fds[i], F_GETFD);
        CHECK(flags >= 0 && (flags & FD_CLOEXEC));
    }
    char path[4200];
    snprintf(path, sizeof(path), "%s/mine", temp_dir());
    int mine = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(mine >= 0 && write(mine, "hello", 5) == 5);
    struct stat st;
    CHECK(fstat(mine, &st) == 0);
    for (int i = 0; i < n; i++)
        CHECK(fds[i] == mine || dup2(mine, fds[i]) == fds[i]); /* dup2 closes the context's first */
    pspawn_context_abandon(&ctx);
    for (int i = 0; i < n; i++) {
        struct stat now;
        CHECK(fstat(fds[i], &now) == 0 && now.st_ino == st.st_ino && now.st_dev == st.st_dev);
    }
    char buf[16] = {0};
    CHECK_EQ_INT(pread(mine, buf, sizeof(buf) - 1, 0), 5); /* nothing written into it */
    CHECK(strcmp(buf, "hello") == 0);
    CHECK(!process_alive(proxy) && !process_alive(parked[0]) && !process_alive(parked[1]));
    CHECK_EQ_INT(count_zombie_children(), 0);
    for (int i = 0; i < n; i++)
        if (fds[i] != mine)
            close(fds[i]);
    close(mine);
    pspawn_context_abandon(&ctx); /* destroyed: a no-op, like destroy */
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"argv_exact", argv_exact},
        {"env_exact", env_exact},
        {"env_default_is_callers", env_default_is_callers},
        {"children_belong_to_launcher", children_belong_to_launcher},
        {"exit_codes", exit_codes},
        {"signals", signals},
        {"nothing_leaks", nothing_leaks},
        {"progname_and_cmdline", progname_and_cmdline},
        {"glibc_tid_fixed", glibc_tid_fixed},
        {"pspawn_n_200", pspawn_n_200},
        {"concurrent_threads", concurrent_threads},
        {"core_pinning", core_pinning},
        {"bad_arguments", bad_arguments},
        {"argv_too_large", argv_too_large},
        {"soak_1000_no_leaks", soak_1000_no_leaks},
        {"destroy_reaps_proxy", destroy_reaps_proxy},
        {"abandon_spares_taken_descriptors", abandon_spares_taken_descriptors},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
