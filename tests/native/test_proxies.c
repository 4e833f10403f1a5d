/* Several proxies per context: the default count and layout (each proxy pinned to its
 * group of the usable CPUs), children without a CPU set on the caller's whole mask,
 * instances with a CPU set on a proxy that covers it, many threads at once, one of two
 * proxies killed mid-batch, a proxy with its restarts used up out of rotation. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

/* The CPUs this process may use: its affinity mask within the online CPUs. */
static int usable_cpus(int *list)
{
    cpu_set_t set, online;
    CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
    CPU_ZERO(&online);
    char *text = read_file("/sys/devices/system/cpu/online");
    if (text != NULL) {
        for (char *p = text; *p != '\0' && *p != '\n';) {
            long lo = strtol(p, &p, 10), hi = lo;
            if (*p == '-')
                hi = strtol(p + 1, &p, 10);
            for (long c = lo; c <= hi; c++)
                CPU_SET(c, &online);
            if (*p == ',')
                p++;
        }
        free(text);
        CPU_AND(&set, &set, &online);
    }
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            list[n++] = c;
    return n;
}

/* A CPU set as the kernel prints Cpus_allowed_list ("0-3,5"). */
static void format_list(const cpu_set_t *set, char *out, size_t size)
{
    out[0] = '\0';
    size_t len = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, set))
            continue;
        int end = c;
        while (end + 1 < CPU_SETSIZE && CPU_ISSET(end + 1, set))
            end++;
        len += (size_t)snprintf(out + len, size - len, "%s%d", len ? "," : "", c);
        if (end > c)
            len += (size_t)snprintf(out + len, size - len, "-%d", end);
        c = end;
    }
}

/* Cpus_allowed_list of /proc/<pid>/status. */
static void allowed_list(pid_t pid, char *out, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    char *status = read_file(path);
    CHECK(status != NULL);
    char *line = strstr(status, "Cpus_allowed_list:");
    CHECK(line != NULL);
    line += strlen("Cpus_allowed_list:");
    while (*line == ' ' || *line == '\t')
        line++;
    size_t n = strcspn(line, "\n");
    CHECK(n < size);
    memcpy(out, line, n);
    out[n] = '\0';
    free(status);
}

static pspawn_context_t open_k(const char *name, int proxies, unsigned flags, int max_restarts)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.proxies = proxies;
    attr.flags = flags;
    if (max_restarts != -2)
        attr.max_restarts = max_restarts;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture(name), &attr) == 0);
    return ctx;
}

/* Group k of K over the usable CPUs, as the context partitions them. */
static void expected_group(const int *cpus, int n, int k, int K, cpu_set_t *set)
{
    CPU_ZERO(set);
    if (K <= n)
        for (int j = k * n / K; j < (k + 1) * n / K; j++)
            CPU_SET(cpus[j], set);
    else
        CPU_SET(cpus[k % n], set);
}

static void check_layout(pspawn_context_t *ctx, const int *cpus, int n, int K)
{
    CHECK_EQ_INT(pspawn_context_proxy_count(ctx), K);
    pid_t pids[64];
    CHECK_EQ_INT(pspawn_context_proxy_pids(ctx, pids, 64), K);
    for (int k = 0; k < K; k++) {
        CHECK(pids[k] > 0 && process_alive(pids[k]));
        char got[256], want[256];
        allowed_list(pids[k], got, sizeof(got));
        cpu_set_t group;
        expected_group(cpus, n, k, K, &group);
        format_list(&group, want, sizeof(want));
        if (strcmp(got, want) != 0) {
            fprintf(stderr, "proxy %d of %d: Cpus_allowed_list %s, expected %s\n", k, K, got, want);
            exit(1);
        }
    }
    CHECK_EQ_INT(pspawn_context_proxy_pid(ctx), pids[0]);
}

/* Default: one proxy per usable CPU (2 here), each on its own CPU; K > CPUs shares them
 * round-robin; one proxy is not pinned; bad counts are EINVAL. */
static void default_layout(void)
{
    int cpus[CPU_SETSIZE];
    int n = usable_cpus(cpus);
    int K = n > 8 ? 8 : n;
    pspawn_context_t ctx = open_k("noop", 0, 0, -2);
    check_layout(&ctx, cpus, n, K);
    fprintf(stderr, "default: %d proxies over %d usable CPUs\n", K, n);
    pspawn_context_destroy(&ctx);

    ctx = open_k("noop", n + 1, 0, -2);
    check_layout(&ctx, cpus, n, n + 1);
    pspawn_context_destroy(&ctx);

    ctx = open_k("noop", 1, 0, -2);
    CHECK_EQ_INT(pspawn_context_proxy_count(&ctx), 1);
    cpu_set_t mine;
    CHECK(sched_getaffinity(0, sizeof(mine), &mine) == 0);
    char got[256], want[256];
    allowed_list(pspawn_context_proxy_pid(&ctx), got, sizeof(got));
    format_list(&mine, want, sizeof(want));
    CHECK(strcmp(got, want) == 0);
    pspawn_context_destroy(&ctx);

    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.proxies = -1;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == -1 && errno == EINVAL);
    attr.proxies = 65;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == -1 && errno == EINVAL);
    attr.proxies = 2;
    attr.core = cpus[0];
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == -1 && errno == EINVAL);
    attr.proxies = 0; /* a core means one proxy, pinned there */
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == 0);
    CHECK_EQ_INT(pspawn_context_proxy_count(&ctx), 1);
    pspawn_context_destroy(&ctx);
    CHECK(pspawn_context_proxy_pids(NULL, NULL, 0) == -1 && errno == EINVAL);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* Children without a CPU set run on the mask the caller had at creation, not on their
 * proxy's group (also after the caller narrowed its own mask). */
static void children_get_callers_mask(void)
{
    enum { N = 16 };
    cpu_set_t mine;
    CHECK(sched_getaffinity(0, sizeof(mine), &mine) == 0);
    pspawn_context_t ctx = open_k("report", 0, 0, -2);
    int cpus[CPU_SETSIZE];
    CHECK(usable_cpus(cpus) >= 1);
    cpu_set_t narrow;
    CPU_ZERO(&narrow);
    CPU_SET(cpus[0], &narrow);
    CHECK(sched_setaffinity(0, sizeof(narrow), &narrow) == 0);
    pid_t pids[N];
    for (int round = 0; round < 2; round++) {
        /* Round 0: one pspawn_n (split over the proxies); round 1: a vector without CPUs. */
        char argbuf[N][4300];
        char *argvs[N][3];
        pspawn_instance_t in[N];
        for (int i = 0; i < N; i++) {
            snprintf(argbuf[i], sizeof(argbuf[i]), "--report-out=%s/mask.%d.%d.json", temp_dir(), round, i);
            argvs[i][0] = "report";
            argvs[i][1] = argbuf[i];
            argvs[i][2] = NULL;
            in[i] = (pspawn_instance_t){.argv = argvs[i]};
        }
        if (round == 0) {
            for (int i = 0; i < N; i++)
                CHECK(pspawn_n(&pids[i], &ctx, 1, argvs[i]) == 1); /* one at a time: rotates */
        } else {
            int errors[N];
            CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, in, N, NULL), N);
        }
        for (int i = 0; i < N; i++) {
            CHECK(WIFEXITED(wait_child(pids[i], 20000)));
            char path[4300];
            snprintf(path, sizeof(path), "%s/mask.%d.%d.json", temp_dir(), round, i);
            char *json = await_file(path, 20000);
            CHECK(json != NULL);
            size_t n;
            long long *affinity = json_ints(json, "affinity", &n);
            CHECK_EQ_INT(n, CPU_COUNT(&mine));
            for (size_t k = 0; k < n; k++)
                CHECK(CPU_ISSET(affinity[k], &mine));
            free(affinity);
            free(json);
        }
    }
    CHECK(sched_setaffinity(0, sizeof(mine), &mine) == 0);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* 1,000 instances with CPU i % ncpu, in relay mode, where a child's parent is the proxy
 * that forked it: each lands on the proxy whose CPUs cover its set, gets exactly its
 * set, and the batch is split evenly. */
static void masks_land_on_covering_proxies(void)
{
    enum { N = 1000 };
    int cpus[CPU_SETSIZE];
    int n = usable_cpus(cpus);
    pspawn_context_t ctx = open_k("report", 0, PSPAWN_CTX_RELAY, -2);
    int K = pspawn_context_proxy_count(&ctx);
    pid_t proxies[8];
    CHECK_EQ_INT(pspawn_context_proxy_pids(&ctx, proxies, 8), K);
    static char argbuf[N][4200];
    static char *argvs[N][4];
    static char rank[N][32];
    static cpu_set_t sets[N];
    static pspawn_instance_t in[N];
    for (int i = 0; i < N; i++) {
        snprintf(rank[i], sizeof(rank[i]), "rank=%d", i);
        snprintf(argbuf[i], sizeof(argbuf[i]), "--report-out=%s/route.%d.json", temp_dir(), i);
        argvs[i][0] = "report";
        argvs[i][1] = rank[i];
        argvs[i][2] = argbuf[i];
        argvs[i][3] = NULL;
        CPU_ZERO(&sets[i]);
        CPU_SET(cpus[i % n], &sets[i]);
        in[i] = (pspawn_instance_t){.argv = argvs[i], .cpus = &sets[i], .cpusetsize = sizeof(cpu_set_t)};
    }
    static pid_t pids[N];
    static int errors[N];
    CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, in, N, NULL), N);
    int served[8] = {0};
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(errors[i], 0);
        int st;
        CHECK(pspawn_waitpid(&ctx, pids[i], &st, 0) == pids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0);
        char path[4300];
        snprintf(path, sizeof(path), "%s/route.%d.json", temp_dir(), i);
        char *json = await_file(path, 20000);
        CHECK(json != NULL);
        size_t m;
        long long *affinity = json_ints(json, "affinity", &m);
        CHECK(m == 1 && affinity[0] == cpus[i % n]);
        free(affinity);
        pid_t parent = (pid_t)json_int(json, "ppid");
        free(json);
        int k = 0;
        while (k < K && proxies[k] != parent)
            k++;
        CHECK(k < K); /* forked by one of the context's proxies */
        cpu_set_t group;
        expected_group(cpus, n, k, K, &group);
        CHECK(CPU_ISSET(cpus[i % n], &group)); /* ... by one whose CPUs cover its set */
        served[k]++;
    }
    for (int k = 0; k < K; k++) {
        fprintf(stderr, "proxy %d (pid %d) served %d of %d\n", k, (int)proxies[k], served[k], N);
        if (K <= n)
            CHECK(served[k] > 0);
    }
    /* Without CPU sets a batch is split evenly too. */
    char *argv[] = {"report", "--report-out=/dev/null", NULL};
    pid_t plain[200];
    CHECK_EQ_INT(pspawn_n(plain, &ctx, 200, argv), 200);
    for (int i = 0; i < 200; i++) {
        int st;
        CHECK(pspawn_waitpid(&ctx, plain[i], &st, 0) == plain[i] && WIFEXITED(st));
    }
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* K proxies, several threads submitting pspawn_n and vectors (with and without CPU
 * sets) at once. */
static pspawn_context_t shared_ctx;
enum { THREADS = 6, PER_THREAD = 200 };

static void *submit(void *arg)
{
    long t = (long)arg;
    int cpus[CPU_SETSIZE];
    int n = usable_cpus(cpus);
    pid_t pids[PER_THREAD];
    int errors[PER_THREAD];
    char *argv[] = {"noop", NULL};
    for (int round = 0; round < 5; round++) {
        int started;
        if ((t + round) % 2 == 0) {
            started = pspawn_n(pids, &shared_ctx, PER_THREAD, argv);
        } else {
            pspawn_instance_t in[PER_THREAD];
            cpu_set_t sets[PER_THREAD];
            for (int i = 0; i < PER_THREAD; i++) {
                CPU_ZERO(&sets[i]);
                CPU_SET(cpus[(i + t) % n], &sets[i]);
                in[i] = (pspawn_instance_t){.argv = argv, .cpus = i % 3 ? &sets[i] : NULL,
                                            .cpusetsize = sizeof(cpu_set_t)};
            }
            started = pspawn_vector(pids, errors, &shared_ctx, in, PER_THREAD, NULL);
        }
        if (started != PER_THREAD)
            return (void *)1;
        for (int i = 0; i < PER_THREAD; i++) {
            int st;
            if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                return (void *)2;
        }
    }
    return NULL;
}

static void threads_on_k_proxies(void)
{
    int cpus[CPU_SETSIZE];
    int n = usable_cpus(cpus);
    int counts[] = {0, n + 1};
    for (int c = 0; c < 2; c++) {
        shared_ctx = open_k("noop", counts[c], 0, -2);
        pthread_t threads[THREADS];
        for (long t = 0; t < THREADS; t++)
            CHECK(pthread_create(&threads[t], NULL, submit, (void *)t) == 0);
        for (int t = 0; t < THREADS; t++) {
            void *r;
            CHECK(pthread_join(threads[t], &r) == 0);
            CHECK(r == NULL);
        }
        CHECK_EQ_INT(pspawn_context_restarts(&shared_ctx), 0);
        pspawn_context_destroy(&shared_ctx);
    }
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* One of two proxies killed in mid-batch: nothing is lost, and what it had not forked
 * went to the other one, so every instance started; the next call restarts it. */
static pspawn_context_t killed_ctx;
enum { KILLED_N = 20000 };
static pid_t killed_pids[KILLED_N];
static int killed_errors[KILLED_N];
static int killed_started;

static void *run_killed(void *arg)
{
    (void)arg;
    char *argv[] = {"noop", NULL};
    killed_started = pspawn_ne(killed_pids, killed_errors, &killed_ctx, KILLED_N, argv, NULL);
    return NULL;
}

static void one_killed_mid_batch(void)
{
    killed_ctx = open_k("noop", 2, 0, -2);
    pid_t proxies[2];
    CHECK_EQ_INT(pspawn_context_proxy_pids(&killed_ctx, proxies, 2), 2);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, run_killed, NULL) == 0);
    usleep(100000);
    CHECK(kill(proxies[0], SIGKILL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    int started = 0;
    for (int i = 0; i < KILLED_N; i++) {
        if (killed_pids[i] > 0) {
            CHECK_EQ_INT(killed_errors[i], 0);
            int st;
            CHECK(waitpid(killed_pids[i], &st, 0) == killed_pids[i] && WIFEXITED(st));
            started++;
        } else {
            CHECK(killed_errors[i] != 0);
        }
    }
    CHECK_EQ_INT(started, killed_started);
    fprintf(stderr, "one of 2 proxies killed mid-batch: %d of %d started\n", started, KILLED_N);
    CHECK_EQ_INT(started, KILLED_N);
    CHECK_EQ_INT(pspawn_context_restarts(&killed_ctx), 0);
    /* The next call restarts the dead one. */
    char *argv[] = {"noop", NULL};
    pid_t more[8];
    CHECK_EQ_INT(pspawn_n(more, &killed_ctx, 8, argv), 8);
    for (int i = 0; i < 8; i++)
        CHECK(waitpid(more[i], NULL, 0) == more[i]);
    CHECK_EQ_INT(pspawn_context_restarts(&killed_ctx), 1);
    pid_t now[2];
    CHECK_EQ_INT(pspawn_context_proxy_pids(&killed_ctx, now, 2), 2);
    CHECK(now[0] > 0 && now[0] != proxies[0] && now[1] == proxies[1]);
    pspawn_context_destroy(&killed_ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* max_restarts counts per proxy: with 1, each proxy may be restarted once; a proxy
 * killed again is out of rotation and the other serves alone; the sum is reported. */
static void restarts_per_proxy(void)
{
    pspawn_context_t ctx = open_k("noop", 2, 0, 1);
    char *argv[] = {"noop", NULL};
    pid_t pids[2], got[16];
    for (int round = 0; round < 2; round++) {
        CHECK_EQ_INT(pspawn_context_proxy_pids(&ctx, pids, 2), 2);
        CHECK(pids[0] > 0);
        CHECK(kill(pids[0], SIGKILL) == 0);
        usleep(50000);
        CHECK_EQ_INT(pspawn_n(got, &ctx, 16, argv), 16);
        for (int i = 0; i < 16; i++)
            CHECK(waitpid(got[i], NULL, 0) == got[i]);
    }
    CHECK_EQ_INT(pspawn_context_restarts(&ctx), 1);
    CHECK_EQ_INT(pspawn_context_proxy_pids(&ctx, pids, 2), 2);
    CHECK(pids[0] == -1 && pids[1] > 0);
    CHECK_EQ_INT(pspawn_context_proxy_pid(&ctx), pids[1]);
    CHECK_EQ_INT(pspawn_context_ping(&ctx), 0);
    /* The other one still has its own restart. */
    CHECK(kill(pids[1], SIGKILL) == 0);
    usleep(50000);
    CHECK_EQ_INT(pspawn_n(got, &ctx, 4, argv), 4);
    for (int i = 0; i < 4; i++)
        CHECK(waitpid(got[i], NULL, 0) == got[i]);
    CHECK_EQ_INT(pspawn_context_restarts(&ctx), 2);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"default_layout", default_layout},
        {"children_get_callers_mask", children_get_callers_mask},
        {"masks_land_on_covering_proxies", masks_land_on_covering_proxies},
        {"threads_on_k_proxies", threads_on_k_proxies},
        {"one_killed_mid_batch", one_killed_mid_batch},
        {"restarts_per_proxy", restarts_per_proxy},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
