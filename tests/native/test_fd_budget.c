/* PSPAWN_CTX_FDS_ABOVE_LIMIT: a context's descriptors live above the caller's soft
 * RLIMIT_NOFILE, so that a caller opening files up to its limit gets as many with the
 * context as without it; also after a proxy restart. Not done with other threads. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define SOFT 64

/* Lowers the soft limit to SOFT (the hard one stays); skips (77) if the hard one is not above. */
static void lower_soft_limit(void)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_max <= SOFT) {
        fprintf(stderr, "SKIP: hard RLIMIT_NOFILE %lu, nothing to lift above\n", (unsigned long)rl.rlim_max);
        exit(77);
    }
    rl.rlim_cur = SOFT;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
}

/* How many files this process can still open: opened until EMFILE, then closed. */
static int openable(void)
{
    int fds[SOFT];
    int n = 0;
    while (n < SOFT && (fds[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        n++;
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return n;
}

static void create(pspawn_context_t *ctx, unsigned flags, int max_restarts)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = flags;
    attr.proxies = 1;
    attr.pool = 2;
    attr.max_restarts = max_restarts;
    CHECK(pspawn_context_create_ex(ctx, fixture("noop"), &attr) == 0);
    CHECK_EQ_INT(pspawn_context_mode(ctx), PSPAWN_MODE_ZYGOTE);
}

static void spawn_ok(pspawn_context_t *ctx)
{
    char *argv[] = {"noop", NULL};
    pid_t pid = pspawn(ctx, argv);
    CHECK(pid > 0);
    int st = wait_child(pid, 30000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* How many of the context's descriptors are below the soft limit. */
static int fds_below_limit(const pspawn_context_t *ctx)
{
    int fds[64];
    int n = pspawn_context_fds(ctx, fds, 64);
    CHECK(n > 0 && n <= 64);
    int below = 0;
    for (int i = 0; i < n; i++)
        below += fds[i] < SOFT;
    return below;
}

static void lifted_above_soft_limit(void)
{
    lower_soft_limit();
    int before = openable();
    pspawn_context_t ctx;
    create(&ctx, PSPAWN_CTX_FDS_ABOVE_LIMIT, 0);
    spawn_ok(&ctx);
    CHECK_EQ_INT(fds_below_limit(&ctx), 0);
    CHECK_EQ_INT(openable(), before);
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    CHECK_EQ_INT((int)rl.rlim_cur, SOFT); /* put back */
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(openable(), before);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* The same measurement without the flag: the context's descriptors come out of the budget. */
static void without_the_flag_they_count(void)
{
    lower_soft_limit();
    int before = openable();
    pspawn_context_t ctx;
    create(&ctx, 0, 0);
    spawn_ok(&ctx);
    int below = fds_below_limit(&ctx);
    CHECK(below > 0);
    CHECK_EQ_INT(openable(), before - below);
    pspawn_context_destroy(&ctx);
}

static void restart_lifts_again(void)
{
    lower_soft_limit();
    int before = openable();
    pspawn_context_t ctx;
    create(&ctx, PSPAWN_CTX_FDS_ABOVE_LIMIT, 2);
    spawn_ok(&ctx);
    pid_t proxy = pspawn_context_proxy_pid(&ctx);
    CHECK(proxy > 0);
    CHECK(kill(proxy, SIGKILL) == 0);
    for (int i = 0; i < 200 && process_alive(proxy); i++)
        usleep(5000);
    spawn_ok(&ctx); /* through a new proxy */
    CHECK(pspawn_context_restarts(&ctx) == 1);
    CHECK_EQ_INT(fds_below_limit(&ctx), 0);
    CHECK_EQ_INT(openable(), before);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

static void *sleeper(void *arg)
{
    int *pipe_fds = arg;
    char c;
    while (read(pipe_fds[0], &c, 1) < 0) {
    }
    return NULL;
}

/* Another thread could start a child inside the window of the raised limit: not moved. */
static void threads_leave_them_in_place(void)
{
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    lower_soft_limit();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, sleeper, p) == 0);
    pspawn_context_t ctx;
    create(&ctx, PSPAWN_CTX_FDS_ABOVE_LIMIT, 0);
    spawn_ok(&ctx);
    CHECK(fds_below_limit(&ctx) > 0);
    pspawn_context_destroy(&ctx);
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(pthread_join(t, NULL) == 0);
    close(p[0]);
    close(p[1]);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"lifted_above_soft_limit", lifted_above_soft_limit},
        {"without_the_flag_they_count", without_the_flag_they_count},
        {"restart_lifts_again", restart_lifts_again},
        {"threads_leave_them_in_place", threads_leave_them_in_place},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
