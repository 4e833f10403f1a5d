/* spawn_probe REPORT OUTDIR: posix_spawn/posix_spawnp of the report fixture with every
 * file action and attribute flag glibc supports, and failures. Run once plainly and once
 * with libpspawn_intercept.so preloaded; compare.py compares the two runs. One line per
 * case on stdout: "case NAME rc=R status=S"; the child's JSON in OUTDIR/NAME.json. When
 * PSPAWN_DEBUG_FILE is set, "case NAME" is appended to it first, so that the log can be
 * matched to the cases. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static const char *report;
static const char *outdir;

static void mark(const char *name)
{
    const char *log = getenv("PSPAWN_DEBUG_FILE");
    if (log == NULL)
        return;
    FILE *f = fopen(log, "a");
    if (f != NULL) {
        fprintf(f, "case %s\n", name);
        fclose(f);
    }
}

static void out_arg(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "--report-out=%s/%s.json", outdir, name);
}

/* Spawns, waits, prints the line. argv[0] is the report path unless `file` is given. */
static void run(const char *name, const char *file, bool search, posix_spawn_file_actions_t *fa,
                posix_spawnattr_t *sa, const char *extra)
{
    mark(name);
    char out[4096];
    out_arg(out, sizeof(out), name);
    char *argv[] = {(char *)(file != NULL ? file : report), out, (char *)extra, NULL};
    pid_t pid = -1;
    int rc = search ? posix_spawnp(&pid, file != NULL ? file : report, fa, sa, argv, environ)
                    : posix_spawn(&pid, file != NULL ? file : report, fa, sa, argv, environ);
    int status = -1;
    if (rc == 0 && waitpid(pid, &status, 0) != pid)
        status = -2;
    printf("case %s rc=%d status=%d\n", name, rc, status);
    fflush(stdout);
}

static void with_actions(const char *name, void (*build)(posix_spawn_file_actions_t *), const char *extra)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    build(&fa);
    run(name, NULL, false, &fa, NULL, extra);
    posix_spawn_file_actions_destroy(&fa);
}

static void with_flags(const char *name, short flags, void (*set)(posix_spawnattr_t *))
{
    posix_spawnattr_t sa;
    posix_spawnattr_init(&sa);
    posix_spawnattr_setflags(&sa, flags);
    if (set != NULL)
        set(&sa);
    run(name, NULL, false, NULL, &sa, NULL);
    posix_spawnattr_destroy(&sa);
}

static void dup_to_5(posix_spawn_file_actions_t *fa) { posix_spawn_file_actions_adddup2(fa, 2, 5); }
static void close_0(posix_spawn_file_actions_t *fa) { posix_spawn_file_actions_addclose(fa, 0); }
static void open_null_0(posix_spawn_file_actions_t *fa)
{
    posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(fa, 9, "/dev/null", O_WRONLY | O_APPEND, 0);
}

static void chdir_tmp(posix_spawn_file_actions_t *fa)
{
    posix_spawn_file_actions_addchdir_np(fa, "/tmp");
    posix_spawn_file_actions_addopen(fa, 6, ".", O_RDONLY | O_DIRECTORY, 0);
}
static int dir_fd = -1;
static void fchdir_root(posix_spawn_file_actions_t *fa) { posix_spawn_file_actions_addfchdir_np(fa, dir_fd); }
static void closefrom_3(posix_spawn_file_actions_t *fa) { posix_spawn_file_actions_addclosefrom_np(fa, 3); }
static void dup_self_cloexec(posix_spawn_file_actions_t *fa) { posix_spawn_file_actions_adddup2(fa, 8, 8); }
static void open_missing(posix_spawn_file_actions_t *fa)
{
    posix_spawn_file_actions_addopen(fa, 3, "/nonexistent/pspawn-probe", O_RDONLY, 0);
}
static void dup_closed(posix_spawn_file_actions_t *fa) { posix_spawn_file_actions_adddup2(fa, 200, 4); }
static void chdir_missing(posix_spawn_file_actions_t *fa) { posix_spawn_file_actions_addchdir_np(fa, "/nonexistent"); }

static void mask_usr1(posix_spawnattr_t *sa)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    posix_spawnattr_setsigmask(sa, &set);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    posix_spawnattr_setsigdefault(sa, &set);
}

static void *thread_spawns(void *arg)
{
    (void)arg;
    long failures = 0;
    for (int i = 0; i < 50; i++) {
        char *argv[] = {(char *)report, "--report-out=/dev/null", "--report-exit=7", NULL};
        pid_t pid;
        int status = 0;
        if (posix_spawn(&pid, report, NULL, NULL, argv, environ) != 0 || waitpid(pid, &status, 0) != pid ||
            !WIFEXITED(status) || WEXITSTATUS(status) != 7)
            failures++;
    }
    return (void *)failures;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    report = argv[1];
    outdir = argv[2];
    signal(SIGPIPE, SIG_IGN);
    /* fd 7 inherited, fd 8 close-on-exec: the child must see 7 and not 8. */
    int a = open("/dev/null", O_RDONLY), b = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (dup2(a, 7) < 0 || dup2(b, 8) < 0 || fcntl(8, F_SETFD, FD_CLOEXEC) < 0)
        return 3;
    close(a);
    close(b);
    for (int i = 0; i < 4; i++) /* past the interceptor's threshold, whatever it is */
        run("warmup", NULL, false, NULL, NULL, NULL);
    run("plain", NULL, false, NULL, NULL, NULL);
    run("exit3", NULL, false, NULL, NULL, "--report-exit=3");
    run("signal15", NULL, false, NULL, NULL, "--report-signal=15");
    with_actions("dup2_to_5", dup_to_5, NULL);
    with_actions("close_0", close_0, NULL);
    with_actions("open_null", open_null_0, NULL);
    with_actions("chdir_tmp", chdir_tmp, NULL);
    dir_fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    with_actions("fchdir_root", fchdir_root, NULL);
    with_actions("closefrom_3", closefrom_3, NULL);
    with_actions("dup2_self_clears_cloexec", dup_self_cloexec, NULL);
    with_actions("open_missing", open_missing, NULL);
    with_actions("dup2_closed", dup_closed, NULL);
    with_actions("chdir_missing", chdir_missing, NULL);
    with_flags("setpgroup", POSIX_SPAWN_SETPGROUP, NULL);
    with_flags("setsid", POSIX_SPAWN_SETSID, NULL);
    with_flags("resetids", POSIX_SPAWN_RESETIDS, NULL);
    with_flags("usevfork", POSIX_SPAWN_USEVFORK, NULL);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    with_flags("sigmask_sigdef", POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF, mask_usr1);
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &blocked, NULL);
    run("inherited_mask_and_ignored", NULL, false, NULL, NULL, NULL);
    pthread_sigmask(SIG_UNBLOCK, &blocked, NULL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);
    umask(077);
    run("umask_077", NULL, false, NULL, NULL, NULL);
    umask(022);
    if (chdir("/") != 0)
        return 3;
    run("caller_chdir", NULL, false, NULL, NULL, NULL);
    {
        char dir[4096];
        snprintf(dir, sizeof(dir), "/nonexistent:%.*s", (int)(strrchr(report, '/') - report), report);
        setenv("PATH", dir, 1);
        run("spawnp_path", "report", true, NULL, NULL, NULL);
        run("spawnp_missing", "pspawn-no-such-program", true, NULL, NULL, NULL);
    }
    run("missing_file", "/nonexistent/report", false, NULL, NULL, NULL);
    run("directory", "/tmp", false, NULL, NULL, NULL);
    /* Many launches, mixed exit codes, then from four threads at once. */
    long bad = 0;
    for (int i = 0; i < 200; i++) {
        char code[32];
        snprintf(code, sizeof(code), "--report-exit=%d", i % 5);
        char *av[] = {(char *)report, "--report-out=/dev/null", code, NULL};
        pid_t pid;
        int status = 0;
        if (posix_spawn(&pid, report, NULL, NULL, av, environ) != 0 || waitpid(pid, &status, 0) != pid ||
            !WIFEXITED(status) || WEXITSTATUS(status) != i % 5)
            bad++;
    }
    printf("case loop200 bad=%ld\n", bad);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, thread_spawns, NULL);
    bad = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (long)r;
    }
    printf("case threads4x50 bad=%ld\n", bad);
    return 0;
}
