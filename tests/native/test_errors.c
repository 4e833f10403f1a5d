/* Every way a context or a spawn can fail reports its documented errno, and a broken
 * proxy never hangs the caller. */
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

static void expect_create_error(const char *path, int expected)
{
    pspawn_context_t ctx;
    errno = 0;
    CHECK(pspawn_context_create(&ctx, path, -1) == -1);
    CHECK_EQ_INT(errno, expected);
    CHECK(ctx.impl == NULL);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

static void missing_file(void)
{
    expect_create_error("/nonexistent/program", ENOENT);
    expect_create_error("", ENOENT);
}

static void directory(void)
{
    expect_create_error(temp_dir(), EACCES);
}

static void not_executable(void)
{
    expect_create_error(make_file("plain", "data", 0644), EACCES);
}

static void empty_file(void)
{
    expect_create_error(make_file("empty", "", 0755), ENOEXEC);
}

static void script(void)
{
    expect_create_error(make_file("script.sh", "#!/bin/sh\nexit 0\n", 0755), ENOEXEC);
}

static void static_binary(void)
{
    expect_create_error(fixture("noop_static"), ENOTSUP);
}

static void setuid_binary(void)
{
    expect_create_error(fixture("setuid_noop"), EPERM);
}

static void threaded_constructor(void)
{
    expect_create_error(fixture("threaded_ctor"), EDEADLK);
}

static void proxy_crash_at_startup(void)
{
    expect_create_error(fixture("ctor_crash"), EPIPE);
}

static void startup_timeout(void)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.startup_timeout_ms = 300;
    pspawn_context_t ctx;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    errno = 0;
    CHECK(pspawn_context_create_ex(&ctx, fixture("ctor_sleep"), &attr) == -1);
    CHECK_EQ_INT(errno, ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(t1.tv_sec - t0.tv_sec < 5); /* bounded by the timeout, not by the 30 s constructor */
    CHECK_EQ_INT(count_zombie_children(), 0);
}

static void fallback_posix_spawn(void)
{
    const char *targets[] = {"noop_static", "setuid_noop", "threaded_ctor"};
    int reasons[] = {ENOTSUP, EPERM, EDEADLK};
    for (int i = 0; i < 3; i++) {
        pspawn_context_attr_t attr;
        pspawn_context_attr_init(&attr);
        attr.flags = PSPAWN_CTX_FALLBACK;
        pspawn_context_t ctx;
        CHECK(pspawn_context_create_ex(&ctx, fixture(targets[i]), &attr) == 0);
        CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_FALLBACK);
        CHECK_EQ_INT(pspawn_context_fallback_reason(&ctx), reasons[i]);
        CHECK_EQ_INT(pspawn_context_proxy_pid(&ctx), -1);
        pid_t pids[3];
        char *argv[] = {(char *)targets[i], NULL};
        CHECK_EQ_INT(pspawn_n(pids, &ctx, 3, argv), 3);
        for (int k = 0; k < 3; k++) {
            int st;
            CHECK(pspawn_waitpid(&ctx, pids[k], &st, 0) == pids[k]);
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
        pspawn_context_destroy(&ctx);
    }
    /* Errors no fallback can cure are still reported. */
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = PSPAWN_CTX_FALLBACK;
    pspawn_context_t ctx;
    errno = 0;
    CHECK(pspawn_context_create_ex(&ctx, "/nonexistent", &attr) == -1 && errno == ENOENT);
}

/* With restarts off, a dead proxy is EPIPE for every later request (the default,
 * restarting it, is test_hardening's dead_proxy_restarts). */
static void proxy_killed(void)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.max_restarts = 0;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("report"), &attr) == 0);
    char *argv[] = {"report", "--report-sleep-ms=300", "--report-out=/dev/null", NULL};
    pid_t before = pspawn(&ctx, argv);
    CHECK(before > 0);
    CHECK(kill(pspawn_context_proxy_pid(&ctx), SIGKILL) == 0);
    usleep(50000);
    errno = 0;
    CHECK(pspawn(&ctx, argv) == -1);
    CHECK_EQ_INT(errno, EPIPE);
    pid_t pids[4];
    CHECK(pspawn_n(pids, &ctx, 4, argv) == -1 && errno == EPIPE);
    CHECK(pids[0] == -1 && pids[3] == -1);
    /* A child started before the proxy died is still ours and still waitable. */
    int st = wait_child(before, 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* A launcher SIGKILLed: its proxy must go too. We become a subreaper so that the
 * orphaned proxy is re-parented to us and we can see it end. */
static void launcher_death_kills_proxy(void)
{
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t launcher = fork();
    CHECK(launcher >= 0);
    if (launcher == 0) {
        pspawn_context_t ctx;
        if (pspawn_context_create(&ctx, fixture("noop"), -1) != 0)
            _exit(1);
        pid_t proxy = pspawn_context_proxy_pid(&ctx);
        if (write(fds[1], &proxy, sizeof(proxy)) != sizeof(proxy))
            _exit(1);
        pause();
        _exit(0);
    }
    pid_t proxy;
    CHECK(read(fds[0], &proxy, sizeof(proxy)) == sizeof(proxy));
    CHECK(proxy > 0 && process_alive(proxy));
    CHECK(kill(launcher, SIGKILL) == 0);
    CHECK(waitpid(launcher, NULL, 0) == launcher);
    int st = wait_child(proxy, 1000); /* gone within a second, re-parented to us */
    CHECK(WIFEXITED(st) || WIFSIGNALED(st));
    close(fds[0]);
    close(fds[1]);
}

static void stopped_proxy_times_out(void)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.request_timeout_ms = 500;
    attr.max_restarts = 0;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == 0);
    pid_t proxy = pspawn_context_proxy_pid(&ctx);
    CHECK(kill(proxy, SIGSTOP) == 0);
    char *argv[] = {"noop", NULL};
    errno = 0;
    CHECK(pspawn(&ctx, argv) == -1);
    CHECK_EQ_INT(errno, ETIMEDOUT);
    /* The stopped proxy was killed; without restarts the context is broken for good. */
    CHECK(!process_alive(proxy));
    CHECK(pspawn(&ctx, argv) == -1 && errno == EPIPE);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"missing_file", missing_file},
        {"directory", directory},
        {"not_executable", not_executable},
        {"empty_file", empty_file},
        {"script", script},
        {"static_binary", static_binary},
        {"setuid_binary", setuid_binary},
        {"threaded_constructor", threaded_constructor},
        {"proxy_crash_at_startup", proxy_crash_at_startup},
        {"startup_timeout", startup_timeout},
        {"fallback_posix_spawn", fallback_posix_spawn},
        {"proxy_killed", proxy_killed},
        {"launcher_death_kills_proxy", launcher_death_kills_proxy},
        {"stopped_proxy_times_out", stopped_proxy_times_out},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
