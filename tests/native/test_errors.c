/* Every way a context or a spawn can fail reports its documented errno, and a broken
 * proxy never hangs the caller. */
#include <elf.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launcher/internal.h" /* psp_check_executable: this test links executable_check.c */
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

static long marker_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* A target with its own _start is refused before any of its code runs: without the
 * check it would run during create (with the proxy's environment) and, with fallback,
 * once more than it was spawned. With fallback it runs exactly once per spawn. */
static void own_entry_point(void)
{
    char marker[4096];
    snprintf(marker, sizeof(marker), "%s/nostart.marker", temp_dir());
    CHECK(setenv("PSPAWN_NOSTART_MARKER", marker, 1) == 0);
    expect_create_error(fixture("nostart"), ENOSYS);
    usleep(100000); /* a target that did run would have written by now */
    CHECK_EQ_INT(marker_bytes(marker), -1);

    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = PSPAWN_CTX_FALLBACK;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("nostart"), &attr) == 0);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_FALLBACK);
    CHECK_EQ_INT(pspawn_context_fallback_reason(&ctx), ENOSYS);
    CHECK_EQ_INT(marker_bytes(marker), -1);
    char *argv[] = {"nostart", NULL};
    pid_t pids[3];
    CHECK_EQ_INT(pspawn_n(pids, &ctx, 3, argv), 3);
    for (int k = 0; k < 3; k++) {
        int st;
        CHECK(pspawn_waitpid(&ctx, pids[k], &st, 0) == pids[k]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_EQ_INT(marker_bytes(marker), 3);
    pid_t one = pspawn(&ctx, argv);
    CHECK(one > 0);
    int st = wait_child(one, 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ_INT(marker_bytes(marker), 4);
    pspawn_context_destroy(&ctx);
    CHECK(unsetenv("PSPAWN_NOSTART_MARKER") == 0);
}

/* A copy of a fixture without section headers (the loader never reads them). */
static const char *without_sections(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/%s.nosections", temp_dir(), name);
    copy_file(fixture(name), path, 0755);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    Elf64_Ehdr eh;
    CHECK(pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh));
    eh.e_shoff = 0;
    eh.e_shnum = 0;
    eh.e_shstrndx = SHN_UNDEF;
    CHECK(pwrite(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh));
    CHECK(close(fd) == 0);
    return path;
}

/* With section headers stripped the check reads PT_DYNAMIC (GNU and SysV hash). */
static void stripped_section_headers(void)
{
    CHECK_EQ_INT(psp_check_executable(without_sections("noop")), 0);
    CHECK_EQ_INT(psp_check_executable(without_sections("noop_sysv_hash")), 0);
    CHECK_EQ_INT(psp_check_executable(without_sections("nostart")), ENOSYS);
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, without_sections("noop_sysv_hash"), -1) == 0);
    char *argv[] = {"noop", NULL};
    pid_t pid = pspawn(&ctx, argv);
    CHECK(pid > 0);
    int st = wait_child(pid, 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    pspawn_context_destroy(&ctx);
}

static double elapsed_us(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e6 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e3;
}

/* The check, timed (the mean of `rounds` calls after a warm-up); prints the cost. */
static int timed_check(const char *path, int rounds)
{
    int err = psp_check_executable(path);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < rounds; i++)
        CHECK_EQ_INT(psp_check_executable(path), err);
    printf("check %-60s %-6s %7.1f us\n", path, err == 0 ? "ok" : strerror(err), elapsed_us(&t0) / rounds);
    return err;
}

/* Every fixture and the usual system programs still pass the check. */
static void system_binaries_pass_check(void)
{
    const char *fixtures[] = {"noop", "noop_sysv_hash", "report", "threaded_ctor", "ctor_crash", "ctor_sleep",
                              "tidcheck", "bigtext", "cow100m"};
    for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
        CHECK_EQ_INT(timed_check(fixture(fixtures[i]), 200), 0);
    CHECK_EQ_INT(timed_check(fixture("noop_static"), 200), ENOTSUP);
    CHECK_EQ_INT(timed_check(fixture("setuid_noop"), 200), EPERM);
    CHECK_EQ_INT(timed_check(fixture("nostart"), 200), ENOSYS);
    const char *system[] = {"/bin/true", "/usr/bin/env", "/bin/sh", "/usr/bin/python3", "/usr/bin/cmake",
                            "/usr/share/dotnet/dotnet", "/usr/lib/dotnet/dotnet"};
    for (size_t i = 0; i < sizeof(system) / sizeof(system[0]); i++) {
        char *real = realpath(system[i], NULL);
        if (real == NULL)
            continue; /* not installed here */
        CHECK_EQ_INT(timed_check(real, 200), 0);
        free(real);
    }
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Mutates the bytes the check reads (headers, program and section headers, dynamic
 * section, symbols, strings): whatever they say, it returns one of its errnos, quickly. */
static void hostile_elf_never_crashes_or_hangs(void)
{
    const char *seeds[] = {"noop", "nostart", "noop_sysv_hash"};
    char path[4096];
    snprintf(path, sizeof(path), "%s/hostile", temp_dir());
    double worst_us = 0;
    int outcomes[4] = {0};
    for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
        char *original = read_file(fixture(seeds[s]));
        struct stat st;
        CHECK(original != NULL && stat(fixture(seeds[s]), &st) == 0);
        size_t size = (size_t)st.st_size, span = size < 16384 ? size : 16384;
        char *bytes = malloc(size);
        CHECK(bytes != NULL);
        for (int round = 0; round < 3000; round++) {
            memcpy(bytes, original, size);
            int flips = 1 + (int)(next_random() % 6);
            for (int k = 0; k < flips; k++) {
                size_t at = next_random() % span;
                if (next_random() % 2)
                    bytes[at] = (char)next_random();
                else /* a boundary value across a whole 8-byte field */
                    memset(bytes + (at & ~(size_t)7), next_random() % 2 ? 0xff : 0x7f, 8 < size - (at & ~(size_t)7) ? 8 : 1);
            }
            size_t length = next_random() % 8 == 0 ? next_random() % size : size; /* sometimes truncated */
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0755);
            CHECK(fd >= 0 && write(fd, bytes, length) == (ssize_t)length && close(fd) == 0);
            struct timespec t0;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            int err = psp_check_executable(path);
            double us = elapsed_us(&t0);
            worst_us = us > worst_us ? us : worst_us;
            CHECK(err == 0 || err == ENOEXEC || err == ENOTSUP || err == ENOSYS);
            outcomes[err == 0 ? 0 : err == ENOEXEC ? 1 : err == ENOTSUP ? 2 : 3]++;
        }
        free(bytes);
        free(original);
    }
    /* A sparse 1 TiB file whose tables claim the whole of it: capped, not read. */
    copy_file(fixture("noop"), path, 0755);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    Elf64_Ehdr eh;
    CHECK(pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh));
    eh.e_shoff = 1ull << 39;
    eh.e_shnum = 0; /* extended numbering: section 0 holds the count */
    Elf64_Shdr sh0 = {.sh_size = ~0ull};
    CHECK(pwrite(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh));
    CHECK(pwrite(fd, &sh0, sizeof(sh0), (off_t)eh.e_shoff) == (ssize_t)sizeof(sh0));
    CHECK(ftruncate(fd, 1ll << 40) == 0);
    CHECK(close(fd) == 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_EQ_INT(psp_check_executable(path), 0); /* sections unusable: PT_DYNAMIC is read */
    CHECK(elapsed_us(&t0) < 1e6);
    /* ... and a .dynsym of 2^40 bytes in it. */
    eh.e_shnum = 1;
    Elf64_Shdr huge = {.sh_type = SHT_DYNSYM, .sh_entsize = sizeof(Elf64_Sym), .sh_size = 1ull << 39};
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pwrite(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh));
    CHECK(pwrite(fd, &huge, sizeof(huge), (off_t)eh.e_shoff) == (ssize_t)sizeof(huge) && close(fd) == 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_EQ_INT(psp_check_executable(path), 0);
    CHECK(elapsed_us(&t0) < 1e6);
    printf("9000 mutants: %d ok, %d ENOEXEC, %d ENOTSUP, %d ENOSYS; slowest check %.0f us\n", outcomes[0],
           outcomes[1], outcomes[2], outcomes[3], worst_us);
    CHECK(worst_us < 1e6);
    CHECK(unlink(path) == 0);
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
    attr.proxies = 1; /* one proxy: what happens to it is what the context sees */
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

/* Two proxies, no restarts: the killed one is taken out of rotation and the other
 * serves everything; only when both are dead is it EPIPE. */
static void proxy_killed_two_proxies(void)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.max_restarts = 0;
    attr.proxies = 2;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("report"), &attr) == 0);
    char *argv[] = {"report", "--report-sleep-ms=300", "--report-out=/dev/null", NULL};
    pid_t before = pspawn(&ctx, argv);
    CHECK(before > 0);
    pid_t proxies[2];
    CHECK_EQ_INT(pspawn_context_proxy_pids(&ctx, proxies, 2), 2);
    CHECK(kill(proxies[0], SIGKILL) == 0);
    usleep(50000);
    pid_t pids[4];
    for (int round = 0; round < 3; round++) {
        CHECK_EQ_INT(pspawn_n(pids, &ctx, 4, argv), 4);
        for (int i = 0; i < 4; i++)
            CHECK(WIFEXITED(wait_child(pids[i], 10000)));
    }
    CHECK_EQ_INT(pspawn_context_proxy_pid(&ctx), proxies[1]);
    CHECK_EQ_INT(pspawn_context_restarts(&ctx), 0);
    CHECK(kill(proxies[1], SIGKILL) == 0);
    usleep(50000);
    errno = 0;
    CHECK(pspawn(&ctx, argv) == -1);
    CHECK_EQ_INT(errno, EPIPE);
    CHECK(pspawn_n(pids, &ctx, 4, argv) == -1 && errno == EPIPE);
    CHECK_EQ_INT(pspawn_context_proxy_pid(&ctx), -1);
    CHECK(pspawn_context_ping(&ctx) == -1 && errno == EPIPE);
    int st = wait_child(before, 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* A launcher SIGKILLed: its proxy must go too. We become a subreaper so that the
 * orphaned proxy is re-parented to us and we can see it end. */
static int wait_until_killed(pspawn_context_t *ctx)
{
    (void)ctx;
    pause();
    return 0;
}

static void launcher_death_kills_proxy(void)
{
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    pid_t proxy;
    pid_t launcher = fork_launcher(fixture("noop"), wait_until_killed, &proxy);
    CHECK(process_alive(proxy));
    CHECK(kill(launcher, SIGKILL) == 0);
    CHECK(waitpid(launcher, NULL, 0) == launcher);
    int st = wait_child(proxy, 1000); /* gone within a second, re-parented to us */
    CHECK(WIFEXITED(st) || WIFSIGNALED(st));
}

static void stopped_proxy_times_out(void)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.request_timeout_ms = 500;
    attr.max_restarts = 0;
    attr.proxies = 1; /* one proxy: what happens to it is what the context sees */
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
        {"own_entry_point", own_entry_point},
        {"stripped_section_headers", stripped_section_headers},
        {"system_binaries_pass_check", system_binaries_pass_check},
        {"hostile_elf_never_crashes_or_hangs", hostile_elf_never_crashes_or_hangs},
        {"proxy_crash_at_startup", proxy_crash_at_startup},
        {"startup_timeout", startup_timeout},
        {"fallback_posix_spawn", fallback_posix_spawn},
        {"proxy_killed", proxy_killed},
        {"proxy_killed_two_proxies", proxy_killed_two_proxies},
        {"launcher_death_kills_proxy", launcher_death_kills_proxy},
        {"stopped_proxy_times_out", stopped_proxy_times_out},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
