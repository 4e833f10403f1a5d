/* kbench: spawn throughput of pspawn, ipspawn, afork and posix_spawn, and of libpspawn's
 * pspawn_vector with the kernel backend (lib_kernel), its proxies (lib_zygote) and its exec
 * backend (lib_exec), in the guest.
 * Usage: kbench [-n N] [-r ROUNDS] [-m METHOD,...] [-p] TARGET
 * One measurement spawns N instances of TARGET (empty environment, argv {TARGET}) and reaps
 * them all; throughput = N / (first spawn call .. last instance reaped); launch rate =
 * N / (first spawn call .. last spawn call returned: for ipspawn the one call, for pspawn
 * the call that waited for every exec, for afork/posix_spawn the loop). Each round runs
 * every method once, the order rotated between rounds; medians (min-max) over rounds.
 * -p pins instance i to CPU i % ncpus (pspawn/ipspawn masks; sched_setaffinity in the
 * afork child; posix_spawn cannot pin, so it is left unpinned). */
#include <errno.h>
#include <sched.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kbench_lib.h"
#include "pspawn_sys.h"

#define MAX_ROUNDS 31
#define MAX_METHODS 7

static struct pspawn_sys sys;
static const char *target;
static unsigned int n = 100;
static bool pin;
static int ncpus;
static pid_t *pids;
static cpu_set_t *masks;
static char *const empty_env[] = {NULL};
static double launched_at;      /* when the last spawn call returned */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "kbench: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Reaps every pid; returns how many did not exit 0. */
static unsigned int reap(const pid_t *list, unsigned int count)
{
    unsigned int bad = 0;
    int status;

    for (unsigned int i = 0; i < count; i++) {
        if (list[i] <= 0) {
            bad++;
            continue;
        }
        if (waitpid(list[i], &status, 0) != list[i])
            die("waitpid");
        bad += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    return bad;
}

static void kernel_args(struct pspawn_args *a, const char *const *argv)
{
    memset(a, 0, sizeof *a);
    a->filename = (uint64_t)(uintptr_t)target;
    a->argv = (uint64_t)(uintptr_t)argv;
    a->flags = PSPAWN_SHARED_ARGV;
    a->nspawns = n;
    if (pin) {
        a->cpumasks = (uint64_t)(uintptr_t)masks;
        a->cpumask_size = sizeof(cpu_set_t);
    }
}

static unsigned int run_pspawn(void)
{
    const char *argv[] = {target, NULL};
    struct pspawn_args a;

    kernel_args(&a, argv);
    a.pids = (uint64_t)(uintptr_t)pids;
    if (pspawn_sys_pspawn(&sys, &a, sizeof a) < 0)
        die("pspawn");
    launched_at = now_s();
    return reap(pids, n);
}

static unsigned int run_ipspawn(void)
{
    const char *argv[] = {target, NULL};
    struct pspawn_args a;
    ssize_t got;
    int fd;

    kernel_args(&a, argv);
    fd = (int)pspawn_sys_ipspawn(&sys, &a, sizeof a);
    if (fd < 0)
        die("ipspawn");
    launched_at = now_s();
    got = read(fd, pids, n * sizeof(pspawn_result_t));
    if (got != (ssize_t)(n * sizeof(pspawn_result_t)))
        die("read session");
    if (close(fd) != 0)
        die("close session");
    return reap(pids, n);
}

static unsigned int run_afork(void)
{
    char *argv[] = {(char *)target, NULL};

    for (unsigned int i = 0; i < n; i++) {
        pid_t pid = fork();

        if (pid < 0)
            die("fork");
        if (pid == 0) {
            if (pin && sched_setaffinity(0, sizeof(cpu_set_t), &masks[i]) != 0)
                _exit(126);
            execve(target, argv, empty_env);
            _exit(127);
        }
        pids[i] = pid;
    }
    launched_at = now_s();
    return reap(pids, n);
}

static unsigned int run_posix_spawn(void)
{
    char *argv[] = {(char *)target, NULL};

    for (unsigned int i = 0; i < n; i++) {
        int err = posix_spawn(&pids[i], target, NULL, NULL, argv, empty_env);

        if (err) {
            errno = err;
            die("posix_spawn");
        }
    }
    launched_at = now_s();
    return reap(pids, n);
}

static unsigned int run_lib(int which)
{
    int started = kbench_lib_spawn(which, target, n, pin ? masks : NULL, pids);

    if (started < 0)
        die("pspawn_vector");
    launched_at = now_s();
    return reap(pids, n);
}

static unsigned int run_lib_kernel(void)
{
    return run_lib(KBENCH_LIB_KERNEL);
}

static unsigned int run_lib_zygote(void)
{
    return run_lib(KBENCH_LIB_ZYGOTE);
}

static unsigned int run_lib_exec(void)
{
    return run_lib(KBENCH_LIB_EXEC);
}

struct method {
    const char *name;
    unsigned int (*run)(void);
    bool kernel;
    double rate[MAX_ROUNDS];
    double launch[MAX_ROUNDS];
};

static struct method all_methods[MAX_METHODS] = {
    {"pspawn", run_pspawn, true, {0}, {0}},
    {"ipspawn", run_ipspawn, true, {0}, {0}},
    {"afork", run_afork, false, {0}, {0}},
    {"posix_spawn", run_posix_spawn, false, {0}, {0}},
    {"lib_kernel", run_lib_kernel, true, {0}, {0}},
    {"lib_zygote", run_lib_zygote, false, {0}, {0}},
    {"lib_exec", run_lib_exec, false, {0}, {0}},
};

/* Whether name is one of the comma-separated words of list. */
static bool listed(const char *list, const char *name)
{
    size_t len = strlen(name);

    for (const char *p = list; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        if (strncmp(p, name, len) == 0 && (p[len] == ',' || p[len] == '\0'))
            return true;
    }
    return false;
}

static int compare(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;

    return (a > b) - (a < b);
}

static double median(const double *v, int count, double *lo, double *hi)
{
    double s[MAX_ROUNDS];

    memcpy(s, v, (size_t)count * sizeof *s);
    qsort(s, (size_t)count, sizeof *s, compare);
    *lo = s[0];
    *hi = s[count - 1];
    return count % 2 ? s[count / 2] : (s[count / 2 - 1] + s[count / 2]) / 2;
}

int main(int argc, char **argv)
{
    struct method *methods[MAX_METHODS];
    const char *list = "pspawn,ipspawn,afork,posix_spawn,lib_kernel,lib_zygote,lib_exec";
    double med[MAX_METHODS], lmed[MAX_METHODS], lo, hi, afork = 0, afork_launch = 0;
    int rounds = 5, nm = 0, opt;

    while ((opt = getopt(argc, argv, "n:r:m:p")) != -1) {
        switch (opt) {
        case 'n': n = (unsigned int)atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 'm': list = optarg; break;
        case 'p': pin = true; break;
        default: return 2;
        }
    }
    if (optind != argc - 1 || n < 1 || n > PSPAWN_MAX_SPAWNS || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: kbench [-n N] [-r ROUNDS] [-m METHODS] [-p] TARGET\n");
        return 2;
    }
    target = argv[optind];
    ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    pids = calloc(n, sizeof *pids);
    masks = calloc(n, sizeof *masks);
    if (!pids || !masks)
        die("calloc");
    for (unsigned int i = 0; i < n; i++)
        CPU_SET((int)(i % (unsigned int)ncpus), &masks[i]);
    for (int i = 0; i < MAX_METHODS; i++)
        if (listed(list, all_methods[i].name)) {
            if (all_methods[i].kernel && pspawn_sys_detect(&sys) <= 0) {
                fprintf(stderr, "kbench: %s: the kernel has no pspawn calls\n", all_methods[i].name);
                continue;
            }
            if (all_methods[i].run == run_lib_kernel || all_methods[i].run == run_lib_zygote ||
                all_methods[i].run == run_lib_exec) {
                int which = all_methods[i].run == run_lib_kernel   ? KBENCH_LIB_KERNEL
                            : all_methods[i].run == run_lib_zygote ? KBENCH_LIB_ZYGOTE
                                                                   : KBENCH_LIB_EXEC;

                if (kbench_lib_init(which, target) != 0) {
                    fprintf(stderr, "kbench: %s: %s\n", all_methods[i].name, strerror(errno));
                    continue;
                }
            }
            methods[nm++] = &all_methods[i];
        }
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < nm; k++) {
            struct method *m = methods[(k + r) % nm];
            double t0 = now_s();
            unsigned int bad = m->run();

            m->rate[r] = n / (now_s() - t0);
            m->launch[r] = n / (launched_at - t0);
            if (bad)
                fprintf(stderr, "kbench: %s: %u instances failed\n", m->name, bad);
        }
    for (int k = 0; k < nm; k++) {
        med[k] = median(methods[k]->rate, rounds, &lo, &hi);
        lmed[k] = median(methods[k]->launch, rounds, &lo, &hi);
        if (strcmp(methods[k]->name, "afork") == 0) {
            afork = med[k];
            afork_launch = lmed[k];
        }
    }
    printf("kbench: %s, N=%u, %d rounds, %d CPUs%s\n", target, n, rounds, ncpus,
           pin ? ", pinned" : "");
    printf("%-12s %10s %15s %8s | %10s %17s %8s\n", "method", "spawns/s", "min-max",
           "x afork", "launch/s", "min-max", "x afork");
    for (int k = 0; k < nm; k++) {
        double llo, lhi;

        median(methods[k]->rate, rounds, &lo, &hi);
        median(methods[k]->launch, rounds, &llo, &lhi);
        printf("%-12s %10.1f %7.1f-%-7.1f %8.2f | %10.1f %8.1f-%-8.1f %8.2f\n",
               methods[k]->name, med[k], lo, hi, afork > 0 ? med[k] / afork : 0.0, lmed[k],
               llo, lhi, afork_launch > 0 ? lmed[k] / afork_launch : 0.0);
    }
    kbench_lib_fini();
    return 0;
}
