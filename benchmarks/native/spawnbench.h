/* spawnbench, in parts: spawnbench.c (options, contexts, main), sb_measure.c (throughput,
 * latency, summaries), sb_spawn.c (the methods' spawns and reaps), sb_output.c (records,
 * JSON/CSV, the machine line), sb_env.c (the instances' environments), sb_proc.c (the
 * proxies' counters), sb_util.c (small helpers). What they share is declared here. */
#ifndef PSPAWN_SPAWNBENCH_H
#define PSPAWN_SPAWNBENCH_H

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <gnu/libc-version.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pspawn.h"

enum method {
    M_SFORK,
    M_AFORK,
    M_VFORK,
    M_POSIX_SPAWN,
    M_PSPAWN,
    M_PSPAWN_N,
    M_PSPAWN_N_LAZY,
    M_PSPAWN_N_2P,
    M_PSPAWN_N_PREFAULT,
    M_PSPAWN_VECTOR,
    M_PSPAWN_VECTOR_ASYNC,
    M_PSPAWN_N_K1,
    M_PSPAWN_VECTOR_K1,
    M_PSPAWN_N_EXEC,
    M_PSPAWN_POOL,
    M_PSPAWN_N_POOL,
    M_PSPAWN_DEFERRED,
    M_PSPAWN_N_NUMA_OFF,
    M_PSPAWN_N_ATTR,
    M_PSPAWN_N_CGROUP,
    M_PSPAWN_N_REPLICAS,
    M_COUNT
};


#define DEFAULT_METHODS "sfork,afork,vfork,posix_spawn,pspawn,pspawn_n"
#define MAX_CONTEXTS 2


struct options {
    int n;
    int rounds;
    int latency_samples;
    int warmup;
    unsigned extra_flags; /* PSPAWN_CTX_* added to every context (-x) */
    int pool;             /* warm pool per proxy of the *_pool methods (-P) */
    bool csv;
    bool summary_only;
    const char *env_kind;
    const char *name;
    const char *target; /* absolute path */
    char **argv;        /* target argv, argv[0] = target path */
    bool selected[M_COUNT];
    int order[M_COUNT];
    int nselected;
};

/* What a method needs at run time. */
struct bench_method {
    enum method id;
    pspawn_context_t ctx[MAX_CONTEXTS];
    int nctx;
    double create_ms[MAX_CONTEXTS];
    /* Per-round results. */
    double *per_sec, *lat_p50, *call_p50, *launcher_cpu, *children_cpu, *children_minflt,
        *launcher_minflt, *proxy_cpu, *proxy_minflt;
};

/* A proxy's CPU time and minor faults (sb_proc.c). */
struct proc_counters {
    double cpu_us;
    double minflt;
};

/* One output record: a value per CSV column (sb_output.c). */
#define NCOLUMNS 23
struct record {
    const char *values[NCOLUMNS];
    char storage[NCOLUMNS][64];
};

extern const char *const method_names[M_COUNT];
extern pspawn_attr_t *bench_empty_attr, *bench_cgroup_attr; /* pspawn_n_attr, pspawn_n_cgroup */
extern struct options opt;
extern char **bench_env; /* the environment of every instance (and of the proxies) */
extern long failures;    /* instances that failed to start or did not exit 0 */

double now_s(void);
double ru_cpu_us(const struct rusage *ru);
void die(const char *what);
void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);
double median(const double *v, int n);
void min_max(const double *v, int n, double *mn, double *mx);
long proc_status_kb(pid_t pid, const char *field);
bool has_proxy(const struct bench_method *bm);
struct proc_counters proxies_counters(const struct bench_method *bm);
long proxies_rss_kb(const struct bench_method *bm);
char **make_env(const char *kind, const char *target);
void rec_init(struct record *r, const char *kind, const char *method);
int column(const char *name);
void rec_num(struct record *r, const char *name, double v);
void rec_str(struct record *r, const char *name, const char *v);
void rec_print(const struct record *r);
void print_machine(void);
pid_t spawn_fork(void);
void reap(struct bench_method *bm, pid_t pid);
void spawn_batch(struct bench_method *bm, pid_t *pids, int count);
void reap_batch(struct bench_method *bm, pid_t *pids, int count);
void measure_throughput(struct bench_method *bm, int round);
void measure_latency(struct bench_method *bm, int round);
void print_summary(struct bench_method *bm);

#endif
