/* The vector API against real processes: per-instance argv, environment and CPUs, the
 * async session, batch splitting, concurrency, a proxy killed mid-batch, early free,
 * and flat descriptor and zombie counts. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

static int allowed_cpus(int *cpus, int max)
{
    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, &set))
            cpus[n++] = c;
    return n;
}

static pspawn_context_t open_context(const char *name, size_t buffer_size)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    if (buffer_size != 0)
        attr.buffer_size = buffer_size;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture(name), &attr) == 0);
    return ctx;
}

/* n report instances: argv {report, rank=i, --report-out=DIR/<tag>.i.json},
 * env {RANK=i}, CPU i % ncpu. */
struct ranks {
    int n;
    pspawn_instance_t *instances;
    char ***argv;
    char ***envp;
    cpu_set_t *cpus;
    int ncpu;
    int cpu_list[CPU_SETSIZE];
    const char *tag;
};

static void ranks_make(struct ranks *r, int n, const char *tag)
{
    r->n = n;
    r->tag = tag;
    r->ncpu = allowed_cpus(r->cpu_list, CPU_SETSIZE);
    r->instances = calloc((size_t)n, sizeof(*r->instances));
    r->argv = calloc((size_t)n, sizeof(char **));
    r->envp = calloc((size_t)n, sizeof(char **));
    r->cpus = calloc((size_t)n, sizeof(cpu_set_t));
    CHECK(r->instances && r->argv && r->envp && r->cpus);
    for (int i = 0; i < n; i++) {
        char buf[4200];
        r->argv[i] = calloc(4, sizeof(char *));
        r->envp[i] = calloc(2, sizeof(char *));
        r->argv[i][0] = strdup("report");
        snprintf(buf, sizeof(buf), "rank=%d", i);
        r->argv[i][1] = strdup(buf);
        snprintf(buf, sizeof(buf), "--report-out=%s/%s.%d.json", temp_dir(), tag, i);
        r->argv[i][2] = strdup(buf);
        snprintf(buf, sizeof(buf), "RANK=%d", i);
        r->envp[i][0] = strdup(buf);
        CPU_ZERO(&r->cpus[i]);
        CPU_SET(r->cpu_list[i % r->ncpu], &r->cpus[i]);
        r->instances[i] = (pspawn_instance_t){.argv = r->argv[i], .envp = r->envp[i], .cpus = &r->cpus[i],
                                              .cpusetsize = sizeof(cpu_set_t)};
    }
}

static void ranks_free(struct ranks *r)
{
    for (int i = 0; i < r->n; i++) {
        for (int k = 0; r->argv[i][k] != NULL; k++)
            free(r->argv[i][k]);
        free(r->envp[i][0]);
        free(r->argv[i]);
        free(r->envp[i]);
    }
    free(r->instances), free(r->argv), free(r->envp), free(r->cpus);
}

/* Instance i's report says exactly what it was asked for, and its parent is us. */
static void check_rank(const struct ranks *r, int i, pid_t pid)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s.%d.json", temp_dir(), r->tag, i);
    char *json = await_file(path, 20000);
    CHECK(json != NULL);
    size_t n;
    char **argv = json_strings(json, "argv", &n);
    CHECK_EQ_INT(n, 3);
    for (size_t k = 0; k < 3; k++)
        CHECK(strcmp(argv[k], r->argv[i][k]) == 0);
    free_strings(argv, n);
    char **env = json_strings(json, "env", &n);
    CHECK_EQ_INT(n, 1);
    CHECK(strcmp(env[0], r->envp[i][0]) == 0);
    free_strings(env, n);
    long long *affinity = json_ints(json, "affinity", &n);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(affinity[0], r->cpu_list[i % r->ncpu]);
    free(affinity);
    CHECK_EQ_INT(json_int(json, "ppid"), getpid());
    CHECK_EQ_INT(json_int(json, "pid"), pid);
    free(json);
}

static void check_all_ranks(const struct ranks *r, const pid_t *pids, const int *errors)
{
    for (int i = 0; i < r->n; i++) {
        CHECK_EQ_INT(errors[i], 0);
        CHECK(pids[i] > 0);
        int st = wait_child(pids[i], 20000);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        check_rank(r, i, pids[i]);
    }
}

/* Without the vector API every instance would get one argv/env/CPU set. */
static void thousand_distinct(void)
{
    enum { N = 1000 };
    pspawn_context_t ctx = open_context("report", 0);
    struct ranks r;
    ranks_make(&r, N, "sync");
    pid_t *pids = malloc(N * sizeof(pid_t));
    int *errors = malloc(N * sizeof(int));
    CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, r.instances, N, NULL), N);
    check_all_ranks(&r, pids, errors);
    CHECK_EQ_INT(count_zombie_children(), 0);
    free(pids), free(errors);
    ranks_free(&r);
    pspawn_context_destroy(&ctx);
}

static void async_thousand(void)
{
    enum { N = 1000 };
    pspawn_context_t ctx = open_context("report", 0);
    struct ranks r;
    ranks_make(&r, N, "async");
    pspawn_session_t *s;
    CHECK(pspawn_vector_async(&s, &ctx, r.instances, N, NULL) == 0);
    /* The session owns copies: the caller's arrays may change at once. */
    char *saved = r.argv[0][1];
    r.argv[0][1] = "clobbered";
    struct pollfd p = {.fd = pspawn_session_fd(s), .events = POLLIN};
    CHECK(poll(&p, 1, 60000) == 1 && (p.revents & POLLIN));
    r.argv[0][1] = saved;
    CHECK_EQ_INT(pspawn_session_wait(s, 0), 0);
    pid_t *pids = malloc(N * sizeof(pid_t));
    int *errors = malloc(N * sizeof(int));
    CHECK_EQ_INT(pspawn_session_results(s, pids, errors), N);
    pspawn_session_free(s);
    check_all_ranks(&r, pids, errors);
    free(pids), free(errors);
    ranks_free(&r);
    pspawn_context_destroy(&ctx);
}

/* One instance with a CPU that is not online fails alone, with EINVAL. */
static void bad_cpu_fails_alone(void)
{
    enum { N = 8 };
    pspawn_context_t ctx = open_context("report", 0);
    struct ranks r;
    ranks_make(&r, N, "badcpu");
    CPU_ZERO(&r.cpus[3]);
    CPU_SET(CPU_SETSIZE - 1, &r.cpus[3]); /* CPU 1023: not on this machine */
    pid_t pids[N];
    int errors[N];
    CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, r.instances, N, NULL), N - 1);
    CHECK_EQ_INT(errno, EINVAL);
    CHECK(pids[3] == -1 && errors[3] == EINVAL);
    for (int i = 0; i < N; i++) {
        if (i == 3)
            continue;
        CHECK_EQ_INT(errors[i], 0);
        CHECK(WIFEXITED(wait_child(pids[i], 20000)));
        check_rank(&r, i, pids[i]);
    }
    /* An empty set is refused before anything is sent. */
    CPU_ZERO(&r.cpus[3]);
    CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, r.instances + 3, 1, NULL), 0);
    CHECK(errors[0] == EINVAL && pids[0] == -1);
    CHECK_EQ_INT(count_zombie_children(), 0);
    ranks_free(&r);
    pspawn_context_destroy(&ctx);
}

/* NULL argv: the context path alone; NULL envp: our environ now. Bad arguments. */
static void defaults_and_bad_arguments(void)
{
    pspawn_context_t ctx = open_context("report", 0);
    pspawn_attr_t *attr;
    CHECK(pspawn_attr_create(&attr) == 0);
    char out[4200];
    snprintf(out, sizeof(out), "%s/default.json", temp_dir());
    CHECK(pspawn_attr_stdio_file(attr, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600) == 0);
    CHECK(setenv("PSPAWN_VECTOR_PROBE", "now", 1) == 0);
    pspawn_instance_t one = {0};
    pid_t pid;
    int error;
    CHECK_EQ_INT(pspawn_vector(&pid, &error, &ctx, &one, 1, attr), 1);
    CHECK(WIFEXITED(wait_child(pid, 20000)));
    char *json = read_file(out);
    CHECK(json != NULL);
    size_t n;
    char **argv = json_strings(json, "argv", &n);
    CHECK_EQ_INT(n, 1);
    CHECK(strcmp(argv[0], fixture("report")) == 0);
    free_strings(argv, n);
    CHECK(strstr(json, "PSPAWN_VECTOR_PROBE=now") != NULL);
    free(json);
    unsetenv("PSPAWN_VECTOR_PROBE");

    errno = 0;
    CHECK(pspawn_vector(NULL, &error, &ctx, &one, 1, NULL) == -1 && errno == EINVAL);
    CHECK(pspawn_vector(&pid, &error, NULL, &one, 1, NULL) == -1 && errno == EINVAL);
    CHECK(pspawn_vector(&pid, &error, &ctx, NULL, 1, NULL) == -1 && errno == EINVAL);
    CHECK(pspawn_vector(&pid, &error, &ctx, &one, -1, NULL) == -1 && errno == EINVAL);
    CHECK_EQ_INT(pspawn_vector(&pid, &error, &ctx, &one, 0, NULL), 0);
    pspawn_session_t *s;
    CHECK(pspawn_vector_async(NULL, &ctx, &one, 1, NULL) == -1 && errno == EINVAL);
    CHECK(pspawn_vector_async(&s, &ctx, NULL, 1, NULL) == -1 && errno == EINVAL);
    pspawn_attr_t *piped;
    CHECK(pspawn_attr_create(&piped) == 0 && pspawn_attr_stdio_pipe(piped, 1) == 0);
    CHECK(pspawn_vector(&pid, &error, &ctx, &one, 1, piped) == -1 && errno == EINVAL);
    pspawn_attr_destroy(piped);
    pspawn_attr_destroy(attr);
    CHECK(pspawn_session_results(NULL, NULL, NULL) == -1 && errno == EINVAL);
    pspawn_session_free(NULL);
    pspawn_context_destroy(&ctx);
}

/* 10 times the shared buffer in one call: split, never E2BIG. */
static void batch_split_10x(void)
{
    enum { N = 1000, PAD = 600 };
    const size_t buffer = 64 << 10;
    pspawn_context_t ctx = open_context("noop", buffer);
    pspawn_instance_t *in = calloc(N, sizeof(*in));
    char **args = calloc(N * 3, sizeof(char *));
    char *env[] = {"A=1", NULL};
    for (int i = 0; i < N; i++) {
        args[3 * i] = "noop";
        args[3 * i + 1] = malloc(PAD + 16);
        memset(args[3 * i + 1], 'a' + i % 26, PAD);
        snprintf(args[3 * i + 1] + PAD, 16, "%d", i);
        in[i] = (pspawn_instance_t){.argv = &args[3 * i], .envp = env};
    }
    CHECK((size_t)N * PAD >= 9 * buffer);
    pid_t *pids = malloc(N * sizeof(pid_t));
    int *errors = malloc(N * sizeof(int));
    CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, in, N, NULL), N);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(errors[i], 0);
        int st = wait_child(pids[i], 20000);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        free(args[3 * i + 1]);
    }
    /* One instance larger than the whole buffer: E2BIG for it alone. */
    char *huge = malloc(buffer + 1);
    memset(huge, 'h', buffer);
    huge[buffer] = '\0';
    char *big_argv[] = {"noop", huge, NULL};
    char *small_argv[] = {"noop", NULL};
    pspawn_instance_t two[2] = {{.argv = big_argv, .envp = env}, {.argv = small_argv, .envp = env}};
    CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, two, 2, NULL), 1);
    CHECK(errors[0] == E2BIG && pids[0] == -1 && errors[1] == 0);
    CHECK(WIFEXITED(wait_child(pids[1], 20000)));
    free(huge);
    free(pids), free(errors), free(in), free(args);
    CHECK_EQ_INT(count_zombie_children(), 0);
    pspawn_context_destroy(&ctx);
}

/* Several threads submit vectors at once to one context: the ring keeps several
 * requests in flight, nobody holds the lock while a proxy forks. */
static pspawn_context_t shared_ctx;
enum { THREADS = 6, PER_THREAD = 150 };

static void *submit_vector(void *arg)
{
    long t = (long)arg;
    pspawn_instance_t in[PER_THREAD];
    char *argv[PER_THREAD][3];
    char env_buf[PER_THREAD][32];
    char *envp[PER_THREAD][2];
    char arg_buf[PER_THREAD][32];
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(arg_buf[i], sizeof(arg_buf[i]), "t%ld.%d", t, i);
        snprintf(env_buf[i], sizeof(env_buf[i]), "RANK=%d", i);
        argv[i][0] = "noop";
        argv[i][1] = arg_buf[i];
        argv[i][2] = NULL;
        envp[i][0] = env_buf[i];
        envp[i][1] = NULL;
        in[i] = (pspawn_instance_t){.argv = argv[i], .envp = envp[i]};
    }
    pid_t pids[PER_THREAD];
    int errors[PER_THREAD];
    if (pspawn_vector(pids, errors, &shared_ctx, in, PER_THREAD, NULL) != PER_THREAD)
        return (void *)1;
    for (int i = 0; i < PER_THREAD; i++) {
        int st;
        if (errors[i] != 0 || waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return (void *)2;
    }
    return NULL;
}

static void threads_submit_at_once(void)
{
    shared_ctx = open_context("noop", 256 << 10);
    pthread_t threads[THREADS];
    for (long t = 0; t < THREADS; t++)
        CHECK(pthread_create(&threads[t], NULL, submit_vector, (void *)t) == 0);
    for (int t = 0; t < THREADS; t++) {
        void *r;
        CHECK(pthread_join(threads[t], &r) == 0);
        CHECK(r == NULL);
    }
    CHECK_EQ_INT(count_zombie_children(), 0);
    pspawn_context_destroy(&shared_ctx);
}

/* A proxy killed in mid-batch: every instance is started-and-waitable or has an errno. */
static pspawn_context_t killed_ctx;
static pid_t killed_pids[400];
static int killed_errors[400];
static int killed_started;

static void *run_killed(void *arg)
{
    pspawn_instance_t *in = arg;
    killed_started = pspawn_vector(killed_pids, killed_errors, &killed_ctx, in, 400, NULL);
    return NULL;
}

static void proxy_killed_mid_batch(void)
{
    killed_ctx = open_context("report", 0);
    static char *argv[400][5];
    static char outs[400][4200];
    static char bufs[400][32];
    static char envs[400][32];
    static char *envp[400][2];
    pspawn_instance_t in[400];
    for (int i = 0; i < 400; i++) {
        snprintf(bufs[i], sizeof(bufs[i]), "rank=%d", i);
        snprintf(envs[i], sizeof(envs[i]), "RANK=%d", i);
        argv[i][0] = "report";
        argv[i][1] = bufs[i];
        argv[i][2] = "--report-sleep-ms=100";
        snprintf(outs[i], sizeof(outs[i]), "--report-out=%s/killed.%d.json", temp_dir(), i);
        argv[i][3] = outs[i];
        argv[i][4] = NULL;
        envp[i][0] = envs[i];
        envp[i][1] = NULL;
        in[i] = (pspawn_instance_t){.argv = argv[i], .envp = envp[i]};
    }
    pid_t proxy = pspawn_context_proxy_pid(&killed_ctx);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, run_killed, in) == 0);
    usleep(40000);
    CHECK(kill(proxy, SIGKILL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    int started = 0;
    for (int i = 0; i < 400; i++) {
        if (killed_pids[i] > 0) {
            CHECK_EQ_INT(killed_errors[i], 0);
            int st = wait_child(killed_pids[i], 20000);
            CHECK(WIFEXITED(st));
            started++;
        } else {
            CHECK(killed_errors[i] != 0);
        }
    }
    CHECK_EQ_INT(started, killed_started);
    /* One proxy: the rest of its batch failed (EPIPE). Several: what the killed one had
     * not forked went to the others, so everything started. */
    if (pspawn_context_proxy_count(&killed_ctx) == 1)
        CHECK(started < 400);
    else
        CHECK_EQ_INT(started, 400);
    fprintf(stderr, "proxy killed mid-vector (%d proxies): %d started, %d failed\n",
            pspawn_context_proxy_count(&killed_ctx), started, 400 - started);
    pspawn_context_destroy(&killed_ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* Freed before completion: launching stops; children started stay ours and waitable;
 * nothing appears after free returns. Cancel + wait + results gives the pids. */
static void session_freed_early(void)
{
    enum { N = 400 };
    /* A small buffer and 2 kB of environment each: many parts, so that cancelling
     * leaves some never sent. */
    pspawn_context_t ctx = open_context("noop", 64 << 10);
    pspawn_instance_t *in = calloc(N, sizeof(*in));
    char *argv[] = {"noop", NULL};
    static char envs[N][2048];
    static char *envp[N][2];
    for (int i = 0; i < N; i++) {
        snprintf(envs[i], sizeof(envs[i]), "RANK=%d ", i);
        memset(envs[i] + strlen(envs[i]), 'e', sizeof(envs[i]) - strlen(envs[i]) - 1);
        envp[i][0] = envs[i];
        in[i] = (pspawn_instance_t){.argv = argv, .envp = envp[i]};
    }
    pspawn_session_t *s;
    CHECK(pspawn_vector_async(&s, &ctx, in, N, NULL) == 0);
    usleep(20000);
    pspawn_session_free(s);
    /* Cancel, wait, results: every instance started or ECANCELED. */
    CHECK(pspawn_vector_async(&s, &ctx, in, N, NULL) == 0);
    usleep(20000);
    pspawn_session_cancel(s);
    CHECK_EQ_INT(pspawn_session_wait(s, 60000), 0);
    pid_t *pids = malloc(N * sizeof(pid_t));
    int *errors = malloc(N * sizeof(int));
    int started = pspawn_session_results(s, pids, errors);
    CHECK(started >= 0 && started <= N);
    int counted = 0;
    for (int i = 0; i < N; i++) {
        if (pids[i] > 0) {
            CHECK(WIFEXITED(wait_child(pids[i], 20000)));
            counted++;
        } else {
            CHECK_EQ_INT(errors[i], ECANCELED);
        }
    }
    CHECK_EQ_INT(counted, started);
    pspawn_session_free(s);
    fprintf(stderr, "cancelled session: %d of %d started\n", started, N);
    /* The freed session's children: all ours; after destroy (reaps the proxy) nothing
     * but them is left to wait for, and nothing new appears. */
    pspawn_context_destroy(&ctx);
    int reaped = 0, st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, 0)) > 0) {
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        reaped++;
    }
    CHECK_EQ_INT(errno, ECHILD);
    usleep(100000);
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
    fprintf(stderr, "freed session: %d children reaped after free\n", reaped);
    free(in), free(pids), free(errors);
}

/* Descriptors and zombies flat over many vector spawns (per-instance env). The issue's
 * 100,000: PSPAWN_VECTOR_SOAK=100000 (a manual run: several minutes here). */
static void flat_over_many(void)
{
    int total = 5000;
    const char *env_count = getenv("PSPAWN_VECTOR_SOAK");
    if (env_count != NULL && atoi(env_count) > 0)
        total = atoi(env_count);
    enum { BATCH = 500 };
    pspawn_context_t ctx = open_context("noop", 0);
    static char envs[BATCH][32];
    static char *envp[BATCH][2];
    char *argv[] = {"noop", NULL};
    pspawn_instance_t in[BATCH];
    for (int i = 0; i < BATCH; i++) {
        snprintf(envs[i], sizeof(envs[i]), "RANK=%d", i);
        envp[i][0] = envs[i];
        envp[i][1] = NULL;
        in[i] = (pspawn_instance_t){.argv = argv, .envp = envp[i]};
    }
    pid_t pids[BATCH];
    int errors[BATCH];
    int fds_before = count_open_fds();
    for (int done = 0; done < total; done += BATCH) {
        int n = total - done < BATCH ? total - done : BATCH;
        bool async = (done / BATCH) % 2 == 1;
        if (async) {
            pspawn_session_t *s;
            CHECK(pspawn_vector_async(&s, &ctx, in, n, NULL) == 0);
            CHECK_EQ_INT(pspawn_session_wait(s, 60000), 0);
            CHECK_EQ_INT(pspawn_session_results(s, pids, errors), n);
            pspawn_session_free(s);
        } else {
            CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, in, n, NULL), n);
        }
        for (int i = 0; i < n; i++)
            CHECK(waitpid(pids[i], NULL, 0) == pids[i]);
        CHECK_EQ_INT(count_open_fds(), fds_before);
        CHECK_EQ_INT(count_zombie_children(), 0);
    }
    pspawn_context_destroy(&ctx);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"thousand_distinct", thousand_distinct},
        {"async_thousand", async_thousand},
        {"bad_cpu_fails_alone", bad_cpu_fails_alone},
        {"defaults_and_bad_arguments", defaults_and_bad_arguments},
        {"batch_split_10x", batch_split_10x},
        {"threads_submit_at_once", threads_submit_at_once},
        {"proxy_killed_mid_batch", proxy_killed_mid_batch},
        {"session_freed_early", session_freed_early},
        {"flat_over_many", flat_over_many},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
