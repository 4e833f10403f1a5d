/* The warm pool: a claimed child shows what a forked one shows (pid/ppid, argv, env,
 * cmdline, environ, affinity, signal mask, descriptors, fresh canary and AT_RANDOM);
 * parked children killed, their proxy killed, their launcher SIGKILLed, RLIMIT_NPROC
 * exhausted, claims faster than refills, idle trimming, options that go to a fork,
 * and bad attributes. */
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

#define WAIT_MS 20000

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static pspawn_context_t open_pool(const char *name, int pool, int idle_ms)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.proxies = 1;
    attr.pool = pool;
    attr.pool_idle_ms = idle_ms;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture(name), &attr) == 0);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_ZYGOTE);
    return ctx;
}

/* Waits until `want` children are parked; returns their pids in pids[]. */
static void await_parked(pspawn_context_t *ctx, pid_t *pids, int want)
{
    long long deadline = now_ms() + WAIT_MS;
    int n;
    while ((n = pspawn_context_pool_pids(ctx, pids, want)) != want) {
        CHECK(n >= 0 && n < want);
        CHECK(now_ms() < deadline);
        sleep_ms(5);
    }
}

static bool among(pid_t pid, const pid_t *list, int n)
{
    for (int i = 0; i < n; i++)
        if (list[i] == pid)
            return true;
    return false;
}

static void await_gone(pid_t pid)
{
    long long deadline = now_ms() + WAIT_MS;
    while (process_alive(pid)) {
        CHECK(now_ms() < deadline);
        sleep_ms(5);
    }
}

/* A zombie: state Z in /proc/<pid>/stat. */
static bool is_zombie(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *stat = read_file(path);
    if (stat == NULL)
        return false;
    char *close_paren = strrchr(stat, ')');
    bool z = close_paren != NULL && close_paren[1] == ' ' && close_paren[2] == 'Z';
    free(stat);
    return z;
}

static int exit_code(pid_t pid)
{
    int st = wait_child(pid, WAIT_MS);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* The report fixture run from the pool: it writes its JSON and sleeps, so that its /proc
 * files can be read; then it is killed and reaped. */
struct report {
    pid_t pid;
    char out[4200], option[4300];
    char *json;
};

static void claim_report(struct report *r, pspawn_context_t *ctx, char *const envp[], const pspawn_attr_t *attr)
{
    static int serial;
    snprintf(r->out, sizeof(r->out), "%s/pool-%d.json", temp_dir(), serial++);
    snprintf(r->option, sizeof(r->option), "--report-out=%s", r->out);
    char *argv[] = {"report-claimed", "--report-image", "two words", r->option, "--report-sleep-ms=60000", NULL};
    r->pid = pspawn_x(ctx, argv, envp, attr, NULL);
    CHECK(r->pid > 0);
    r->json = await_file(r->out, WAIT_MS);
    CHECK(r->json != NULL);
}

static void end_report(struct report *r)
{
    kill(r->pid, SIGKILL);
    int st = wait_child(r->pid, WAIT_MS);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    free(r->json);
}

/* /proc/<pid>/<name> as NUL-separated bytes equal to `list`. */
static void check_proc_list(pid_t pid, const char *name, char *const list[])
{
    char path[64], want[8192];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
    size_t len = 0;
    for (size_t i = 0; list[i] != NULL; i++) {
        size_t n = strlen(list[i]) + 1;
        CHECK(len + n < sizeof(want));
        memcpy(want + len, list[i], n);
        len += n;
    }
    char got[8192];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    ssize_t r = read(fd, got, sizeof(got));
    close(fd);
    CHECK_EQ_INT(r, (long long)len);
    CHECK(memcmp(got, want, len) == 0);
}

static void claimed_child_is_a_fresh_one(void)
{
    pspawn_context_t ctx = open_pool("report", 2, 0);
    pid_t parked[2];
    await_parked(&ctx, parked, 2);
    char *envp[] = {"POOL_TEST=1", "OTHER=x y", NULL};
    struct report a, b;
    claim_report(&a, &ctx, envp, NULL);
    claim_report(&b, &ctx, envp, NULL);
    CHECK(among(a.pid, parked, 2) && among(b.pid, parked, 2)); /* claims, not forks */
    CHECK_EQ_INT(pspawn_context_pool_claims(&ctx), 2);
    struct report *both[] = {&a, &b};
    for (int k = 0; k < 2; k++) {
        struct report *r = both[k];
        CHECK_EQ_INT(json_int(r->json, "pid"), r->pid);
        CHECK_EQ_INT(json_int(r->json, "ppid"), getpid());
        CHECK_EQ_INT(json_int(r->json, "pgid"), getpgrp());
        size_t n;
        char **argv = json_strings(r->json, "argv", &n);
        CHECK_EQ_INT(n, 5);
        CHECK(strcmp(argv[0], "report-claimed") == 0 && strcmp(argv[2], "two words") == 0);
        free_strings(argv, n);
        char **env = json_strings(r->json, "env", &n);
        CHECK_EQ_INT(n, 2);
        CHECK(strcmp(env[0], "POOL_TEST=1") == 0 && strcmp(env[1], "OTHER=x y") == 0);
        free_strings(env, n);
        long long *fds = json_ints(r->json, "fds", &n);
        CHECK_EQ_INT(n, 3); /* 0-2 only: no pool plumbing */
        CHECK(fds[0] == 0 && fds[1] == 1 && fds[2] == 2);
        free(fds);
        long long *mask = json_ints(r->json, "sigmask", &n);
        CHECK_EQ_INT(n, 0);
        free(mask);
        free(json_ints(r->json, "sighandled", &n));
        CHECK_EQ_INT(n, 0);
        cpu_set_t ours;
        CHECK(sched_getaffinity(0, sizeof(ours), &ours) == 0);
        long long *cpus = json_ints(r->json, "affinity", &n);
        CHECK_EQ_INT(n, CPU_COUNT(&ours));
        for (size_t i = 0; i < n; i++)
            CHECK(CPU_ISSET((int)cpus[i], &ours));
        free(cpus);
        CHECK_EQ_INT(json_int(r->json, "protected_call"), 668);
        char *cmd[] = {"report-claimed", "--report-image", "two words", r->option, "--report-sleep-ms=60000", NULL};
        check_proc_list(r->pid, "cmdline", cmd);
        check_proc_list(r->pid, "environ", envp);
    }
    /* A fresh canary and AT_RANDOM per child, not the parked siblings' shared ones. */
    char *ca = json_string_value(a.json, "canary"), *cb = json_string_value(b.json, "canary");
    char *ra = json_string_value(a.json, "at_random"), *rb = json_string_value(b.json, "at_random");
    CHECK(strcmp(ca, cb) != 0 && strcmp(ra, rb) != 0);
    CHECK(strncmp(ca + 2, ra + 2, 14) == 0 && strncmp(cb + 2, rb + 2, 14) == 0);
    free(ca), free(cb), free(ra), free(rb);
    end_report(&a);
    end_report(&b);
    /* The proxy refills: two new parked children, not the claimed ones. */
    pid_t again[2];
    await_parked(&ctx, again, 2);
    CHECK(!among(a.pid, again, 2) && !among(b.pid, again, 2));
    pspawn_context_destroy(&ctx);
    for (int k = 0; k < 2; k++)
        await_gone(again[k]);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

static void cpu_set_claim_and_its_error(void)
{
    pspawn_context_t ctx = open_pool("report", 2, 0);
    pid_t parked[2];
    await_parked(&ctx, parked, 2);
    cpu_set_t ours, one;
    CHECK(sched_getaffinity(0, sizeof(ours), &ours) == 0);
    int cpu = 0;
    while (!CPU_ISSET(cpu, &ours))
        cpu++;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    pspawn_attr_t *attr;
    CHECK(pspawn_attr_create(&attr) == 0);
    CHECK(pspawn_attr_set_cpus(attr, &one) == 0);
    char *envp[] = {NULL};
    struct report r;
    claim_report(&r, &ctx, envp, attr);
    CHECK(among(r.pid, parked, 2));
    size_t n;
    long long *cpus = json_ints(r.json, "affinity", &n);
    CHECK(n == 1 && cpus[0] == cpu);
    free(cpus);
    end_report(&r);
    /* A CPU that is not online: the kernel refuses the set in the claimed child, which
     * reports it and exits before main, as a forked child does. */
    await_parked(&ctx, parked, 2);
    cpu_set_t offline;
    CPU_ZERO(&offline);
    CPU_SET(CPU_SETSIZE - 1, &offline);
    CHECK(pspawn_attr_set_cpus(attr, &offline) == 0);
    char *argv[] = {"report", NULL};
    errno = 0;
    CHECK_EQ_INT(pspawn_x(&ctx, argv, envp, attr, NULL), -1);
    CHECK_EQ_INT(errno, EINVAL);
    CHECK_EQ_INT(count_zombie_children(), 0); /* it was reaped */
    pid_t again[2];
    await_parked(&ctx, again, 2); /* and its slot refilled */
    CHECK(!among(r.pid, again, 2));
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* Spawns with options (here a working directory, a standard stream and an environment)
 * cannot be claims: the proxy hands each to the parked child instead of forking, the child
 * gets exactly the options, and the slot is refilled; an instance beyond the parked ones
 * is forked. pspawn_context_owns tells the pool's and the proxy's processes from spawned
 * children. */
static void options_are_handed_to_parked_children(void)
{
    pspawn_context_t ctx = open_pool("report", 1, 0);
    pspawn_attr_t *attr;
    CHECK(pspawn_attr_create(&attr) == 0);
    CHECK(pspawn_attr_set_cwd(attr, "/") == 0);
    CHECK(pspawn_attr_stdio_null(attr, 0) == 0);
    char *envp[] = {"HANDED=1", NULL};
    struct report r[3];
    for (int k = 0; k < 3; k++) {
        pid_t parked;
        await_parked(&ctx, &parked, 1);
        CHECK(pspawn_context_owns(&ctx, parked));
        claim_report(&r[k], &ctx, envp, attr);
        CHECK_EQ_INT(r[k].pid, parked); /* handed, not forked */
        CHECK(!pspawn_context_owns(&ctx, r[k].pid));
    }
    CHECK(pspawn_context_owns(&ctx, pspawn_context_proxy_pid(&ctx)));
    CHECK(!pspawn_context_owns(&ctx, getpid()));
    for (int k = 0; k < 3; k++) {
        char *cwd = json_string_value(r[k].json, "cwd");
        CHECK(cwd != NULL && strcmp(cwd, "/") == 0);
        free(cwd);
        CHECK_EQ_INT(json_int(r[k].json, "ppid"), getpid());
        size_t n = 0;
        char **env = json_strings(r[k].json, "env", &n);
        CHECK(n == 1 && strcmp(env[0], "HANDED=1") == 0);
        for (size_t i = 0; i < n; i++)
            free(env[i]);
        free(env);
        end_report(&r[k]);
    }
    CHECK_EQ_INT(pspawn_context_pool_claims(&ctx), 0); /* handed, not claimed */
    /* One request, two instances, one parked child: the second instance is forked. */
    pid_t parked;
    await_parked(&ctx, &parked, 1);
    char *argv[] = {"report", "--report-exit=5", NULL};
    pid_t pids[2];
    int errors[2];
    CHECK_EQ_INT(pspawn_nx(pids, errors, NULL, &ctx, 2, argv, envp, attr), 2);
    CHECK(pids[0] == parked && pids[1] != parked);
    for (int k = 0; k < 2; k++)
        CHECK_EQ_INT(exit_code(pids[k]), 5);
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

static void killed_parked_never_handed_out(void)
{
    pspawn_context_t ctx = open_pool("noop", 4, 0);
    pid_t parked[4];
    await_parked(&ctx, parked, 4);
    for (int k = 0; k < 4; k++)
        CHECK(kill(parked[k], SIGKILL) == 0);
    for (int k = 0; k < 4; k++) {
        long long deadline = now_ms() + WAIT_MS;
        while (!is_zombie(parked[k]))
            CHECK(now_ms() < deadline);
    }
    char *argv[] = {"noop", NULL};
    pid_t pids[8];
    CHECK_EQ_INT(pspawn_n(pids, &ctx, 8, argv), 8);
    for (int i = 0; i < 8; i++) {
        CHECK(!among(pids[i], parked, 4));
        CHECK_EQ_INT(exit_code(pids[i]), 0);
    }
    CHECK_EQ_INT(count_zombie_children(), 0); /* the killed ones were reaped */
    pid_t fresh[4];
    await_parked(&ctx, fresh, 4);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

static void proxy_killed_while_parked(void)
{
    pspawn_context_t ctx = open_pool("noop", 3, 0);
    pid_t parked[3];
    await_parked(&ctx, parked, 3);
    pid_t proxy = pspawn_context_proxy_pid(&ctx);
    CHECK(kill(proxy, SIGKILL) == 0);
    /* They end themselves (the death pipe): zombies of ours until the next call. */
    for (int k = 0; k < 3; k++) {
        long long deadline = now_ms() + WAIT_MS;
        while (process_alive(parked[k]))
            CHECK(now_ms() < deadline);
    }
    char *argv[] = {"noop", NULL};
    pid_t pid = pspawn(&ctx, argv);
    CHECK(pid > 0 && !among(pid, parked, 3));
    CHECK_EQ_INT(exit_code(pid), 0);
    CHECK_EQ_INT(pspawn_context_restarts(&ctx), 1);
    CHECK_EQ_INT(count_zombie_children(), 0); /* the restart reaped them and the old proxy */
    pid_t fresh[3];
    await_parked(&ctx, fresh, 3);
    pspawn_context_destroy(&ctx);
    for (int k = 0; k < 3; k++)
        CHECK(!process_alive(fresh[k]) && !is_zombie(fresh[k]));
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* The launcher, in a child: a pool context, its parked pids written to `fd`, then it
 * waits to be killed. */
static void launcher_with_pool(int fd)
{
    pspawn_context_t ctx = open_pool("noop", 3, 0);
    pid_t parked[3];
    await_parked(&ctx, parked, 3);
    CHECK(write(fd, parked, sizeof(parked)) == (ssize_t)sizeof(parked));
    for (;;)
        pause();
}

static void launcher_killed_parked_die(void)
{
    int pipe_fds[2];
    CHECK(pipe2(pipe_fds, O_CLOEXEC) == 0);
    pid_t launcher = fork();
    CHECK(launcher >= 0);
    if (launcher == 0) {
        close(pipe_fds[0]);
        launcher_with_pool(pipe_fds[1]);
    }
    close(pipe_fds[1]);
    pid_t parked[3];
    struct pollfd p = {.fd = pipe_fds[0], .events = POLLIN};
    CHECK(poll(&p, 1, WAIT_MS) == 1);
    CHECK(read(pipe_fds[0], parked, sizeof(parked)) == (ssize_t)sizeof(parked));
    close(pipe_fds[0]);
    CHECK(kill(launcher, SIGKILL) == 0);
    int st = wait_child(launcher, WAIT_MS);
    CHECK(WIFSIGNALED(st));
    /* Orphans no more: they see the launcher's pidfd and exit; init reaps them. */
    for (int k = 0; k < 3; k++)
        await_gone(parked[k]);
}

/* As an unprivileged user (RLIMIT_NPROC does not bind root): with the proxy's limit
 * used up, the parked children are still claimed, the rest fail with EAGAIN one by one
 * (reported, nothing lost), and the pool refills once the limit allows it. */
static void exhausted_nproc(void)
{
    if (geteuid() != 0) {
        printf("skip exhausted_nproc: needs root to become an unprivileged user\n");
        return;
    }
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        /* The build tree may sit under a directory only root can enter (a clone in a
         * mktemp -d folder, 0700): nobody runs copies in a temp folder it can reach. */
        CHECK(chmod(temp_dir(), 0755) == 0);
        const char *target = copy_fixture("noop", "noop", 0755);
        char library[4096];
        snprintf(library, sizeof(library), "%s/libpspawn_proxy.so", temp_dir());
        copy_file(fixture("../lib/libpspawn_proxy.so"), library, 0644);
        CHECK(setgroups(0, NULL) == 0 && setresgid(65534, 65534, 65534) == 0 && setresuid(65534, 65534, 65534) == 0);
        pspawn_context_attr_t attr;
        pspawn_context_attr_init(&attr);
        attr.proxies = 1;
        attr.pool = 3;
        attr.proxy_library = library;
        pspawn_context_t ctx;
        CHECK(pspawn_context_create_ex(&ctx, target, &attr) == 0);
        pid_t parked[3];
        await_parked(&ctx, parked, 3);
        pid_t proxy = pspawn_context_proxy_pid(&ctx);
        struct rlimit old, one = {.rlim_cur = 1, .rlim_max = RLIM_INFINITY};
        CHECK(prlimit(proxy, RLIMIT_NPROC, NULL, &old) == 0);
        one.rlim_max = old.rlim_max;
        CHECK(prlimit(proxy, RLIMIT_NPROC, &one, NULL) == 0);
        char *argv[] = {"noop", NULL};
        char *envp[] = {NULL};
        pid_t pids[6];
        int errors[6];
        CHECK_EQ_INT(pspawn_ne(pids, errors, &ctx, 6, argv, envp), 3);
        for (int i = 0; i < 6; i++) {
            if (i < 3) {
                CHECK(among(pids[i], parked, 3) && errors[i] == 0);
                CHECK_EQ_INT(exit_code(pids[i]), 0);
            } else {
                CHECK(pids[i] == -1 && errors[i] == EAGAIN);
            }
        }
        sleep_ms(300); /* refills are refused and retried meanwhile */
        CHECK_EQ_INT(pspawn_context_pool_pids(&ctx, NULL, 0), 0);
        CHECK(prlimit(proxy, RLIMIT_NPROC, &old, NULL) == 0);
        await_parked(&ctx, parked, 3);
        pspawn_context_destroy(&ctx);
        CHECK_EQ_INT(count_zombie_children(), 0);
        _exit(0);
    }
    int st = wait_child(child, 60000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void claims_faster_than_refill(void)
{
    pspawn_context_t ctx = open_pool("noop", 2, 0);
    char *argv[] = {"noop", NULL};
    for (int round = 0; round < 5; round++) {
        pid_t pids[64];
        CHECK_EQ_INT(pspawn_n(pids, &ctx, 64, argv), 64);
        for (int i = 0; i < 64; i++) {
            for (int j = 0; j < i; j++)
                CHECK(pids[i] != pids[j]);
            CHECK_EQ_INT(exit_code(pids[i]), 0);
        }
        for (int i = 0; i < 20; i++) { /* single spawns, back to back */
            pid_t pid = pspawn(&ctx, argv);
            CHECK(pid > 0);
            CHECK_EQ_INT(exit_code(pid), 0);
        }
    }
    CHECK_EQ_INT(count_zombie_children(), 0);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* Every claim is refilled, many times in a row (a pool of one: each spawn must find the
 * refill of the previous claim; a refill the proxy missed, e.g. a claim taken while it was
 * computing its poll timeout, would leave the pool empty for good). */
static void every_claim_is_refilled(void)
{
    pspawn_context_t ctx = open_pool("noop", 1, 0);
    char *argv[] = {"noop", NULL};
    pid_t parked;
    for (long k = 1; k <= 300; k++) {
        await_parked(&ctx, &parked, 1);
        pid_t pid = pspawn(&ctx, argv);
        CHECK_EQ_INT(pid, parked); /* a claim, not a fork */
        CHECK_EQ_INT(pspawn_context_pool_claims(&ctx), k);
        CHECK_EQ_INT(exit_code(pid), 0);
    }
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

static void idle_pool_is_trimmed(void)
{
    pspawn_context_t ctx = open_pool("noop", 2, 500);
    pid_t parked[2];
    await_parked(&ctx, parked, 2);
    for (int k = 0; k < 2; k++)
        await_gone(parked[k]); /* trimmed: exited (zombies until our next call) */
    CHECK_EQ_INT(pspawn_context_pool_pids(&ctx, NULL, 0), 0);
    CHECK_EQ_INT(count_zombie_children(), 0); /* that call reaped them */
    sleep_ms(100);
    CHECK_EQ_INT(pspawn_context_pool_pids(&ctx, NULL, 0), 0); /* asking is no spawn: still trimmed */
    char *argv[] = {"noop", NULL};
    pid_t pid = pspawn(&ctx, argv);
    CHECK(pid > 0);
    CHECK_EQ_INT(exit_code(pid), 0);
    pid_t again[2];
    await_parked(&ctx, again, 2); /* a spawn wakes the pool up */
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

static void bad_attributes_and_modes(void)
{
    int bad[][2] = {{-1, 0}, {65, 0}, {2, -1}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pspawn_context_attr_t attr;
        pspawn_context_attr_init(&attr);
        attr.pool = bad[i][0];
        attr.pool_idle_ms = bad[i][1];
        pspawn_context_t ctx;
        errno = 0;
        CHECK_EQ_INT(pspawn_context_create_ex(&ctx, fixture("noop"), &attr), -1);
        CHECK_EQ_INT(errno, EINVAL);
    }
    CHECK_EQ_INT(pspawn_context_pool_pids(NULL, NULL, 0), -1);
    /* Relay mode has no pool (the proxy is the parent there): it spawns as before. */
    int fds_before = count_open_fds();
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = PSPAWN_CTX_RELAY;
    attr.pool = 4;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == 0);
    CHECK_EQ_INT(pspawn_context_pool_pids(&ctx, NULL, 0), 0);
    char *argv[] = {"noop", NULL};
    pid_t pid = pspawn(&ctx, argv);
    CHECK(pid > 0);
    int st;
    CHECK_EQ_INT(pspawn_waitpid(&ctx, pid, &st, 0), pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    pspawn_context_destroy(&ctx);
    /* A pool context leaves no descriptor behind. */
    ctx = open_pool("noop", 4, 0);
    pid_t parked[4];
    await_parked(&ctx, parked, 4);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_open_fds(), fds_before);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"claimed_child_is_a_fresh_one", claimed_child_is_a_fresh_one},
        {"cpu_set_claim_and_its_error", cpu_set_claim_and_its_error},
        {"options_are_handed_to_parked_children", options_are_handed_to_parked_children},
        {"killed_parked_never_handed_out", killed_parked_never_handed_out},
        {"proxy_killed_while_parked", proxy_killed_while_parked},
        {"launcher_killed_parked_die", launcher_killed_parked_die},
        {"exhausted_nproc", exhausted_nproc},
        {"claims_faster_than_refill", claims_faster_than_refill},
        {"every_claim_is_refilled", every_claim_is_refilled},
        {"idle_pool_is_trimmed", idle_pool_is_trimmed},
        {"bad_attributes_and_modes", bad_attributes_and_modes},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
