/* The parallel exec backend (PSPAWN_CTX_EXEC, and fallback mode): 1,000 instances of a
 * static program with their own argv, environment and CPUs, per-instance errors
 * (exec failures, set-up failures, bad CPUs), the mode's API, many threads at once, and
 * the signal and descriptor state of a fresh exec. */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

static int allowed_cpus(int *cpus)
{
    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            cpus[n++] = c;
    return n;
}

static pspawn_context_t open_exec(const char *path, unsigned flags)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = flags;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, path, &attr) == 0);
    return ctx;
}

/* 1,000 instances of report_static: rank=i, RANK=i, CPU i % ncpu, each checked. */
static void thousand_static(void)
{
    enum { N = 1000 };
    int cpus[CPU_SETSIZE];
    int ncpu = allowed_cpus(cpus);
    pspawn_context_t ctx = open_exec(fixture("report_static"), PSPAWN_CTX_EXEC);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_EXEC);
    static char argbuf[N][4200], rank[N][32], env[N][32];
    static char *argv[N][4], *envp[N][2];
    static cpu_set_t sets[N];
    static pspawn_instance_t in[N];
    for (int i = 0; i < N; i++) {
        snprintf(rank[i], sizeof(rank[i]), "rank=%d", i);
        snprintf(env[i], sizeof(env[i]), "RANK=%d", i);
        snprintf(argbuf[i], sizeof(argbuf[i]), "--report-out=%s/static.%d.json", temp_dir(), i);
        argv[i][0] = "report";
        argv[i][1] = rank[i];
        argv[i][2] = argbuf[i];
        argv[i][3] = NULL;
        envp[i][0] = env[i];
        envp[i][1] = NULL;
        CPU_ZERO(&sets[i]);
        CPU_SET(cpus[i % ncpu], &sets[i]);
        in[i] = (pspawn_instance_t){.argv = argv[i], .envp = envp[i], .cpus = &sets[i], .cpusetsize = sizeof(cpu_set_t)};
    }
    static pid_t pids[N];
    static int errors[N];
    CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, in, N, NULL), N);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(errors[i], 0);
        int st = wait_child(pids[i], 20000);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        char path[4300];
        snprintf(path, sizeof(path), "%s/static.%d.json", temp_dir(), i);
        char *json = await_file(path, 20000);
        CHECK(json != NULL);
        size_t n;
        char **got = json_strings(json, "argv", &n);
        CHECK(n == 3 && strcmp(got[1], rank[i]) == 0 && strcmp(got[2], argbuf[i]) == 0);
        free_strings(got, n);
        char **e = json_strings(json, "env", &n);
        CHECK(n == 1 && strcmp(e[0], env[i]) == 0);
        free_strings(e, n);
        long long *aff = json_ints(json, "affinity", &n);
        CHECK(n == 1 && aff[0] == cpus[i % ncpu]);
        free(aff);
        CHECK_EQ_INT(json_int(json, "ppid"), getpid());
        CHECK_EQ_INT(json_int(json, "pid"), pids[i]);
        free(json);
    }
    CHECK_EQ_INT(count_zombie_children(), 0);
    pspawn_context_destroy(&ctx);
}

/* A static target with PSPAWN_CTX_FALLBACK: fallback mode over the same backend;
 * children without a CPU set get the caller's whole mask (not a worker's CPU). */
static void fallback_is_the_exec_backend(void)
{
    enum { N = 40 };
    pspawn_context_t ctx = open_exec(fixture("report_static"), PSPAWN_CTX_FALLBACK);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_FALLBACK);
    CHECK_EQ_INT(pspawn_context_fallback_reason(&ctx), ENOTSUP);
    CHECK_EQ_INT(pspawn_context_proxy_count(&ctx), 0);
    cpu_set_t mine;
    CHECK(sched_getaffinity(0, sizeof(mine), &mine) == 0);
    static char argbuf[N][4200];
    static char *argv[N][3];
    pspawn_instance_t in[N];
    for (int i = 0; i < N; i++) {
        snprintf(argbuf[i], sizeof(argbuf[i]), "--report-out=%s/fallback.%d.json", temp_dir(), i);
        argv[i][0] = "report";
        argv[i][1] = argbuf[i];
        argv[i][2] = NULL;
        in[i] = (pspawn_instance_t){.argv = argv[i]};
    }
    pid_t pids[N];
    int errors[N];
    CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, in, N, NULL), N);
    for (int i = 0; i < N; i++) {
        CHECK(WIFEXITED(wait_child(pids[i], 20000)));
        char path[4300];
        snprintf(path, sizeof(path), "%s/fallback.%d.json", temp_dir(), i);
        char *json = await_file(path, 20000);
        CHECK(json != NULL);
        size_t n;
        long long *aff = json_ints(json, "affinity", &n);
        CHECK_EQ_INT(n, CPU_COUNT(&mine));
        free(aff);
        free(json);
    }
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* What execve or the set-up refuses is each instance's errno; the children that failed
 * are reaped; nothing else fails. */
static void errors_per_instance(void)
{
    char *copy = strdup(make_file("noop_copy", "", 0755));
    char *image = read_file(fixture("noop_static"));
    CHECK(image != NULL);
    free(image);
    /* A byte-exact copy of noop_static. */
    int in_fd = open(fixture("noop_static"), O_RDONLY), out_fd = open(copy, O_WRONLY | O_TRUNC);
    CHECK(in_fd >= 0 && out_fd >= 0);
    char buf[65536];
    ssize_t r;
    while ((r = read(in_fd, buf, sizeof(buf))) > 0)
        CHECK(write(out_fd, buf, (size_t)r) == r);
    close(in_fd);
    close(out_fd);
    pspawn_context_t ctx = open_exec(copy, PSPAWN_CTX_EXEC);
    char *argv[] = {"noop", NULL};
    enum { N = 10 };
    pid_t pids[N];
    int errors[N];
    CHECK(chmod(copy, 0644) == 0); /* execve: EACCES, for every instance */
    errno = 0;
    CHECK(pspawn_ne(pids, errors, &ctx, N, argv, NULL) == -1 && errno == EACCES);
    for (int i = 0; i < N; i++)
        CHECK(pids[i] == -1 && errors[i] == EACCES);
    CHECK_EQ_INT(count_zombie_children(), 0);
    CHECK(chmod(copy, 0755) == 0);
    /* A missing working directory: chdir's ENOENT. */
    pspawn_attr_t *attr;
    CHECK(pspawn_attr_create(&attr) == 0);
    CHECK(pspawn_attr_set_cwd(attr, "/nonexistent/dir") == 0);
    CHECK(pspawn_nx(pids, errors, NULL, &ctx, N, argv, NULL, attr) == -1 && errno == ENOENT);
    pspawn_attr_destroy(attr);
    /* What the exec backend cannot give, as in fallback mode: ENOTSUP. */
    CHECK(pspawn_attr_create(&attr) == 0);
    CHECK(pspawn_attr_set_umask(attr, 077) == 0);
    CHECK(pspawn_nx(pids, errors, NULL, &ctx, 2, argv, NULL, attr) == -1 && errno == ENOTSUP);
    pspawn_attr_destroy(attr);
    /* A CPU that is not there: that instance alone. */
    cpu_set_t sets[N];
    pspawn_instance_t in[N];
    int cpus[CPU_SETSIZE];
    allowed_cpus(cpus);
    for (int i = 0; i < N; i++) {
        CPU_ZERO(&sets[i]);
        CPU_SET(i == 4 ? CPU_SETSIZE - 1 : cpus[0], &sets[i]);
        in[i] = (pspawn_instance_t){.argv = argv, .cpus = &sets[i], .cpusetsize = sizeof(cpu_set_t)};
    }
    CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, in, N, NULL), N - 1);
    for (int i = 0; i < N; i++) {
        if (i == 4) {
            CHECK(pids[i] == -1 && errors[i] == EINVAL);
            continue;
        }
        CHECK_EQ_INT(errors[i], 0);
        int st = wait_child(pids[i], 10000);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_EQ_INT(count_zombie_children(), 0);
    pspawn_context_destroy(&ctx);
    free(copy);
}

static void exec_mode_basics(void)
{
    pspawn_context_t ctx = open_exec(fixture("noop"), PSPAWN_CTX_EXEC); /* dynamic works too */
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_EXEC);
    CHECK_EQ_INT(pspawn_context_fallback_reason(&ctx), 0);
    CHECK_EQ_INT(pspawn_context_proxy_count(&ctx), 0);
    CHECK_EQ_INT(pspawn_context_proxy_pid(&ctx), -1);
    CHECK_EQ_INT(pspawn_context_restarts(&ctx), 0);
    CHECK_EQ_INT(pspawn_context_ping(&ctx), 0);
    char *argv[] = {"noop", NULL};
    pid_t pid = pspawn(&ctx, argv);
    CHECK(pid > 0);
    int st;
    CHECK(pspawn_waitpid(&ctx, pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    pspawn_context_destroy(&ctx);
    /* set-uid and scripts: exec semantics serve them. */
    ctx = open_exec(fixture("setuid_noop"), PSPAWN_CTX_EXEC);
    CHECK((pid = pspawn(&ctx, argv)) > 0);
    CHECK(WIFEXITED(wait_child(pid, 10000)));
    pspawn_context_destroy(&ctx);
    const char *script = make_file("script.sh", "#!/bin/sh\nexit 7\n", 0755);
    ctx = open_exec(script, PSPAWN_CTX_EXEC);
    CHECK((pid = pspawn(&ctx, argv)) > 0);
    st = wait_child(pid, 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7);
    pspawn_context_destroy(&ctx);
    /* Not with relay mode; a missing file is still ENOENT at create. */
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = PSPAWN_CTX_EXEC | PSPAWN_CTX_RELAY;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == -1 && errno == EINVAL);
    attr.flags = PSPAWN_CTX_EXEC;
    CHECK(pspawn_context_create_ex(&ctx, "/nonexistent", &attr) == -1 && errno == ENOENT);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

static pspawn_context_t shared_ctx;

static void *submit(void *arg)
{
    (void)arg;
    char *argv[] = {"noop", NULL};
    pid_t pids[150];
    for (int round = 0; round < 4; round++) {
        if (pspawn_n(pids, &shared_ctx, 150, argv) != 150)
            return (void *)1;
        for (int i = 0; i < 150; i++) {
            int st;
            if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                return (void *)2;
        }
    }
    return NULL;
}

static void threads_at_once(void)
{
    shared_ctx = open_exec(fixture("noop_static"), PSPAWN_CTX_EXEC);
    pthread_t threads[4];
    for (long t = 0; t < 4; t++)
        CHECK(pthread_create(&threads[t], NULL, submit, (void *)t) == 0);
    for (int t = 0; t < 4; t++) {
        void *r;
        CHECK(pthread_join(threads[t], &r) == 0);
        CHECK(r == NULL);
    }
    pspawn_context_destroy(&shared_ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

static void on_usr1(int sig)
{
    (void)sig;
}

/* The caller's handlers, ignored signals, blocked signals and descriptors above 2 do
 * not reach the child: a fresh exec's state. */
static void signals_and_fds_like_exec(void)
{
    struct sigaction sa = {.sa_handler = on_usr1}, old_usr1, old_usr2;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, &old_usr1) == 0);
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigemptyset(&ign.sa_mask);
    CHECK(sigaction(SIGUSR2, &ign, &old_usr2) == 0);
    sigset_t block, saved;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    CHECK(pthread_sigmask(SIG_BLOCK, &block, &saved) == 0);
    int extra = open("/dev/null", O_RDONLY); /* not CLOEXEC: still not inherited */
    CHECK(extra > 2);
    pspawn_context_t ctx = open_exec(fixture("report_static"), PSPAWN_CTX_EXEC);
    char out[4200];
    snprintf(out, sizeof(out), "--report-out=%s/sig.json", temp_dir());
    char *argv[] = {"report", out, NULL};
    pid_t pid = pspawn(&ctx, argv);
    CHECK(pid > 0);
    CHECK(WIFEXITED(wait_child(pid, 10000)));
    char path[4300];
    snprintf(path, sizeof(path), "%s/sig.json", temp_dir());
    char *json = await_file(path, 10000);
    CHECK(json != NULL);
    size_t n;
    long long *v = json_ints(json, "sigmask", &n);
    CHECK_EQ_INT(n, 0);
    free(v);
    v = json_ints(json, "sigignored", &n);
    CHECK_EQ_INT(n, 0);
    free(v);
    v = json_ints(json, "sighandled", &n);
    CHECK_EQ_INT(n, 0);
    free(v);
    v = json_ints(json, "fds", &n);
    for (size_t k = 0; k < n; k++)
        CHECK(v[k] <= 2);
    free(v);
    free(json);
    pspawn_context_destroy(&ctx);
    close(extra);
    CHECK(pthread_sigmask(SIG_SETMASK, &saved, NULL) == 0);
    sigaction(SIGUSR1, &old_usr1, NULL);
    sigaction(SIGUSR2, &old_usr2, NULL);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"thousand_static", thousand_static},
        {"fallback_is_the_exec_backend", fallback_is_the_exec_backend},
        {"errors_per_instance", errors_per_instance},
        {"exec_mode_basics", exec_mode_basics},
        {"threads_at_once", threads_at_once},
        {"signals_and_fds_like_exec", signals_and_fds_like_exec},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
