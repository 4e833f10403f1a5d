/* Relay mode: the proxy stays the parent and relays exit statuses, for launchers that
 * reap every child (pid 1) or ignore SIGCHLD. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

static pspawn_context_t open_relay(const char *name, unsigned flags)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = flags;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture(name), &attr) == 0);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_RELAY);
    return ctx;
}

static void expect_statuses(pspawn_context_t *ctx)
{
    char *argv[][4] = {
        {"report", "--report-exit=0", "--report-out=/dev/null", NULL},
        {"report", "--report-exit=42", "--report-out=/dev/null", NULL},
        {"report", "--report-signal=15", "--report-out=/dev/null", NULL},
        {"report", "--report-exit=255", "--report-sleep-ms=200", NULL},
    };
    for (int i = 0; i < 4; i++) {
        pid_t pid = pspawn(ctx, argv[i]);
        CHECK(pid > 0);
        int st = -1;
        CHECK(pspawn_waitpid(ctx, pid, &st, 0) == pid);
        if (i == 2) {
            CHECK(WIFSIGNALED(st) && WTERMSIG(st) == 15);
        } else {
            CHECK(WIFEXITED(st));
            CHECK_EQ_INT(WEXITSTATUS(st), i == 0 ? 0 : i == 1 ? 42 : 255);
        }
        errno = 0;
        CHECK(pspawn_waitpid(ctx, pid, &st, WNOHANG) == -1 && errno == ECHILD); /* once only */
    }
}

static void forced_relay_statuses(void)
{
    pspawn_context_t ctx = open_relay("report", PSPAWN_CTX_RELAY);
    expect_statuses(&ctx);
    /* Not our children: the proxy is their parent. */
    char *argv[] = {"report", "--report-sleep-ms=300", "--report-out=/dev/null", NULL};
    pid_t pid = pspawn(&ctx, argv);
    CHECK(pid > 0);
    errno = 0;
    CHECK(waitpid(pid, NULL, WNOHANG) == -1 && errno == ECHILD);
    CHECK_EQ_INT(pspawn_waitpid(&ctx, pid, NULL, WNOHANG), 0);
    int st;
    CHECK(pspawn_waitpid(&ctx, pid, &st, 0) == pid && WIFEXITED(st));
    pspawn_context_destroy(&ctx);
}

static void relay_when_sigchld_ignored(void)
{
    CHECK(signal(SIGCHLD, SIG_IGN) != SIG_ERR);
    pspawn_context_t ctx = open_relay("report", 0);
    expect_statuses(&ctx);
    pspawn_context_destroy(&ctx);
    signal(SIGCHLD, SIG_DFL);
}

static void relay_reaps_consumed(void)
{
    pspawn_context_t ctx = open_relay("noop", PSPAWN_CTX_RELAY);
    pid_t pids[50];
    char *argv[] = {"noop", NULL};
    CHECK_EQ_INT(pspawn_n(pids, &ctx, 50, argv), 50);
    for (int i = 0; i < 50; i++) {
        int st;
        CHECK(pspawn_waitpid(&ctx, pids[i], &st, 0) == pids[i]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    /* The proxy reaps what we consumed: no zombie is left behind for long. */
    for (int i = 0; i < 50; i++) {
        int tries = 0;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d", (int)pids[i]);
        while (access(path, F_OK) == 0 && tries++ < 200)
            usleep(10000);
        CHECK(access(path, F_OK) != 0);
    }
    pspawn_context_destroy(&ctx);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"forced_relay_statuses", forced_relay_statuses},
        {"relay_when_sigchld_ignored", relay_when_sigchld_ignored},
        {"relay_reaps_consumed", relay_reaps_consumed},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
