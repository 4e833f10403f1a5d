/* Reliability of the C core: a proxy killed in mid-batch, a replaced executable, a soak,
 * concurrency under a watchdog, bad input. (Forged requests: test_hardening.c.) */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

static pspawn_context_t batch_ctx;
static pid_t batch_pids[500];
static int batch_errors[500];
static int batch_started;

static void *run_batch(void *arg)
{
    (void)arg;
    char *argv[] = {"report", "--report-sleep-ms=200", "--report-out=/dev/null", NULL};
    batch_started = pspawn_ne(batch_pids, batch_errors, &batch_ctx, 500, argv, NULL);
    return NULL;
}

static void proxy_killed_mid_batch(void)
{
    CHECK(pspawn_context_create(&batch_ctx, fixture("report"), -1) == 0);
    pid_t proxy = pspawn_context_proxy_pid(&batch_ctx);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, run_batch, NULL) == 0);
    usleep(30000);
    CHECK(kill(proxy, SIGKILL) == 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(pthread_join(t, NULL) == 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(t1.tv_sec - t0.tv_sec < 3); /* prompt */
    int started = 0, failed = 0;
    for (int i = 0; i < 500; i++) {
        if (batch_pids[i] > 0) {
            CHECK_EQ_INT(batch_errors[i], 0);
            int st = wait_child(batch_pids[i], 10000); /* still ours, still waitable */
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
            started++;
        } else {
            CHECK_EQ_INT(batch_errors[i], EPIPE);
            failed++;
        }
    }
    CHECK_EQ_INT(started, batch_started < 0 ? 0 : batch_started);
    CHECK_EQ_INT(started + failed, 500);
    fprintf(stderr, "proxy killed mid-batch: %d started, %d failed with EPIPE\n", started, failed);
    pspawn_context_destroy(&batch_ctx);
    /* No child the proxy forked went unreported: none is left unreaped. */
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* The proxy runs the image it loaded: deleting or replacing the file does not change
 * what children run until the context is re-created. */
static void executable_replaced(void)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/target", temp_dir());
    copy_file(fixture("report"), path, 0755);
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, path, -1) == 0);
    CHECK(unlink(path) == 0);
    char *argv[] = {"target", "--report-exit=5", "--report-out=/dev/null", NULL};
    pid_t pid = pspawn(&ctx, argv);
    CHECK(pid > 0);
    int st = wait_child(pid, 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 5); /* report still ran */
    copy_file(fixture("noop"), path, 0755);
    pid = pspawn(&ctx, argv);
    CHECK(pid > 0);
    st = wait_child(pid, 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 5); /* still report, not noop */
    pspawn_context_destroy(&ctx);
    CHECK(pspawn_context_create(&ctx, path, -1) == 0);
    pid = pspawn(&ctx, argv);
    CHECK(pid > 0);
    st = wait_child(pid, 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0); /* now noop */
    pspawn_context_destroy(&ctx);
}

/* Every pid reaped exactly once with its own status; the launcher's descriptors,
 * threads and memory and the proxy's memory flat. PSPAWN_SOAK sets the count. */
static void soak(void)
{
    const char *env = getenv("PSPAWN_SOAK");
    int total = env ? atoi(env) : 10000;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, fixture("report"), -1) == 0);
    pid_t proxy = pspawn_context_proxy_pid(&ctx);
    int fds0 = count_open_fds();
    long threads0 = proc_status_field(getpid(), "Threads:");
    long rss0 = 0, proxy_rss0 = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    enum { BATCH = 250 };
    int done = 0;
    for (int round = 0; done < total; round++) {
        char opt[32];
        int code = round % 256;
        snprintf(opt, sizeof(opt), "--report-exit=%d", code);
        char *argv[] = {"report", opt, "--report-out=/dev/null", NULL};
        pid_t pids[BATCH];
        int n = total - done < BATCH ? total - done : BATCH;
        CHECK_EQ_INT(pspawn_n(pids, &ctx, n, argv), n);
        for (int i = 0; i < n; i++) {
            int st;
            CHECK(waitpid(pids[i], &st, 0) == pids[i]);
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == code);
            errno = 0;
            CHECK(waitpid(pids[i], &st, WNOHANG) == -1 && errno == ECHILD); /* exactly once */
        }
        done += n;
        if (round == 3) {
            rss0 = proc_status_field(getpid(), "VmRSS:");
            proxy_rss0 = proc_status_field(proxy, "VmRSS:");
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long rss1 = proc_status_field(getpid(), "VmRSS:"), proxy_rss1 = proc_status_field(proxy, "VmRSS:");
    fprintf(stderr,
            "soak: %d spawns in %.1f s; fds %d -> %d; threads %ld -> %ld; launcher RSS %ld -> %ld kB; "
            "proxy RSS %ld -> %ld kB\n",
            total, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, fds0,
            count_open_fds(), threads0, proc_status_field(getpid(), "Threads:"), rss0, rss1, proxy_rss0, proxy_rss1);
    CHECK_EQ_INT(count_open_fds(), fds0);
    CHECK_EQ_INT(proc_status_field(getpid(), "Threads:"), threads0);
#ifndef __SANITIZE_ADDRESS__ /* ASan's quarantine keeps freed memory resident */
    CHECK(rss1 - rss0 < 2048);
#endif
    CHECK(proxy_rss1 - proxy_rss0 < 1024);
    CHECK_EQ_INT(count_zombie_children(), 0);
    pspawn_context_destroy(&ctx);
}

static pspawn_context_t contexts[4];
static _Atomic int spawned_total, failed_total;

static void *spawn_and_wait(void *arg)
{
    pspawn_context_t *ctx = arg;
    char *argv[] = {"report", "--report-exit=7", "--report-out=/dev/null", NULL};
    for (int i = 0; i < 40; i++) {
        pid_t pids[3];
        int errors[3];
        int n = pspawn_ne(pids, errors, ctx, 3, argv, NULL);
        for (int k = 0; k < 3; k++) {
            if (pids[k] > 0) {
                int st;
                CHECK(waitpid(pids[k], &st, 0) == pids[k]);
                CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7);
                spawned_total++;
            } else {
                CHECK(errors[k] != 0);
                failed_total++;
            }
        }
        (void)n;
    }
    return NULL;
}

/* 8 threads on one context and 4 contexts at once, under a watchdog: a deadlock fails
 * the test (SIGALRM) instead of hanging it. */
static void concurrency_watchdog(void)
{
    alarm(120);
    for (int c = 0; c < 4; c++)
        CHECK(pspawn_context_create(&contexts[c], fixture("report"), -1) == 0);
    pthread_t threads[16];
    for (int i = 0; i < 8; i++)
        CHECK(pthread_create(&threads[i], NULL, spawn_and_wait, &contexts[0]) == 0);
    for (int i = 8; i < 16; i++)
        CHECK(pthread_create(&threads[i], NULL, spawn_and_wait, &contexts[1 + i % 3]) == 0);
    for (int i = 0; i < 16; i++)
        CHECK(pthread_join(threads[i], NULL) == 0);
    alarm(0);
    CHECK_EQ_INT(spawned_total + failed_total, 16 * 40 * 3);
    CHECK_EQ_INT(failed_total, 0);
    for (int c = 0; c < 4; c++)
        pspawn_context_destroy(&contexts[c]);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* The report fixture must never rename over a path that is not a regular file: as root
 * that replaced /dev/null with a regular file on every machine that ran these tests. */
static void report_out_keeps_special_files(void)
{
    char fifo[4200], option[4300];
    snprintf(fifo, sizeof(fifo), "%s/out.fifo", temp_dir());
    CHECK(mkfifo(fifo, 0600) == 0);
    snprintf(option, sizeof(option), "--report-out=%s", fifo);
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, fixture("report"), -1) == 0);
    char *argv[] = {"report", option, NULL};
    pid_t pid = pspawn(&ctx, argv);
    CHECK(pid > 0);
    int fd = open(fifo, O_RDONLY | O_CLOEXEC); /* blocks until the child opens it */
    CHECK(fd >= 0);
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    CHECK(n > 0);
    buf[n] = '\0';
    CHECK(strstr(buf, "\"argv\"") != NULL);
    int st = wait_child(pid, 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct stat sb;
    CHECK(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode));
    pspawn_context_destroy(&ctx);
}

static void bad_input(void)
{
    pspawn_context_t ctx;
    char *long_path = malloc(PATH_MAX + 10);
    memset(long_path, 'a', PATH_MAX + 9);
    long_path[0] = '/';
    long_path[PATH_MAX + 9] = '\0';
    errno = 0;
    CHECK(pspawn_context_create(&ctx, long_path, -1) == -1 && errno == ENAMETOOLONG);
    free(long_path);
    /* Long but made of missing directories: still "too long", not "missing". */
    char *deep = malloc(PATH_MAX + 300);
    size_t at = 0;
    while (at < PATH_MAX + 50) {
        deep[at++] = '/';
        memset(deep + at, 'd', 200);
        at += 200;
    }
    deep[at] = '\0';
    errno = 0;
    CHECK(pspawn_context_create(&ctx, deep, -1) == -1 && errno == ENAMETOOLONG);
    free(deep);
    char file_as_dir[4200];
    snprintf(file_as_dir, sizeof(file_as_dir), "%s/", fixture("noop"));
    CHECK(pspawn_context_create(&ctx, file_as_dir, -1) == -1 && errno == ENOENT);

    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.buffer_size = 1024; /* below the minimum */
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == -1 && errno == EINVAL);
    pspawn_context_attr_init(&attr);
    attr.flags = 0x80;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == -1 && errno == EINVAL);
    pspawn_context_attr_init(&attr);
    attr.size = 8; /* an older, smaller struct than this library knows */
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == -1 && errno == EINVAL);

    /* Beyond ARG_MAX, even with a buffer big enough. */
    pspawn_context_attr_init(&attr);
    attr.buffer_size = 64u << 20;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == 0);
    size_t big = (size_t)sysconf(_SC_ARG_MAX) + 1;
    char *arg = malloc(big + 1);
    memset(arg, 'q', big);
    arg[big] = '\0';
    char *argv[] = {"noop", arg, NULL};
    CHECK(pspawn(&ctx, argv) == -1 && errno == E2BIG);
    free(arg);
    char *ok[] = {"noop", NULL};
    pid_t pid = pspawn(&ctx, ok);
    CHECK(pid > 0 && WIFEXITED(wait_child(pid, 10000)));
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"proxy_killed_mid_batch", proxy_killed_mid_batch},
        {"executable_replaced", executable_replaced},
        {"soak", soak},
        {"concurrency_watchdog", concurrency_watchdog},
        {"bad_input", bad_input},
        {"report_out_keeps_special_files", report_out_keeps_special_files},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
