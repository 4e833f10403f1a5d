/* The kernel backend in the guest (tests/kernel/guest.d/kernel_backend.sh runs one case
 * per process: kernel_guest CASE; exit status 0 = pass). Needs the patched kernel: on
 * any other it fails at once. Every instance's argv, env, affinity and parent through
 * pspawn_vector and pspawn_vector_async with the kernel backend (REQUIRE, and AUTO on an
 * exec-semantics context), the mode that served, per-instance errors that fail only their instance, options the
 * calls cannot express, waiting through the API, and nothing left over. */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define N 6

static int ncpus(void)
{
    return (int)sysconf(_SC_NPROCESSORS_ONLN);
}

static void check_no_children(void)
{
    errno = 0;
    CHECK(waitpid(-1, NULL, WNOHANG | __WALL) == -1 && errno == ECHILD);
}

static void create_ex(pspawn_context_t *ctx, const char *target, int kernel, unsigned int flags)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.kernel = kernel;
    attr.flags = flags;
    CHECK(pspawn_context_create_ex(ctx, target, &attr) == 0);
}

static void create_with(pspawn_context_t *ctx, const char *target, int kernel)
{
    create_ex(ctx, target, kernel, 0);
}

/* Instance i of a report batch: its own argv, environment and CPU (i % ncpus). */
struct batch {
    char out[N][512], arg[N][32], env0[N][48], env1[N][48];
    char *argv[N][4], *envp[N][3];
    cpu_set_t cpus[N];
    pspawn_instance_t in[N];
};

static void batch_init(struct batch *b, const char *tag)
{
    for (int i = 0; i < N; i++) {
        snprintf(b->out[i], sizeof(b->out[i]), "--report-out=%s/%s-%d.json", temp_dir(), tag, i);
        snprintf(b->arg[i], sizeof(b->arg[i]), "inst-%d", i);
        snprintf(b->env0[i], sizeof(b->env0[i]), "PSPAWN_INSTANCE=%d", i);
        snprintf(b->env1[i], sizeof(b->env1[i]), "TAG=%s", tag);
        char *argv[] = {(char *)fixture("report"), b->arg[i], b->out[i], NULL};
        char *envp[] = {b->env0[i], b->env1[i], NULL};
        memcpy(b->argv[i], argv, sizeof(argv));
        memcpy(b->envp[i], envp, sizeof(envp));
        CPU_ZERO(&b->cpus[i]);
        CPU_SET(i % ncpus(), &b->cpus[i]);
        b->in[i] = (pspawn_instance_t){.argv = b->argv[i], .envp = b->envp[i], .cpus = &b->cpus[i],
                                       .cpusetsize = sizeof(cpu_set_t)};
    }
}

/* Instance i exits 0 (waited through pspawn_waitpid) and reports exactly its argv,
 * environment, CPU and us as its parent. */
static void check_instance(pspawn_context_t *ctx, struct batch *b, int i, pid_t pid)
{
    int status;
    CHECK(pspawn_waitpid(ctx, pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char *json = await_file(b->out[i] + strlen("--report-out="), 10000);
    CHECK(json != NULL);
    size_t n;
    char **argv = json_strings(json, "argv", &n);
    CHECK_EQ_INT(n, 3);
    for (size_t k = 0; k < n; k++)
        CHECK(strcmp(argv[k], b->argv[i][k]) == 0);
    free_strings(argv, n);
    char **env = json_strings(json, "env", &n);
    CHECK_EQ_INT(n, 2);
    CHECK(strcmp(env[0], b->env0[i]) == 0 && strcmp(env[1], b->env1[i]) == 0);
    free_strings(env, n);
    long long *aff = json_ints(json, "affinity", &n);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(aff[0], i % ncpus());
    free(aff);
    CHECK_EQ_INT(json_int(json, "pid"), pid);
    CHECK_EQ_INT(json_int(json, "ppid"), getpid());
    free(json);
}

/* REQUIRE: a kernel-only context; AUTO: an exec-semantics context (PSPAWN_CTX_EXEC), whose
 * expressible requests the kernel takes from the exec backend. */
static void vector_on(int kernel, bool async)
{
    pspawn_context_t ctx;
    create_ex(&ctx, fixture("report"), kernel, kernel == PSPAWN_KERNEL_AUTO ? PSPAWN_CTX_EXEC : 0);
    CHECK_EQ_INT(pspawn_request_mode(&ctx, NULL), PSPAWN_MODE_KERNEL);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), kernel == PSPAWN_KERNEL_REQUIRE ? PSPAWN_MODE_KERNEL : PSPAWN_MODE_EXEC);
    static struct batch b;
    batch_init(&b, async ? "async" : "sync");
    pid_t pids[N];
    int errors[N];
    if (async) {
        pspawn_session_t *s;
        CHECK(pspawn_vector_async(&s, &ctx, b.in, N, NULL) == 0);
        CHECK_EQ_INT(pspawn_session_mode(s), PSPAWN_MODE_KERNEL);
        CHECK(pspawn_session_wait(s, 60000) == 0);
        CHECK_EQ_INT(pspawn_session_results(s, pids, errors), N);
        pspawn_session_free(s);
    } else {
        CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, b.in, N, NULL), N);
    }
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(errors[i], 0);
        check_instance(&ctx, &b, i, pids[i]);
    }
    pspawn_context_destroy(&ctx);
    check_no_children();
}

static void detected(void)
{
    CHECK_EQ_INT(pspawn_kernel_available(), 1);
    pspawn_context_t ctx;
    create_with(&ctx, fixture("noop"), PSPAWN_KERNEL_REQUIRE);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_KERNEL);
    CHECK_EQ_INT(pspawn_context_proxy_count(&ctx), 0);
    CHECK_EQ_INT(pspawn_context_proxy_pid(&ctx), -1);
    pspawn_context_destroy(&ctx);
    create_with(&ctx, fixture("noop"), PSPAWN_KERNEL_FORBID);
    CHECK_EQ_INT(pspawn_request_mode(&ctx, NULL), PSPAWN_MODE_ZYGOTE);
    pspawn_context_destroy(&ctx);
    /* AUTO keeps a zygote context on its proxies (faster than any exec); the exec and
     * fallback modes go to the kernel. */
    create_with(&ctx, fixture("noop"), PSPAWN_KERNEL_AUTO);
    CHECK_EQ_INT(pspawn_request_mode(&ctx, NULL), PSPAWN_MODE_ZYGOTE);
    pspawn_context_destroy(&ctx);
    create_ex(&ctx, fixture("noop_static"), PSPAWN_KERNEL_AUTO, PSPAWN_CTX_FALLBACK);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_FALLBACK);
    CHECK_EQ_INT(pspawn_request_mode(&ctx, NULL), PSPAWN_MODE_KERNEL);
    pspawn_context_destroy(&ctx);
    create_ex(&ctx, fixture("noop"), PSPAWN_KERNEL_FORBID, PSPAWN_CTX_EXEC);
    CHECK_EQ_INT(pspawn_request_mode(&ctx, NULL), PSPAWN_MODE_EXEC);
    pspawn_context_destroy(&ctx);
    check_no_children();
}

static void vector_require_sync(void) { vector_on(PSPAWN_KERNEL_REQUIRE, false); }
static void vector_require_async(void) { vector_on(PSPAWN_KERNEL_REQUIRE, true); }
static void vector_auto_sync(void) { vector_on(PSPAWN_KERNEL_AUTO, false); }
static void vector_auto_async(void) { vector_on(PSPAWN_KERNEL_AUTO, true); }

/* pspawn_n of 200 through the kernel: all start, exit 0, and are the caller's. */
static void pspawn_n_200(void)
{
    pspawn_context_t ctx;
    create_with(&ctx, fixture("noop"), PSPAWN_KERNEL_REQUIRE);
    char *argv[] = {(char *)"noop", NULL};
    static pid_t pids[200];
    CHECK_EQ_INT(pspawn_n(pids, &ctx, 200, argv), 200);
    for (int i = 0; i < 200; i++) {
        int status;
        CHECK(waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    pspawn_context_destroy(&ctx);
    check_no_children();
}

/* A caller that handles SIGCHLD: an earlier instance's SIGCHLD is pending while the
 * kernel launches the next ones, which it refuses (-ERESTARTNOINTR); the backend
 * relaunches exactly those, so every instance starts, synchronously and in a session. */
static volatile sig_atomic_t sigchld_seen;

static void on_sigchld(int sig)
{
    (void)sig;
    sigchld_seen = 1;
}

static void sigchld_handled_one(bool async)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART; /* the test's own waitpid calls are not the point */
    CHECK(sigaction(SIGCHLD, &sa, NULL) == 0);
    pspawn_context_t ctx;
    create_with(&ctx, fixture("noop"), PSPAWN_KERNEL_REQUIRE);
    enum { M = 200 };
    static char *argv[] = {(char *)"noop", NULL};
    static pspawn_instance_t in[M];
    static pid_t pids[M];
    static int errors[M];
    for (int i = 0; i < M; i++)
        in[i] = (pspawn_instance_t){.argv = argv};
    int started;
    if (async) {
        pspawn_session_t *session = NULL;
        CHECK(pspawn_vector_async(&session, &ctx, in, M, NULL) == 0);
        CHECK(pspawn_session_wait(session, -1) == 0);
        started = pspawn_session_results(session, pids, errors);
        pspawn_session_free(session);
    } else {
        started = pspawn_vector(pids, errors, &ctx, in, M, NULL);
    }
    for (int i = 0; i < M; i++)
        if (errors[i] != 0)
            fprintf(stderr, "instance %d: errno %d\n", i, errors[i]);
    CHECK_EQ_INT(started, M);
    for (int i = 0; i < M; i++) {
        int status;
        CHECK(waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CHECK(sigchld_seen);
    pspawn_context_destroy(&ctx);
    check_no_children();
}

static void sigchld_handled_sync(void) { sigchld_handled_one(false); }
static void sigchld_handled_async(void) { sigchld_handled_one(true); }

/* Per-instance failures fail their instance alone: E2BIG (a string longer than
 * MAX_ARG_STRLEN), a CPU that is offline; started instances are reported. */
static void errors_one(bool async)
{
    const char *online = "/sys/devices/system/cpu/cpu1/online";
    int fd = open(online, O_WRONLY);
    CHECK(fd >= 0 && write(fd, "0", 1) == 1 && close(fd) == 0);
    pspawn_context_t ctx;
    create_with(&ctx, fixture("noop"), PSPAWN_KERNEL_REQUIRE);
    size_t big_len = 131072 + 1;
    char *big = malloc(big_len + 1);
    CHECK(big != NULL);
    memset(big, 'x', big_len);
    big[big_len] = '\0';
    char *ok_argv[] = {(char *)"noop", NULL}, *big_argv[] = {(char *)"noop", big, NULL};
    cpu_set_t cpu1;
    CPU_ZERO(&cpu1);
    CPU_SET(1, &cpu1);
    pspawn_instance_t in[4] = {
        {.argv = ok_argv},
        {.argv = big_argv},
        {.argv = ok_argv, .cpus = &cpu1, .cpusetsize = sizeof(cpu1)},
        {.argv = ok_argv},
    };
    pid_t pids[4];
    int errors[4], started;
    if (async) {
        pspawn_session_t *s;
        CHECK(pspawn_vector_async(&s, &ctx, in, 4, NULL) == 0);
        CHECK(pspawn_session_wait(s, 60000) == 0);
        started = pspawn_session_results(s, pids, errors);
        pspawn_session_free(s);
    } else {
        started = pspawn_vector(pids, errors, &ctx, in, 4, NULL);
    }
    fd = open(online, O_WRONLY);
    CHECK(fd >= 0 && write(fd, "1", 1) == 1 && close(fd) == 0);
    CHECK_EQ_INT(started, 2);
    CHECK_EQ_INT(errors[1], E2BIG);
    CHECK_EQ_INT(pids[1], -1);
    CHECK_EQ_INT(errors[2], EINVAL);
    CHECK_EQ_INT(pids[2], -1);
    for (int i = 0; i < 4; i += 3) {
        int status;
        CHECK_EQ_INT(errors[i], 0);
        CHECK(waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    free(big);
    pspawn_context_destroy(&ctx);
    check_no_children();
}

static void errors_sync(void) { errors_one(false); }
static void errors_async(void) { errors_one(true); }

/* The executable made non-executable, then removed, after create: every instance
 * fails with EACCES, then ENOENT, as its own error (the call itself succeeds). */
static void file_errors(void)
{
    const char *copy = copy_fixture("noop_static", "target", 0755);
    pspawn_context_t ctx;
    create_with(&ctx, copy, PSPAWN_KERNEL_REQUIRE);
    pid_t pids[3];
    int errors[3];
    pspawn_instance_t in[3] = {{0}, {0}, {0}};
    CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, in, 3, NULL), 3);
    for (int i = 0; i < 3; i++)
        CHECK(waitpid(pids[i], NULL, 0) == pids[i]);
    CHECK(chmod(copy, 0644) == 0);
    CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, in, 3, NULL), 0);
    for (int i = 0; i < 3; i++)
        CHECK(errors[i] == EACCES && pids[i] == -1);
    CHECK(unlink(copy) == 0);
    errno = 0;
    CHECK_EQ_INT(pspawn_n(pids, &ctx, 2, (char *[]){(char *)"t", NULL}), -1);
    CHECK_EQ_INT(errno, ENOENT);
    pspawn_context_destroy(&ctx);
    check_no_children();
}

/* Options the calls cannot express: ENOTSUP per instance under REQUIRE (nothing
 * started, no downgrade), the exec backend under AUTO. */
static void unexpressible_options(void)
{
    pspawn_attr_t *attr;
    CHECK(pspawn_attr_create(&attr) == 0);
    CHECK(pspawn_attr_set_cwd(attr, "/tmp") == 0);
    char *argv[] = {(char *)"noop", NULL};
    pid_t pids[2];
    int errors[2];
    pspawn_context_t ctx;
    create_with(&ctx, fixture("noop"), PSPAWN_KERNEL_REQUIRE);
    errno = 0;
    CHECK_EQ_INT(pspawn_request_mode(&ctx, attr), -1);
    CHECK_EQ_INT(errno, ENOTSUP);
    errno = 0;
    CHECK_EQ_INT(pspawn_nx(pids, errors, NULL, &ctx, 2, argv, NULL, attr), -1);
    CHECK_EQ_INT(errno, ENOTSUP);
    CHECK(errors[0] == ENOTSUP && errors[1] == ENOTSUP && pids[0] == -1 && pids[1] == -1);
    pspawn_context_destroy(&ctx);
    create_ex(&ctx, fixture("noop"), PSPAWN_KERNEL_AUTO, PSPAWN_CTX_EXEC);
    CHECK_EQ_INT(pspawn_request_mode(&ctx, NULL), PSPAWN_MODE_KERNEL);
    CHECK_EQ_INT(pspawn_request_mode(&ctx, attr), PSPAWN_MODE_EXEC);
    CHECK_EQ_INT(pspawn_nx(pids, errors, NULL, &ctx, 2, argv, NULL, attr), 2);
    for (int i = 0; i < 2; i++)
        CHECK(waitpid(pids[i], NULL, 0) == pids[i]);
    pspawn_context_destroy(&ctx);
    pspawn_attr_destroy(attr);
    check_no_children();
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"detected", detected},
        {"vector_require_sync", vector_require_sync},
        {"vector_require_async", vector_require_async},
        {"vector_auto_sync", vector_auto_sync},
        {"vector_auto_async", vector_auto_async},
        {"pspawn_n_200", pspawn_n_200},
        {"sigchld_handled_sync", sigchld_handled_sync},
        {"sigchld_handled_async", sigchld_handled_async},
        {"errors_sync", errors_sync},
        {"errors_async", errors_async},
        {"file_errors", file_errors},
        {"unexpressible_options", unexpressible_options},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
