/* pool_floor: the latency floor of any warm pool of pre-forked children on this machine,
 * without PSpawn. Preloaded into a target, e.g.
 *
 *   LD_BIND_NOW=1 LD_PRELOAD=artifacts/native/lib/libpool_floor.so artifacts/native/bin/pynamic100
 *
 * it takes the target's place right before main, where PSpawn's zygote is frozen (loaded,
 * relocated, constructors run), and measures, one sample of each in turn:
 *
 *   posix_spawn     posix_spawn of the target itself (without the preload), then waitpid;
 *   parked _exit    a child forked ahead (not timed) waits in read() on an eventfd: the
 *                   eventfd written, the child calls _exit(0) at once, waitpid returns;
 *   parked main     the same child runs the target's main and exit()s.
 *
 * "parked main" is what a claimed pool child must do at the least (a wake-up, main, the
 * exit of a process with the target's mappings, the reap), with no set-up at all;
 * "parked _exit" leaves out main too. POOL_FLOOR_N samples (default 200). Prints medians
 * and their ratios to posix_spawn. */
#include <errno.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "floor.h"


static void reap(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

/* Whether the child sleeps (state S in /proc/<pid>/stat): parked in its read. */
static int sleeping(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    char *end = strrchr(buf, ')');
    return end != NULL && end[1] == ' ' && end[2] == 'S';
}

/* One parked child, woken and reaped; run_main: it runs main first. Returns microseconds. */
static double parked_sample(int run_main, int argc, char **argv, char **envp)
{
    int efd = eventfd(0, EFD_CLOEXEC);
    if (efd < 0)
        _exit(2);
    pid_t pid = fork();
    if (pid < 0)
        _exit(2);
    if (pid == 0) {
        uint64_t value;
        if (read(efd, &value, sizeof(value)) != (ssize_t)sizeof(value))
            _exit(2);
        if (!run_main)
            _exit(0);
        exit(psb_target_main(argc, argv, envp));
    }
    /* Spin (an idle CPU would wake slowly) until the child is parked, and a little more. */
    for (int spins = 0; spins < 100000 && !(spins > 20 && sleeping(pid)); spins++) {
    }
    uint64_t one = 1;
    double t0 = psb_now_us();
    if (write(efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
        _exit(2);
    reap(pid);
    double t = psb_now_us() - t0;
    close(efd);
    return t;
}

static double spawn_sample(char **argv, char **envp)
{
    pid_t pid;
    double t0 = psb_now_us();
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, envp) != 0)
        _exit(2);
    reap(pid);
    return psb_now_us() - t0;
}

static int floor_main(int argc, char **argv, char **envp)
{
    (void)envp;
    unsetenv("LD_PRELOAD");
    const char *count = getenv("POOL_FLOOR_N");
    int n = count != NULL && atoi(count) > 0 ? atoi(count) : 200;
    double *spawned = calloc((size_t)n, sizeof(double));
    double *exited = calloc((size_t)n, sizeof(double));
    double *ran = calloc((size_t)n, sizeof(double));
    if (spawned == NULL || exited == NULL || ran == NULL)
        return 2;
    char *empty[] = {NULL};
    for (int i = 0; i < n; i++) {
        spawned[i] = spawn_sample(argv, empty);
        exited[i] = parked_sample(0, argc, argv, empty);
        ran[i] = parked_sample(1, argc, argv, empty);
    }
    double s = psb_median(spawned, n), e = psb_median(exited, n), r = psb_median(ran, n);
    printf("{\"target\":\"%s\",\"n\":%d,\"posix_spawn_p50_us\":%.1f,\"parked_exit_p50_us\":%.1f,"
           "\"parked_main_p50_us\":%.1f,\"parked_exit_ratio\":%.3f,\"parked_main_ratio\":%.3f}\n",
           argv[0], n, s, e, r, e / s, r / s);
    free(spawned);
    free(exited);
    free(ran);
    return 0;
}

PSB_REPLACE_MAIN(floor_main)
