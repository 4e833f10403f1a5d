/* wait_probe REPORT OUTDIR: a launcher that waits for *any* child, in every way libc has
 * (wait, waitpid -1 and 0, wait3, wait4, waitid P_ALL and P_PGID, with WNOWAIT, a WNOHANG
 * poll until ECHILD), after fork + exec of the report fixture (served by a zygote when
 * libpspawn_intercept.so is preloaded: the zygote's proxy is then a child of this process
 * too). Each style must reap exactly the children it started and then see ECHILD, never
 * a proxy's pid and never block for ever (an alarm ends the probe with a message). Then
 * the proxies are stopped, continued and killed while a child of ours runs: no wait may
 * report them. Run plainly and preloaded; compare.py compares the two runs' lines. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "probe.h"

#define LAUNCHES 5

static const char *report;
static const char *outdir;
static pid_t started[LAUNCHES + 1];
static int started_count;
static int bad;

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "wait_probe: a wait blocked for 20 s (a proxy?)\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(3);
}

static pid_t launch(const char *name, const char *extra)
{
    pid_t pid = fork();
    if (pid == 0) {
        char out[4096];
        snprintf(out, sizeof(out), "--report-out=%s/%s.json", outdir, name);
        execl(report, report, out, extra, (char *)NULL);
        _exit(126);
    }
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    started[started_count++] = pid;
    return pid;
}

static void launch_all(const char *style)
{
    started_count = 0;
    for (int i = 0; i < LAUNCHES; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s%d", style, i);
        launch(name, i == 1 ? "--report-exit=3" : NULL);
    }
}

/* Forgets a reaped pid; false if it was not one of ours. */
static bool ours(pid_t pid)
{
    for (int i = 0; i < started_count; i++)
        if (started[i] == pid) {
            started[i] = started[--started_count];
            return true;
        }
    return false;
}

enum style { WAIT, WAITPID_ANY, WAITPID_GROUP, WAIT3, WAIT4_GROUP, WAITID_ALL, WAITID_GROUP, WAITID_PEEK, POLL };
static const char *const names[] = {"wait", "waitpid_any", "waitpid_group", "wait3", "wait4_group",
                                    "waitid_all", "waitid_group", "waitid_peek", "poll"};

/* One wait in the given style: the pid reaped (its exit code in *code), 0 (poll: nothing
 * yet), or -1 with errno. */
static pid_t wait_one(enum style style, int *code)
{
    int status = 0;
    struct rusage usage;
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    pid_t pid = -1;
    switch (style) {
    case WAIT:
        pid = wait(&status);
        break;
    case WAITPID_ANY:
        pid = waitpid(-1, &status, 0);
        break;
    case WAITPID_GROUP:
        pid = waitpid(0, &status, 0);
        break;
    case WAIT3:
        pid = wait3(&status, 0, &usage);
        break;
    case WAIT4_GROUP:
        pid = wait4(-getpgrp(), &status, 0, &usage);
        break;
    case POLL:
        pid = waitpid(-1, &status, WNOHANG);
        break;
    case WAITID_ALL:
    case WAITID_GROUP:
    case WAITID_PEEK:
        if (waitid(style == WAITID_GROUP ? P_PGID : P_ALL, style == WAITID_GROUP ? (id_t)getpgrp() : 0, &info,
                   WEXITED | (style == WAITID_PEEK ? WNOWAIT : 0)) != 0)
            return -1;
        if (style == WAITID_PEEK && info.si_pid > 0 && waitpid(info.si_pid, &status, 0) != info.si_pid)
            return -1;
        *code = info.si_status;
        return info.si_pid;
    }
    if (pid > 0)
        *code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return pid;
}

/* Reaps in one style until ECHILD: every child we started, nothing else. */
static void reap_all(enum style style)
{
    launch_all(names[style]);
    int reaped = 0, foreign = 0, codes = 0, spins = 0;
    for (;;) {
        int code = -1;
        pid_t pid = wait_one(style, &code);
        if (pid == 0) {
            if (++spins % 100 == 0)
                usleep(1000);
            continue;
        }
        if (pid < 0)
            break;
        if (ours(pid)) {
            reaped++;
            codes += code;
        } else {
            foreign++;
        }
    }
    int err = errno;
    bool ok = reaped == LAUNCHES && foreign == 0 && err == ECHILD && codes == 3;
    bad += !ok;
    printf("%s reaped=%d foreign=%d exit_codes=%d end=%s\n", names[style], reaped, foreign, codes,
           err == ECHILD ? "ECHILD" : strerror(err));
    fflush(stdout);
}

/* Our children that are not started[]: the proxies, when preloaded. */
static int others(pid_t *list, int capacity)
{
    pid_t all[512];
    int n = list_children(all, 512), count = 0;
    for (int k = 0; k < n && count < capacity; k++) {
        bool known = false;
        for (int i = 0; i < started_count; i++)
            known |= started[i] == all[k];
        if (!known)
            list[count++] = all[k];
    }
    return count;
}

/* A child of ours (no exec) that exits with `code` 300 ms later. */
static pid_t start_sleeper(int code)
{
    pid_t pid = fork();
    if (pid == 0) {
        usleep(300 * 1000);
        _exit(code);
    }
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    started[started_count++] = pid;
    return pid;
}

/* While one child of ours runs: the proxies stop and continue (WUNTRACED | WCONTINUED
 * waits), then die (a plain wait): the waits return our child only. */
static void proxies_stop_and_die(void)
{
    started_count = 0;
    launch("warm", NULL); /* the zygote is there */
    waitpid(started[0], NULL, 0);
    started_count = 0;
    pid_t proxies[16];
    int count = others(proxies, 16);
    pid_t sleeper = start_sleeper(9);
    for (int i = 0; i < count; i++)
        kill(proxies[i], SIGSTOP);
    usleep(50 * 1000);
    for (int i = 0; i < count; i++)
        kill(proxies[i], SIGCONT);
    int status = 0;
    pid_t first = waitpid(-1, &status, WUNTRACED | WCONTINUED);
    bool first_ok = first == sleeper && WIFEXITED(status) && WEXITSTATUS(status) == 9;
    started_count = 0;
    sleeper = start_sleeper(8);
    for (int i = 0; i < count; i++)
        kill(proxies[i], SIGKILL);
    pid_t second = wait(&status);
    bool second_ok = second == sleeper && WIFEXITED(status) && WEXITSTATUS(status) == 8;
    errno = 0;
    pid_t after = waitpid(-1, NULL, WNOHANG);
    bool none = after < 0 && errno == ECHILD;
    bad += !(first_ok && second_ok && none);
    printf("proxies stopped: our child first=%d; proxies killed: our child next=%d, then ECHILD=%d\n", first_ok,
           second_ok, none);
    /* Launches after the proxies died still work (a new zygote, or the real call). */
    started_count = 0;
    launch("after", "--report-exit=4");
    int code = -1;
    pid_t pid = wait_one(WAIT, &code);
    bool ok = ours(pid) && code == 4 && wait(NULL) < 0 && errno == ECHILD;
    bad += !ok;
    printf("after the proxies died: launch reaped=%d\n", ok);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: wait_probe REPORT OUTDIR\n");
        return 2;
    }
    report = argv[1];
    outdir = argv[2];
    signal(SIGALRM, on_alarm);
    alarm(20);
    for (enum style s = WAIT; s <= POLL; s++)
        reap_all(s);
    proxies_stop_and_die();
    printf("bad=%d\n", bad);
    return bad == 0 ? 0 : 1;
}
