/* fork_probe REPORT OUTDIR: fork + exec of the report fixture with what launchers do
 * between the two (descriptors, working directory, umask, limits, signals, process
 * groups), and the cases the fork handoff must leave to the real exec (a new session, a
 * parent-death signal, namespaces changed by unshare() or by raw system calls, oom_score_adj, a child waiting for its parent, a child that never execs, a
 * multi-threaded launcher, SIGCHLD ignored), and launches after the zygote was killed. Run plainly and with libpspawn_intercept.so
 * preloaded; compare.py compares the two runs. One line per case on stdout; the child's
 * JSON in OUTDIR/NAME.json. Each case also checks, in both runs, what fork must keep: the
 * pid fork returned is the program's, waitpid(-1) reaps exactly it, nothing else is
 * left to reap (ECHILD: the zygote's proxy, a live child, is not the launcher's to see). "case NAME" is appended to PSPAWN_DEBUG_FILE first (see spawn_probe.c). */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/close_range.h>
#include <unistd.h>

#include "probe.h"
#include "../fixtures/sched_slice.h"

extern char **environ;

static const char *report;
static const char *outdir;
static int bad;

static void mark(const char *name)
{
    const char *log = getenv("PSPAWN_DEBUG_FILE");
    FILE *f = log != NULL ? fopen(log, "a") : NULL;
    if (f != NULL) {
        fprintf(f, "case %s\n", name);
        fclose(f);
    }
}

/* The "pid" the report fixture wrote to OUTDIR/NAME.json, or -1. */
static long reported_pid(const char *name)
{
    char path[4096], buf[65536];
    snprintf(path, sizeof(path), "%s/%s.json", outdir, name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *at = strstr(buf, "\"pid\":");
    return at != NULL ? strtol(at + 6, NULL, 10) : -1;
}

enum prep {
    PREP_NONE, PREP_DUP2, PREP_DEVNULL_STDIN, PREP_CHDIR, PREP_UMASK, PREP_RLIMIT, PREP_IGNORE, PREP_MASK,
    PREP_PGROUP, PREP_CLOSE_RANGE, PREP_CLOSE_LOOP, PREP_SETSID, PREP_PDEATHSIG, PREP_WAIT_PARENT, PREP_NO_EXEC, PREP_KILLED, PREP_MISSING,
    PREP_UNSHARE_UTS, PREP_UNSHARE_USER, PREP_OOM_ADJ, PREP_UNSHARE_LIBC, PREP_OPATH, PREP_HIGH_FD, PREP_HIGHER_FD, PREP_DUP2_64,
    PREP_SLICE_FILE, PREP_MISSING_THEN_EXEC, PREP_RAW_EXEC, PREP_FORK_INNER, PREP_VFORK_INNER, PREP_SPAWN_INNER, PREP_NICE,
};

/* This thread's slice to OUTDIR/NAME.slice (not compared by compare.py: launchers.sh
 * checks it); open and write only, for a vfork child. */
static void write_slice(const char *name)
{
    char path[4096], text[32];
    snprintf(path, sizeof(path), "%s/%s.slice", outdir, name);
    int n = snprintf(text, sizeof(text), "%lld\n", sched_slice_ns());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, (size_t)n) != n || close(fd) != 0)
        _exit(120);
}

/* The child's child: the report fixture, to OUTDIR/NAME_inner.json, by fork, vfork or
 * posix_spawn; the child exits with its status. */
static void run_inner(const char *name, enum prep prep)
{
    char out[4096];
    snprintf(out, sizeof(out), "--report-out=%s/%s_inner.json", outdir, name);
    char *args[] = {(char *)report, out, NULL};
    pid_t pid = -1;
    if (prep == PREP_SPAWN_INNER) {
        if (posix_spawn(&pid, report, NULL, NULL, args, environ) != 0)
            _exit(124);
    } else {
        pid = prep == PREP_VFORK_INNER ? vfork() : fork();
        if (pid == 0) {
            if (prep == PREP_VFORK_INNER)
                write_slice(name);
            execv(report, args);
            _exit(126);
        }
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        _exit(125);
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

/* The child's side: what a launcher does between fork and exec, then the exec. */
static void child(const char *name, enum prep prep, const char *extra, int sync_fd)
{
    char out[4096];
    snprintf(out, sizeof(out), "--report-out=%s/%s.json", outdir, name);
    struct rlimit lim = {1000, 4096};
    sigset_t set;
    char byte;
    int fd;
    switch (prep) {
    case PREP_DUP2:
        /* the number open returns differs when the interceptor holds descriptors */
        fd = open("/dev/null", O_WRONLY);
        if (fd < 0 || dup2(fd, 9) != 9 || close(fd) != 0)
            _exit(120);
        break;
    case PREP_DEVNULL_STDIN: /* xargs: close(0), open("/dev/null") */
        close(0);
        if (open("/dev/null", O_RDONLY) != 0)
            _exit(120);
        break;
    case PREP_CHDIR:
        if (chdir("/tmp") != 0)
            _exit(120);
        break;
    case PREP_UMASK:
        umask(077);
        break;
    case PREP_RLIMIT:
        setrlimit(RLIMIT_NOFILE, &lim);
        break;
    case PREP_IGNORE: /* a real-time one too: the interceptor reads all 64 */
        signal(SIGHUP, SIG_IGN);
        signal(SIGUSR2, SIG_IGN);
        signal(SIGRTMIN + 5, SIG_IGN);
        signal(SIGRTMAX, SIG_IGN);
        break;
    case PREP_MASK:
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_BLOCK, &set, NULL);
        break;
    case PREP_PGROUP:
        setpgid(0, 0);
        break;
    case PREP_CLOSE_RANGE: /* Python's close_fds=True */
        close_range(3, ~0u, 0);
        break;
    case PREP_CLOSE_LOOP: /* the traditional daemon loop */
        for (int i = 3; i < 2048; i++)
            close(i);
        break;
    case PREP_SETSID:
        setsid();
        break;
    case PREP_PDEATHSIG:
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        break;
    case PREP_WAIT_PARENT: /* blocks until the parent, after fork returned, writes */
        if (read(sync_fd, &byte, 1) != 1)
            _exit(121);
        break;
    case PREP_NO_EXEC:
        _exit(5);
    case PREP_KILLED:
        raise(SIGKILL);
        break;
    case PREP_MISSING:
        execl("/nonexistent/pspawn-missing", "missing", (char *)NULL);
        _exit(127);
    /* Raw system calls, as a launcher nobody here wrote may make them: the interceptor
     * sees them only in the state the child reaches exec with. Where the kernel refuses,
     * the child exits 122 in both runs. */
    case PREP_UNSHARE_UTS:
        if (syscall(SYS_unshare, CLONE_NEWUTS) != 0)
            _exit(122);
        break;
    case PREP_UNSHARE_USER:
        if (syscall(SYS_unshare, CLONE_NEWUSER) != 0)
            _exit(122);
        break;
    case PREP_OOM_ADJ: /* raising it needs no privilege */
        fd = open("/proc/self/oom_score_adj", O_WRONLY);
        if (fd < 0 || write(fd, "500", 3) != 3)
            _exit(122);
        close(fd);
        break;
    case PREP_UNSHARE_LIBC:
        if (unshare(CLONE_NEWUTS) != 0)
            _exit(122);
        break;
    /* Descriptors the exec'd program inherits that poll() would call closed (O_PATH), and
     * ones that grow the descriptor table past what the interceptor scans (it lists
     * /proc/self/fd then). */
    case PREP_OPATH:
        fd = open("/tmp", O_PATH | O_DIRECTORY);
        if (fd < 0 || dup2(fd, 9) != 9 || close(fd) != 0)
            _exit(120);
        break;
    case PREP_HIGH_FD:
        if (dup2(1, 200) != 200)
            _exit(120);
        break;
    case PREP_HIGHER_FD:
        if (dup2(1, 700) != 700 || dup2(1, 300) != 300)
            _exit(120);
        break;
    case PREP_DUP2_64: /* over the number the interceptor moves its handoff socket to */
        fd = open("/dev/null", O_RDONLY);
        if (fd < 0 || dup2(fd, 64) != 64 || close(fd) != 0)
            _exit(120);
        break;
    /* The scheduler slice: what the forked child runs with (OUTDIR/NAME.slice, which
     * compare.py does not compare: launchers.sh checks it), and what a program exec'd
     * after a failed exec, by a raw system call, or by the child's own child inherits
     * (the report fixture's sched_slice_ns, compared). */
    case PREP_SLICE_FILE:
        write_slice(name);
        break;
    case PREP_MISSING_THEN_EXEC:
        execl("/nonexistent/pspawn-missing", "missing", (char *)NULL);
        write_slice(name);
        break;
    case PREP_RAW_EXEC: { /* the shell waits for the parent, which writes once fork returned */
        if (dup2(sync_fd, 9) != 9)
            _exit(120);
        char *args[] = {"sh", "-c", "read x <&9; exec 9<&-; exec \"$@\"", "sh", (char *)report, out, NULL};
        syscall(SYS_execve, "/bin/sh", args, environ);
        _exit(126);
    }
    case PREP_NICE: /* at once: the interceptor sets the slice with the nice value */
        if (setpriority(PRIO_PROCESS, 0, getpriority(PRIO_PROCESS, 0) + 3) != 0)
            _exit(122);
        break;
    case PREP_FORK_INNER:
    case PREP_VFORK_INNER:
    case PREP_SPAWN_INNER:
        run_inner(name, prep);
        break;
    case PREP_NONE:
        break;
    }
    execl(report, report, out, extra, (char *)NULL);
    _exit(126);
}

/* Forks (pgroup: the parent also sets the group, as shells do), waits with waitpid(-1). */
static void run(const char *name, enum prep prep, const char *extra)
{
    mark(name);
    int sync[2];
    if (pipe2(sync, O_CLOEXEC) != 0)
        exit(1);
    pid_t pid = fork();
    if (pid == 0)
        child(name, prep, extra, sync[0]);
    if (pid < 0) {
        printf("case %s fork failed: %s\n", name, strerror(errno));
        bad++;
        return;
    }
    if (prep == PREP_PGROUP)
        setpgid(pid, pid);
    if (write(sync[1], "x", 1) != 1)
        bad++;
    close(sync[0]);
    close(sync[1]);
    int status = 0;
    pid_t reaped = waitpid(-1, &status, 0);
    long reported = reported_pid(name);
    bool pid_ok = reported < 0 || reported == pid;
    pid_t left = waitpid(-1, NULL, WNOHANG); /* the zygote's proxy is hidden (wait.c) */
    bool none_left = left < 0 && errno == ECHILD;
    if (reaped != pid || !pid_ok || !none_left)
        bad++;
    printf("case %s reaped_is_forked=%d reported_is_forked=%d none_left=%d exited=%d code=%d signaled=%d sig=%d\n",
           name, reaped == pid, pid_ok, none_left, WIFEXITED(status), WIFEXITED(status) ? WEXITSTATUS(status) : -1,
           WIFSIGNALED(status), WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    fflush(stdout);
}

/* SIGKILLs every child of this process (the zygotes: no forked child is left between
 * cases) and reaps them, as a launcher whose proxies were killed by someone else would see. */
static void kill_zygotes(void)
{
    pid_t zygotes[512];
    int n = list_children(zygotes, 512);
    for (int k = 0; k < n; k++)
        if (kill(zygotes[k], SIGKILL) == 0)
            waitpid(zygotes[k], NULL, 0);
}

static void *idle(void *arg)
{
    pause();
    return arg;
}

static volatile sig_atomic_t sigchld_seen;

static void on_sigchld(int sig)
{
    (void)sig;
    sigchld_seen++;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: fork_probe REPORT OUTDIR\n");
        return 2;
    }
    report = argv[1];
    outdir = argv[2];
    struct sigaction sa = {0};
    sa.sa_handler = on_sigchld;
    sigaction(SIGCHLD, &sa, NULL);
    for (int i = 0; i < 3; i++)
        run("warmup", PREP_NONE, NULL);
    run("plain", PREP_NONE, NULL);
    run("exit7", PREP_NONE, "--report-exit=7");
    run("signal15", PREP_NONE, "--report-signal=15");
    run("dup2", PREP_DUP2, NULL);
    run("devnull_stdin", PREP_DEVNULL_STDIN, NULL);
    run("chdir", PREP_CHDIR, NULL);
    run("umask", PREP_UMASK, NULL);
    run("rlimit", PREP_RLIMIT, NULL);
    run("ignore", PREP_IGNORE, NULL);
    run("mask", PREP_MASK, NULL);
    run("pgroup", PREP_PGROUP, NULL);
    run("close_range", PREP_CLOSE_RANGE, NULL);
    run("close_loop", PREP_CLOSE_LOOP, NULL);
    run("setsid", PREP_SETSID, NULL);
    run("pdeathsig", PREP_PDEATHSIG, NULL);
    run("wait_parent", PREP_WAIT_PARENT, NULL);
    run("no_exec", PREP_NO_EXEC, NULL);
    run("killed", PREP_KILLED, NULL);
    run("missing", PREP_MISSING, NULL);
    run("unshare_uts", PREP_UNSHARE_UTS, NULL);
    run("unshare_user", PREP_UNSHARE_USER, NULL);
    run("oom_adj", PREP_OOM_ADJ, NULL);
    run("unshare_libc", PREP_UNSHARE_LIBC, NULL);
    run("opath", PREP_OPATH, NULL);
    run("high_fd", PREP_HIGH_FD, NULL);
    run("higher_fd", PREP_HIGHER_FD, NULL);
    run("dup2_64", PREP_DUP2_64, NULL);
    long long launcher_slice = sched_slice_ns();
    run("slice_file", PREP_SLICE_FILE, NULL);
    run("missing_then_exec", PREP_MISSING_THEN_EXEC, NULL);
    run("raw_exec", PREP_RAW_EXEC, NULL);
    run("fork_inner", PREP_FORK_INNER, NULL);
    run("vfork_inner", PREP_VFORK_INNER, NULL);
    run("spawn_inner", PREP_SPAWN_INNER, NULL);
    for (int i = 0; i < 3; i++)
        run("nice", PREP_NICE, NULL);
    printf("launcher_slice_kept=%d\n", sched_slice_ns() == launcher_slice);
    kill_zygotes();
    for (int i = 0; i < 4; i++)
        run("after_zygote_killed", PREP_NONE, NULL);
    printf("sigchld_delivered=%d\n", sigchld_seen > 0);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGCHLD, &sa, NULL);
    mark("sigchld_ignored");
    pid_t pid = fork();
    if (pid == 0)
        child("sigchld_ignored", PREP_NONE, NULL, -1);
    int st;
    pid_t w = waitpid(pid, &st, 0); /* auto-reaped: ECHILD once it is gone */
    printf("case sigchld_ignored waited=%d echild=%d\n", w == pid, w < 0 && errno == ECHILD);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    pthread_t thread;
    if (pthread_create(&thread, NULL, idle, NULL) != 0)
        return 1;
    run("threaded", PREP_NONE, NULL);
    printf("bad=%d\n", bad);
    return 0;
}
