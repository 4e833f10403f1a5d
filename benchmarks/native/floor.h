/* What the native floor benchmarks share (pool_floor.c, zygote_floor.c): the clock, the
 * median, and taking the target's place right before its main, where PSpawn's zygote is
 * frozen (loaded, relocated, constructors run). */
#ifndef PSPAWN_BENCH_FLOOR_H
#define PSPAWN_BENCH_FLOOR_H

#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef int (*psb_main_fn)(int, char **, char **);
typedef int (*psb_start_fn)(psb_main_fn, int, char **, void (*)(void), void (*)(void), void (*)(void), void *);

/* The target's main, set before the benchmark's own main runs. */
static psb_main_fn psb_target_main;

/* Defines __libc_start_main so that the preloaded process runs BENCH_MAIN instead of the
 * target's main; its children (spawned without LD_PRELOAD) run the target. */
#define PSB_REPLACE_MAIN(BENCH_MAIN)                                                                       \
    __attribute__((visibility("default"))) int __libc_start_main(                                           \
        psb_main_fn main, int argc, char **argv, void (*init)(void), void (*fini)(void),                   \
        void (*rtld_fini)(void), void *stack_end)                                                          \
    {                                                                                                      \
        psb_start_fn real = (psb_start_fn)dlsym(RTLD_NEXT, "__libc_start_main");                           \
        if (real == NULL)                                                                                  \
            _exit(127);                                                                                    \
        psb_target_main = main;                                                                            \
        return real(getenv("LD_PRELOAD") != NULL ? BENCH_MAIN : main, argc, argv, init, fini, rtld_fini,   \
                    stack_end);                                                                            \
    }

static inline double psb_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static inline int psb_compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v in place. */
static inline double psb_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), psb_compare);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
