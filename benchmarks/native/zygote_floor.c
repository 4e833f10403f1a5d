/* zygote_floor: the throughput floor of any zygote on this machine, without PSpawn.
 * Preloaded into a target, e.g.
 *
 *   LD_BIND_NOW=1 LD_PRELOAD=artifacts/native/lib/libzygote_floor.so artifacts/native/bin/pynamic100
 *
 * it takes the target's place right before main, where PSpawn's zygote is frozen (loaded,
 * relocated, constructors run), and launches ZYGOTE_FLOOR_N instances (default 200) with
 * ZYGOTE_FLOOR_P of them running at once (default 2, as `xargs -P2` and `make -j2` do),
 * in three ways, alternating, ZYGOTE_FLOOR_ROUNDS times (default 7):
 *
 *   posix_spawn   the target itself (without the preload): what a launcher pays today;
 *   fork+main     fork() of this frozen image, the child runs the target's main and exit()s:
 *                 what any zygote must pay at the least (no launcher, no request, no set-up);
 *   fork+_exit    the same fork, the child calls _exit(0) at once (main left out too).
 *
 * ZYGOTE_FLOOR_MODES (a comma-separated subset of posix_spawn,fork_main,fork_exit) measures
 * only those. ZYGOTE_FLOOR_MERGE_TEXT=1 first merges each object's read-only areas into its
 * text as PSPAWN_CTX_MERGE_TEXT does (the proxy's own code), the floor of such a zygote. Prints JSON: the median wall time of a batch per mode (ms, null if not
 * measured) and the ratios posix_spawn / fork+main (the best speed-up a zygote can give this
 * workload here) and posix_spawn / fork+_exit. */
#include <errno.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "floor.h"
#include "proxy/proxy.h"


enum mode { SPAWN, FORK_MAIN, FORK_EXIT, MODES };

static const char *const mode_names[MODES] = {"posix_spawn", "fork_main", "fork_exit"};

static pid_t start_one(enum mode mode, char **argv, char **envp)
{
    pid_t pid;
    if (mode == SPAWN)
        return posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, envp) == 0 ? pid : -1;
    pid = fork();
    if (pid == 0) {
        if (mode == FORK_EXIT)
            _exit(0);
        exit(psb_target_main(2, argv, envp));
    }
    return pid;
}

static int reap_any(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, 0)) < 0 && errno == EINTR) {
    }
    return pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* One batch: n launches, at most p at once. Returns its wall time in ms, or -1. */
static double batch(enum mode mode, int n, int p, char **argv, char **envp)
{
    double t0 = psb_now_us();
    int started = 0, running = 0, failed = 0;
    while (started < n || running > 0) {
        if (started < n && running < p) {
            if (start_one(mode, argv, envp) < 0)
                return -1;
            started++;
            running++;
            continue;
        }
        failed |= reap_any();
        running--;
    }
    return failed ? -1 : (psb_now_us() - t0) / 1000.0;
}

static int env_number(const char *name, int fallback)
{
    const char *value = getenv(name);
    return value != NULL && atoi(value) > 0 ? atoi(value) : fallback;
}

/* Whether ZYGOTE_FLOOR_MODES (default: all) names this mode. */
static bool wanted(enum mode mode)
{
    const char *list = getenv("ZYGOTE_FLOOR_MODES");
    if (list == NULL || *list == '\0')
        return true;
    size_t len = strlen(mode_names[mode]);
    for (const char *at = list; (at = strstr(at, mode_names[mode])) != NULL; at += len)
        if ((at == list || at[-1] == ',') && (at[len] == '\0' || at[len] == ','))
            return true;
    return false;
}

static void print_ms(const char *key, double ms)
{
    if (ms < 0)
        printf(",\"%s\":null", key);
    else
        printf(",\"%s\":%.1f", key, ms);
}

static void print_ratio(const char *key, double a, double b)
{
    if (a < 0 || b <= 0)
        printf(",\"%s\":null", key);
    else
        printf(",\"%s\":%.2f", key, a / b);
}

static int floor_main(int argc, char **argv, char **envp)
{
    (void)argc;
    (void)envp;
    unsetenv("LD_PRELOAD");
    int n = env_number("ZYGOTE_FLOOR_N", 200), p = env_number("ZYGOTE_FLOOR_P", 2);
    int rounds = env_number("ZYGOTE_FLOOR_ROUNDS", 7);
    if (env_number("ZYGOTE_FLOOR_MERGE_TEXT", 0) == 1 && psp_merge_text() < 0)
        return 2;
    double *times[MODES];
    for (int m = 0; m < MODES; m++)
        if ((times[m] = calloc((size_t)rounds, sizeof(double))) == NULL)
            return 2;
    char *child_argv[] = {argv[0], "1", NULL};
    char *empty[] = {NULL};
    for (int r = 0; r < rounds; r++)
        for (int m = 0; m < MODES; m++)
            if (wanted((enum mode)m) && (times[m][r] = batch((enum mode)m, n, p, child_argv, empty)) < 0) {
                fprintf(stderr, "zygote_floor: a launch failed\n");
                return 2;
            }
    double ms[MODES];
    for (int m = 0; m < MODES; m++)
        ms[m] = wanted((enum mode)m) ? psb_median(times[m], rounds) : -1;
    printf("{\"target\":\"%s\",\"n\":%d,\"p\":%d,\"rounds\":%d", argv[0], n, p, rounds);
    for (int m = 0; m < MODES; m++) {
        char key[32];
        snprintf(key, sizeof(key), "%s_ms", mode_names[m]);
        print_ms(key, ms[m]);
    }
    print_ratio("fork_main_ratio", ms[SPAWN], ms[FORK_MAIN]);
    print_ratio("fork_exit_ratio", ms[SPAWN], ms[FORK_EXIT]);
    printf("}\n");
    for (int m = 0; m < MODES; m++)
        free(times[m]);
    return 0;
}

PSB_REPLACE_MAIN(floor_main)
