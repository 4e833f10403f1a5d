/* pspawn-rtt: the protocol's round-trip latency and the call latency of one spawn,
 * next to posix_spawn's, as medians. Usage: pspawn-rtt TARGET [ROUNDS] */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "pspawn.h"

extern char **environ;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *what, double *samples, int n)
{
    qsort(samples, (size_t)n, sizeof(double), compare);
    printf("%-34s median %9.1f us   p10 %9.1f   p90 %9.1f   (n=%d)\n", what, samples[n / 2],
           samples[n / 10], samples[n * 9 / 10], n);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s TARGET [ROUNDS]\n", argv[0]);
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 300;
    if (rounds < 10)
        rounds = 10;
    double *samples = calloc((size_t)rounds, sizeof(double));
    char *child_argv[] = {argv[1], NULL};
    pspawn_context_t ctx;
    double t0 = now_us();
    if (samples == NULL || pspawn_context_create(&ctx, argv[1], -1) != 0) {
        perror("pspawn_context_create");
        return 1;
    }
    printf("context create (proxy start-up)     %9.1f us\n", now_us() - t0);

    for (int i = 0; i < rounds; i++) {
        double t = now_us();
        if (pspawn_context_ping(&ctx) != 0) {
            perror("ping");
            return 1;
        }
        samples[i] = now_us() - t;
    }
    report("ping round trip (no fork)", samples, rounds);

    /* Interleave the two spawn methods so that machine noise hits both alike. */
    double *spawn_us = calloc((size_t)rounds, sizeof(double));
    double *posix_us = calloc((size_t)rounds, sizeof(double));
    for (int i = 0; i < rounds; i++) {
        double t = now_us();
        pid_t pid = pspawn(&ctx, child_argv);
        spawn_us[i] = now_us() - t;
        if (pid < 0 || waitpid(pid, NULL, 0) != pid) {
            perror("pspawn");
            return 1;
        }
        t = now_us();
        int err = posix_spawn(&pid, argv[1], NULL, NULL, child_argv, environ);
        posix_us[i] = now_us() - t;
        if (err != 0 || waitpid(pid, NULL, 0) != pid) {
            fprintf(stderr, "posix_spawn: %s\n", strerror(err));
            return 1;
        }
    }
    report("pspawn() call (request to pid)", spawn_us, rounds);
    report("posix_spawn() call (to pid)", posix_us, rounds);
    pspawn_context_destroy(&ctx);
    free(samples);
    free(spawn_us);
    free(posix_us);
    return 0;
}
