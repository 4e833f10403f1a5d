/*
 * spawnbench - the paper's spawn microbenchmarks (Kulkarni et al., ROSS '12, section 2.4)
 * against libpspawn, measured without any managed overhead.
 *
 * For one target executable it launches N instances with each method and reaps them all:
 *   sfork        fork + execve, wait for each child before the next       (synchronous)
 *   afork        fork + execve all N, then reap                            (asynchronous)
 *   vfork        vfork + execve all N, then reap
 *   posix_spawn  posix_spawn all N, then reap (glibc: clone(CLONE_VM|CLONE_VFORK))
 *   pspawn       pspawn_e() N times, one request per instance, then reap
 *   pspawn_n     one pspawn_ne() call for all N, then reap (the default context: one
 *                proxy per usable CPU, the batch fanned out to all of them)
 *   pspawn_n_k1  the same with one proxy (pspawn_context_attr_t.proxies = 1)
 * and, to measure levers of the core without changing it:
 *   pspawn_n_lazy  pspawn_n with a context created with PSPAWN_CTX_NO_BIND_NOW
 *   pspawn_n_2p    two contexts, one pinned to each of CPUs 0 and 1, each asked from its
 *                  own thread for half of the N instances (the paper's hierarchical launch)
 *   pspawn_n_prefault  pspawn_n with a context created with PSPAWN_CTX_PREFAULT (the
 *                  proxy makes fork copy the page tables of its file mappings)
 *   pspawn_n_exec  pspawn_n with PSPAWN_CTX_EXEC: no proxy, the parallel exec backend
 *                  (one worker per usable CPU, clone(CLONE_VM|CLONE_VFORK) + execve)
 *   pspawn_pool / pspawn_n_pool  pspawn / pspawn_n with a warm pool of -P K children per
 *                  proxy (claims instead of forks while parked children last)
 *   pspawn_deferred  pspawn with PSPAWN_CTX_DEFERRED (the fork point is the target's
 *                  pspawn_ready() call, e.g. the deferred fixture)
 *   pspawn_vector / pspawn_vector_async  one vector call with RANK=i per instance (default
 *                  context); pspawn_vector_k1 the same with one proxy
 *   pspawn_n_numa_off  pspawn_n with PSPAWN_NUMA_OFF: the plain layout, proxies bound to no
 *                  node (on a NUMA machine pspawn_n has per-node proxies)
 *   pspawn_n_attr / pspawn_n_cgroup  pspawn_nx with an empty attr / with one whose cgroup
 *                  is -g CGROUP (clone3 CLONE_INTO_CGROUP): the cost of cgroup placement
 *   pspawn_n_replicas  pspawn_n with PSPAWN_CTX_NUMA_REPLICAS (per-node library copies)
 *
 * Metrics, per method and round (methods interleaved in every round, the order rotated
 * from round to round):
 *   throughput     N / (time from the first spawn call until the last child is reaped)
 *   latency        one instance at a time: time from the spawn call until the child has
 *                  run main, exited and been reaped (lat_*), and until the spawn call
 *                  returned a pid (call_*). K samples per round, the round's p50 kept.
 *   CPU            getrusage(RUSAGE_SELF) of this launcher, getrusage(RUSAGE_CHILDREN)
 *                  of the reaped instances, and /proc/<proxy>/schedstat of the proxies
 *                  (they are not reaped during a run), each per spawn
 *   page faults    minor faults per spawn of the instances (RUSAGE_CHILDREN), of the
 *                  launcher (RUSAGE_SELF) and of the proxies (/proc/<proxy>/stat)
 * Context creation (starting the proxy) is excluded from throughput and reported apart.
 *
 * Output: one JSON object per line (default) or CSV rows, records "machine", "context",
 * "throughput", "latency" (one per method and round) and "summary" (per method, stat
 * median/min/max over rounds; its "round" field holds the number of rounds). -p prints
 * the selected environment instead, so that other launchers can use the same one. The
 * exit status is 0, 1 if any instance failed to start or exited with a non-zero status,
 * 2 for a usage or set-up error.
 */
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

static const char *const method_names[M_COUNT] = {
    "sfork", "afork", "vfork", "posix_spawn", "pspawn", "pspawn_n", "pspawn_n_lazy", "pspawn_n_2p",
    "pspawn_n_prefault", "pspawn_vector", "pspawn_vector_async", "pspawn_n_k1", "pspawn_vector_k1", "pspawn_n_exec",
    "pspawn_pool", "pspawn_n_pool", "pspawn_deferred",
    "pspawn_n_numa_off", "pspawn_n_attr", "pspawn_n_cgroup", "pspawn_n_replicas",
};

#define DEFAULT_METHODS "sfork,afork,vfork,posix_spawn,pspawn,pspawn_n"
#define MAX_CONTEXTS 2

static pspawn_attr_t *bench_empty_attr, *bench_cgroup_attr; /* pspawn_n_attr, pspawn_n_cgroup */

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

static struct options opt;
static char **bench_env;   /* the environment of every instance (and of the proxies) */
static long failures;      /* instances that failed to start or did not exit 0 */

/* ---- small helpers ---------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double tv_us(struct timeval tv)
{
    return (double)tv.tv_sec * 1e6 + (double)tv.tv_usec;
}

static double ru_cpu_us(const struct rusage *ru)
{
    return tv_us(ru->ru_utime) + tv_us(ru->ru_stime);
}

static void die(const char *what)
{
    fprintf(stderr, "spawnbench: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL)
        die("calloc");
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        die("strdup");
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n-1] (sorts a copy). */
static double median(const double *v, int n)
{
    if (n <= 0)
        return 0;
    double *c = xcalloc((size_t)n, sizeof(double));
    memcpy(c, v, (size_t)n * sizeof(double));
    qsort(c, (size_t)n, sizeof(double), cmp_double);
    double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
    free(c);
    return m;
}

static void min_max(const double *v, int n, double *mn, double *mx)
{
    *mn = *mx = n > 0 ? v[0] : 0;
    for (int i = 1; i < n; i++) {
        if (v[i] < *mn)
            *mn = v[i];
        if (v[i] > *mx)
            *mx = v[i];
    }
}

/* ---- the proxies' own counters (they are not reaped during a run) --------------- */

struct proc_counters {
    double cpu_us;
    double minflt;
};

static struct proc_counters read_proc(pid_t pid)
{
    struct proc_counters c = {0, 0};
    if (pid <= 0)
        return c;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        unsigned long long ns = 0;
        if (fscanf(f, "%llu", &ns) == 1)
            c.cpu_us = (double)ns / 1000.0;
        fclose(f);
    }
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f != NULL) {
        char buf[1024];
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        buf[len] = '\0';
        fclose(f);
        /* Fields after the command name (which may hold spaces): state is field 3,
         * minflt field 10. */
        char *p = strrchr(buf, ')');
        unsigned long minflt = 0;
        if (p != NULL && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %lu", &minflt) == 1)
            c.minflt = (double)minflt;
    }
    return c;
}

static long proc_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    size_t flen = strlen(field);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            kb = strtol(line + flen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* Every proxy of the method's contexts (live ones; -1 entries skipped). */
static int proxy_pids(const struct bench_method *bm, pid_t *out, int capacity)
{
    int n = 0;
    for (int i = 0; i < bm->nctx; i++) {
        pid_t pids[64];
        int k = pspawn_context_proxy_pids(&bm->ctx[i], pids, 64);
        for (int j = 0; j < k && j < 64 && n < capacity; j++)
            if (pids[j] > 0)
                out[n++] = pids[j];
    }
    return n;
}

/* Whether the method's contexts have proxies (not in fallback mode). */
static bool has_proxy(const struct bench_method *bm)
{
    pid_t pids[128];
    return proxy_pids(bm, pids, 128) > 0;
}

static struct proc_counters proxies_counters(const struct bench_method *bm)
{
    struct proc_counters sum = {0, 0};
    pid_t pids[128];
    int n = proxy_pids(bm, pids, 128);
    for (int i = 0; i < n; i++) {
        struct proc_counters c = read_proc(pids[i]);
        sum.cpu_us += c.cpu_us;
        sum.minflt += c.minflt;
    }
    return sum;
}

/* Resident memory of all the method's proxies, or -1. */
static long proxies_rss_kb(const struct bench_method *bm)
{
    pid_t pids[128];
    int n = proxy_pids(bm, pids, 128);
    long rss = n > 0 ? 0 : -1;
    for (int i = 0; i < n; i++) {
        long kb = proc_status_kb(pids[i], "VmRSS");
        rss += kb > 0 ? kb : 0;
    }
    return rss;
}

/* ---- environments ------------------------------------------------------------------ */

/* The paper's "realistic" environment: LD_LIBRARY_PATH with 10 entries (existing, empty
 * directories, as left by module systems) before the real one, and 50 variables in all. */
static char **make_realistic_env(const char *target)
{
    static const char *const fixed[] = {
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/tools/bin",
        "HOME=/home/user",
        "USER=user",
        "LOGNAME=user",
        "SHELL=/bin/bash",
        "LANG=C.UTF-8",
        "TERM=xterm-256color",
        "PWD=/home/user/run",
        "OLDPWD=/home/user",
        "HOSTNAME=node0001",
        "TMPDIR=/tmp",
        "TZ=UTC",
        "EDITOR=vi",
        "PAGER=less",
        "LESS=-R",
        "MAIL=/var/mail/user",
        "SHLVL=2",
        "MANPATH=/usr/share/man:/opt/tools/share/man",
        "INFOPATH=/usr/share/info",
        "PKG_CONFIG_PATH=/opt/tools/lib/pkgconfig:/usr/lib/pkgconfig",
        "CPATH=/opt/tools/include",
        "LIBRARY_PATH=/opt/tools/lib",
        "MODULEPATH=/etc/modulefiles:/usr/share/modulefiles:/opt/modulefiles",
        "MODULESHOME=/usr/share/modules",
        "LOADEDMODULES=gcc/12.2:openmpi/4.1.4:hdf5/1.14:fftw/3.3.10:python/3.11",
        "_LMFILES_=/opt/modulefiles/gcc/12.2:/opt/modulefiles/openmpi/4.1.4",
        "OMP_NUM_THREADS=1",
        "OMPI_MCA_btl=self,vader,tcp",
        "OMPI_MCA_pml=ob1",
        "SLURM_JOB_ID=123456",
        "SLURM_JOB_NAME=spawnbench",
        "SLURM_JOB_NODELIST=node[0001-0064]",
        "SLURM_NNODES=64",
        "SLURM_NTASKS=4096",
        "SLURM_TASKS_PER_NODE=64(x64)",
        "SLURM_CPUS_ON_NODE=64",
        "SLURM_SUBMIT_DIR=/home/user/run",
        "SLURM_CLUSTER_NAME=cluster",
        "SLURM_PARTITION=batch",
        "HDF5_DIR=/opt/tools/hdf5/1.14",
        "FFTW_DIR=/opt/tools/fftw/3.3.10",
        "MPI_HOME=/opt/tools/openmpi/4.1.4",
        "PYTHONPATH=/opt/tools/python/lib/python3.11/site-packages",
        "XDG_RUNTIME_DIR=/run/user/1000",
        "XDG_SESSION_TYPE=tty",
        "SSH_CONNECTION=10.0.0.1 50000 10.0.0.2 22",
        "HISTSIZE=10000",
        "LC_NUMERIC=C",
        "DISPLAY=",
    };
    size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
    char **env = xcalloc(nfixed + 2, sizeof(char *));
    for (size_t i = 0; i < nfixed; i++)
        env[i] = xstrdup(fixed[i]);

    /* Ten empty directories, stable across runs so that every launcher (this one and the
     * .NET harness) uses the same paths; the real library directory comes last. */
    const char *tmp = getenv("TMPDIR");
    char base[PATH_MAX];
    snprintf(base, sizeof(base), "%s/pspawn-bench-ldpath", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdir(base, 0755) != 0 && errno != EEXIST)
        die(base);
    char value[16 * PATH_MAX] = "LD_LIBRARY_PATH=";
    for (int i = 0; i < 10; i++) {
        char dir[PATH_MAX + 16];
        snprintf(dir, sizeof(dir), "%s/module%d/lib", base, i);
        char parent[PATH_MAX + 16];
        snprintf(parent, sizeof(parent), "%s/module%d", base, i);
        if ((mkdir(parent, 0755) != 0 && errno != EEXIST) || (mkdir(dir, 0755) != 0 && errno != EEXIST))
            die(dir);
        strncat(value, dir, sizeof(value) - strlen(value) - 2);
        strcat(value, ":");
    }
    /* The real one: the fixtures keep their libraries in ../lib of the executable. */
    char real_dir[PATH_MAX];
    snprintf(real_dir, sizeof(real_dir), "%s", target);
    char *slash = strrchr(real_dir, '/');
    if (slash != NULL)
        *slash = '\0';
    strncat(value, real_dir, sizeof(value) - strlen(value) - 8);
    strcat(value, "/../lib");
    env[nfixed] = xstrdup(value);
    env[nfixed + 1] = NULL;
    return env;
}

static char **make_env(const char *kind, const char *target)
{
    if (strcmp(kind, "empty") == 0)
        return xcalloc(1, sizeof(char *));
    if (strcmp(kind, "realistic") == 0)
        return make_realistic_env(target);
    if (strcmp(kind, "inherit") == 0) {
        extern char **environ;
        return environ;
    }
    fprintf(stderr, "spawnbench: unknown environment '%s' (empty, realistic, inherit)\n", kind);
    exit(2);
}

/* ---- output ------------------------------------------------------------------------ */

static void json_string(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* CSV columns: every record is one row of these; fields a record lacks stay empty. */
static const char *const csv_columns[] = {
    "record", "target", "env", "method", "round", "n", "stat", "seconds", "per_sec",
    "lat_p50_us", "lat_min_us", "lat_max_us", "call_p50_us", "launcher_cpu_us",
    "children_cpu_us", "children_minflt", "launcher_minflt", "proxy_cpu_us", "proxy_minflt",
    "create_ms", "proxy_rss_kb", "failed", "mode",
};
#define NCOLUMNS (sizeof(csv_columns) / sizeof(csv_columns[0]))

struct record {
    const char *values[NCOLUMNS];
    char storage[NCOLUMNS][64];
};

static void rec_init(struct record *r, const char *kind, const char *method)
{
    memset(r, 0, sizeof(*r));
    r->values[0] = kind;
    r->values[1] = opt.name;
    r->values[2] = opt.env_kind;
    r->values[3] = method;
}

static int column(const char *name)
{
    for (size_t i = 0; i < NCOLUMNS; i++)
        if (strcmp(csv_columns[i], name) == 0)
            return (int)i;
    fprintf(stderr, "spawnbench: internal error: no column %s\n", name);
    abort();
}

static void rec_num(struct record *r, const char *name, double v)
{
    int c = column(name);
    if (v == (double)(long long)v && v < 1e15 && v > -1e15)
        snprintf(r->storage[c], sizeof(r->storage[c]), "%lld", (long long)v);
    else
        snprintf(r->storage[c], sizeof(r->storage[c]), "%.6g", v);
    r->values[c] = r->storage[c];
}

static void rec_str(struct record *r, const char *name, const char *v)
{
    int c = column(name);
    snprintf(r->storage[c], sizeof(r->storage[c]), "%s", v);
    r->values[c] = r->storage[c];
}

static bool is_text_column(size_t i)
{
    return i <= 3 || strcmp(csv_columns[i], "stat") == 0 || strcmp(csv_columns[i], "mode") == 0;
}

static void rec_print(const struct record *r)
{
    if (opt.summary_only && strcmp(r->values[0], "summary") != 0 && strcmp(r->values[0], "machine") != 0 &&
        strcmp(r->values[0], "context") != 0)
        return;
    if (opt.csv) {
        for (size_t i = 0; i < NCOLUMNS; i++) {
            if (i > 0)
                putchar(',');
            if (r->values[i] != NULL)
                fputs(r->values[i], stdout);
        }
        putchar('\n');
    } else {
        bool first = true;
        putchar('{');
        for (size_t i = 0; i < NCOLUMNS; i++) {
            if (r->values[i] == NULL)
                continue;
            if (!first)
                putchar(',');
            first = false;
            json_string(csv_columns[i]);
            putchar(':');
            if (is_text_column(i))
                json_string(r->values[i]);
            else
                fputs(r->values[i], stdout);
        }
        puts("}");
    }
    fflush(stdout);
}

static bool node_has_cpu(const pspawn_numa_node_t *node, int c)
{
    return c >= 0 && c < (int)(8 * sizeof(node->cpus)) && (node->cpus[c / 8] & (1u << (c % 8)));
}

/* "1 node (0: 0-1)": the NUMA nodes the launcher may use, as pspawn_numa_topology
 * reports them, each with its usable CPUs as ranges. */
static void describe_numa(char *out, size_t size)
{
    pspawn_numa_node_t nodes[PSPAWN_MAX_NODES];
    int n = pspawn_numa_topology(nodes, PSPAWN_MAX_NODES);
    if (n < 0) {
        snprintf(out, size, "unknown");
        return;
    }
    FILE *f = fmemopen(out, size, "w");
    if (f == NULL) {
        snprintf(out, size, "%d node%s", n, n == 1 ? "" : "s");
        return;
    }
    fprintf(f, "%d node%s (", n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s%d:", i ? "; " : "", nodes[i].id);
        const char *sep = " ";
        for (int c = 0; c < (int)(8 * sizeof(nodes[i].cpus)); c++) {
            if (!node_has_cpu(&nodes[i], c) || node_has_cpu(&nodes[i], c - 1))
                continue;
            int end = c;
            while (node_has_cpu(&nodes[i], end + 1))
                end++;
            fprintf(f, end > c ? "%s%d-%d" : "%s%d", sep, c, end);
            sep = ",";
        }
    }
    fputc(')', f);
    fclose(f);
}

static void print_machine(void)
{
    char numa[512];
    describe_numa(numa, sizeof(numa));
    char cpu[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char line[512];
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "model name", 10) == 0) {
                char *colon = strchr(line, ':');
                if (colon != NULL) {
                    snprintf(cpu, sizeof(cpu), "%s", colon + 2);
                    cpu[strcspn(cpu, "\n")] = '\0';
                }
                break;
            }
        }
        fclose(f);
    }
    struct utsname u;
    uname(&u);
    if (opt.csv) {
        printf("# machine: cpu=%s; cores=%ld; numa=%s; kernel=%s; glibc=%s; pspawn=%s\n", cpu,
               sysconf(_SC_NPROCESSORS_ONLN), numa, u.release, gnu_get_libc_version(), pspawn_version());
        for (size_t i = 0; i < NCOLUMNS; i++)
            printf("%s%s", i ? "," : "", csv_columns[i]);
        putchar('\n');
        return;
    }
    printf("{\"record\":\"machine\",\"cpu\":");
    json_string(cpu);
    printf(",\"cores\":%ld,\"numa\":", sysconf(_SC_NPROCESSORS_ONLN));
    json_string(numa);
    printf(",\"kernel\":");
    json_string(u.release);
    printf(",\"glibc\":");
    json_string(gnu_get_libc_version());
    printf(",\"pspawn\":");
    json_string(pspawn_version());
    printf(",\"target\":");
    json_string(opt.target);
    printf(",\"env\":");
    json_string(opt.env_kind);
    printf(",\"n\":%d,\"rounds\":%d,\"latency_samples\":%d}\n", opt.n, opt.rounds, opt.latency_samples);
    fflush(stdout);
}

/* ---- spawning ---------------------------------------------------------------------- */

extern char **environ;

static pid_t spawn_fork(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        execve(opt.target, opt.argv, bench_env);
        _exit(127);
    }
    return pid;
}

static pid_t spawn_vfork(void)
{
    pid_t pid = vfork();
    if (pid == 0) {
        execve(opt.target, opt.argv, bench_env);
        _exit(127);
    }
    return pid;
}

static pid_t spawn_posix(void)
{
    pid_t pid;
    int err = posix_spawn(&pid, opt.target, NULL, NULL, opt.argv, bench_env);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return pid;
}

/* Reap one child; counts a failure unless it exited with status 0. */
static void reap(struct bench_method *bm, pid_t pid)
{
    if (pid <= 0) {
        failures++;
        return;
    }
    int status = 0;
    pid_t r = bm->nctx > 0 ? pspawn_waitpid(&bm->ctx[0], pid, &status, 0) : waitpid(pid, &status, 0);
    /* In relay mode a child of the second proxy is known only to its own context. */
    for (int i = 1; r < 0 && errno == ECHILD && i < bm->nctx; i++)
        r = pspawn_waitpid(&bm->ctx[i], pid, &status, 0);
    while (r < 0 && errno == EINTR)
        r = waitpid(pid, &status, 0);
    if (r != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (failures == 0)
            fprintf(stderr, "spawnbench: %s: child %d: %s\n", method_names[bm->id], (int)pid,
                    r != pid ? strerror(errno) : "did not exit with status 0");
        failures++;
    }
}

struct half_request {
    pspawn_context_t *ctx;
    pid_t *pids;
    int count;
};

static void *spawn_half(void *arg)
{
    struct half_request *h = arg;
    pspawn_ne(h->pids, NULL, h->ctx, h->count, opt.argv, bench_env);
    return NULL;
}

/* pspawn_vector's instances: the target argv, and the bench environment plus RANK=i
 * (a distinct environment per instance). Built once. */
static pspawn_instance_t *vector_instances(int count)
{
    static pspawn_instance_t *instances;
    static int built;
    if (built >= count)
        return instances;
    size_t nenv = 0;
    while (bench_env[nenv] != NULL)
        nenv++;
    instances = realloc(instances, (size_t)count * sizeof(*instances));
    if (instances == NULL)
        die("realloc");
    for (int i = built; i < count; i++) {
        char **env = xcalloc(nenv + 2, sizeof(char *));
        memcpy(env, bench_env, nenv * sizeof(char *));
        char rank[32];
        snprintf(rank, sizeof(rank), "RANK=%d", i);
        env[nenv] = xstrdup(rank);
        instances[i] = (pspawn_instance_t){.argv = opt.argv, .envp = env};
    }
    built = count;
    return instances;
}

/* Spawn `count` instances with method `bm` into pids[] (reaping as the method says). */
static void spawn_batch(struct bench_method *bm, pid_t *pids, int count)
{
    switch (bm->id) {
    case M_SFORK:
        for (int i = 0; i < count; i++) {
            pids[i] = spawn_fork();
            reap(bm, pids[i]);
            pids[i] = 0; /* already reaped */
        }
        break;
    case M_AFORK:
        for (int i = 0; i < count; i++)
            pids[i] = spawn_fork();
        break;
    case M_VFORK:
        for (int i = 0; i < count; i++)
            pids[i] = spawn_vfork();
        break;
    case M_POSIX_SPAWN:
        for (int i = 0; i < count; i++)
            pids[i] = spawn_posix();
        break;
    case M_PSPAWN:
    case M_PSPAWN_POOL:
    case M_PSPAWN_DEFERRED:
        for (int i = 0; i < count; i++)
            pids[i] = pspawn_e(&bm->ctx[0], opt.argv, bench_env);
        break;
    case M_PSPAWN_N:
    case M_PSPAWN_N_K1:
    case M_PSPAWN_N_EXEC:
    case M_PSPAWN_N_LAZY:
    case M_PSPAWN_N_PREFAULT:
    case M_PSPAWN_N_POOL:
        if (count > 0)
            pspawn_ne(pids, NULL, &bm->ctx[0], count, opt.argv, bench_env);
        break;
    case M_PSPAWN_N_NUMA_OFF:
    case M_PSPAWN_N_REPLICAS:
        if (count > 0)
            pspawn_ne(pids, NULL, &bm->ctx[0], count, opt.argv, bench_env);
        break;
    case M_PSPAWN_N_ATTR:
    case M_PSPAWN_N_CGROUP:
        if (count > 0)
            pspawn_nx(pids, NULL, NULL, &bm->ctx[0], count, opt.argv, bench_env,
                      bm->id == M_PSPAWN_N_CGROUP ? bench_cgroup_attr : bench_empty_attr);
        break;
    case M_PSPAWN_VECTOR:
    case M_PSPAWN_VECTOR_K1:
        if (count > 0)
            pspawn_vector(pids, NULL, &bm->ctx[0], vector_instances(count), count, NULL);
        break;
    case M_PSPAWN_VECTOR_ASYNC:
        if (count > 0) {
            pspawn_session_t *session;
            if (pspawn_vector_async(&session, &bm->ctx[0], vector_instances(count), count, NULL) != 0)
                die("pspawn_vector_async");
            pspawn_session_wait(session, -1);
            pspawn_session_results(session, pids, NULL);
            pspawn_session_free(session);
        }
        break;
    case M_PSPAWN_N_2P: {
        int first = count / 2 + count % 2;
        struct half_request a = {&bm->ctx[0], pids, first};
        struct half_request b = {&bm->ctx[1], pids + first, count - first};
        pthread_t thread;
        bool threaded = b.count > 0 && pthread_create(&thread, NULL, spawn_half, &b) == 0;
        spawn_half(&a);
        if (threaded)
            pthread_join(thread, NULL);
        else if (b.count > 0)
            spawn_half(&b);
        break;
    }
    case M_COUNT:
        break;
    }
}

static void reap_batch(struct bench_method *bm, pid_t *pids, int count)
{
    for (int i = 0; i < count; i++)
        if (pids[i] != 0)
            reap(bm, pids[i]);
}

/* ---- measurements ------------------------------------------------------------------ */

static void measure_throughput(struct bench_method *bm, int round)
{
    pid_t *pids = xcalloc((size_t)opt.n, sizeof(pid_t));
    struct rusage self0, self1, child0, child1;
    struct proc_counters proxy0 = proxies_counters(bm);
    getrusage(RUSAGE_CHILDREN, &child0);
    getrusage(RUSAGE_SELF, &self0);
    long failed_before = failures;
    double t0 = now_s();
    spawn_batch(bm, pids, opt.n);
    reap_batch(bm, pids, opt.n);
    double t1 = now_s();
    getrusage(RUSAGE_SELF, &self1);
    getrusage(RUSAGE_CHILDREN, &child1);
    struct proc_counters proxy1 = proxies_counters(bm);
    free(pids);

    double n = opt.n, secs = t1 - t0;
    bm->per_sec[round] = n / secs;
    bm->launcher_cpu[round] = (ru_cpu_us(&self1) - ru_cpu_us(&self0)) / n;
    bm->children_cpu[round] = (ru_cpu_us(&child1) - ru_cpu_us(&child0)) / n;
    bm->children_minflt[round] = (double)(child1.ru_minflt - child0.ru_minflt) / n;
    bm->launcher_minflt[round] = (double)(self1.ru_minflt - self0.ru_minflt) / n;
    bm->proxy_cpu[round] = (proxy1.cpu_us - proxy0.cpu_us) / n;
    bm->proxy_minflt[round] = (proxy1.minflt - proxy0.minflt) / n;

    struct record r;
    rec_init(&r, "throughput", method_names[bm->id]);
    rec_num(&r, "round", round);
    rec_num(&r, "n", opt.n);
    rec_num(&r, "seconds", secs);
    rec_num(&r, "per_sec", bm->per_sec[round]);
    rec_num(&r, "launcher_cpu_us", bm->launcher_cpu[round]);
    rec_num(&r, "children_cpu_us", bm->children_cpu[round]);
    rec_num(&r, "children_minflt", bm->children_minflt[round]);
    rec_num(&r, "launcher_minflt", bm->launcher_minflt[round]);
    if (has_proxy(bm)) {
        rec_num(&r, "proxy_cpu_us", bm->proxy_cpu[round]);
        rec_num(&r, "proxy_minflt", bm->proxy_minflt[round]);
    }
    rec_num(&r, "failed", (double)(failures - failed_before));
    rec_print(&r);
}

static void measure_latency(struct bench_method *bm, int round)
{
    int k = opt.latency_samples;
    if (k <= 0)
        return;
    double *lat = xcalloc((size_t)k, sizeof(double));
    double *call = xcalloc((size_t)k, sizeof(double));
    /* One instance at a time; the two-proxy method has nothing to parallelise here. */
    struct bench_method single = *bm;
    if (single.id == M_PSPAWN_N_2P)
        single.id = M_PSPAWN_N;
    for (int i = 0; i < k; i++) {
        pid_t pid = 0;
        double t0 = now_s();
        if (single.id == M_SFORK || single.id == M_AFORK)
            pid = spawn_fork();
        else
            spawn_batch(&single, &pid, 1);
        double t1 = now_s();
        reap(&single, pid);
        double t2 = now_s();
        lat[i] = (t2 - t0) * 1e6;
        call[i] = (t1 - t0) * 1e6;
    }
    bm->lat_p50[round] = median(lat, k);
    bm->call_p50[round] = median(call, k);
    double mn, mx;
    min_max(lat, k, &mn, &mx);
    struct record r;
    rec_init(&r, "latency", method_names[bm->id]);
    rec_num(&r, "round", round);
    rec_num(&r, "n", k);
    rec_num(&r, "lat_p50_us", bm->lat_p50[round]);
    rec_num(&r, "lat_min_us", mn);
    rec_num(&r, "lat_max_us", mx);
    rec_num(&r, "call_p50_us", bm->call_p50[round]);
    rec_print(&r);
    free(lat);
    free(call);
}

static void print_summary(struct bench_method *bm)
{
    static const char *const stat_names[3] = {"median", "min", "max"};
    struct {
        const char *column;
        const double *values;
        bool present;
    } metrics[] = {
        {"per_sec", bm->per_sec, true},
        {"lat_p50_us", bm->lat_p50, opt.latency_samples > 0},
        {"call_p50_us", bm->call_p50, opt.latency_samples > 0},
        {"launcher_cpu_us", bm->launcher_cpu, true},
        {"children_cpu_us", bm->children_cpu, true},
        {"children_minflt", bm->children_minflt, true},
        {"launcher_minflt", bm->launcher_minflt, true},
        {"proxy_cpu_us", bm->proxy_cpu, has_proxy(bm)},
        {"proxy_minflt", bm->proxy_minflt, has_proxy(bm)},
    };
    for (int s = 0; s < 3; s++) {
        struct record r;
        rec_init(&r, "summary", method_names[bm->id]);
        rec_str(&r, "stat", stat_names[s]);
        rec_num(&r, "n", opt.n);
        rec_num(&r, "round", opt.rounds);
        for (size_t m = 0; m < sizeof(metrics) / sizeof(metrics[0]); m++) {
            if (!metrics[m].present)
                continue;
            double mn, mx;
            min_max(metrics[m].values, opt.rounds, &mn, &mx);
            double v = s == 0 ? median(metrics[m].values, opt.rounds) : s == 1 ? mn : mx;
            rec_num(&r, metrics[m].column, v);
        }
        if (bm->nctx > 0) {
            double create = 0;
            for (int i = 0; i < bm->nctx; i++)
                create += bm->create_ms[i];
            rec_num(&r, "create_ms", create);
            long rss = proxies_rss_kb(bm);
            if (has_proxy(bm))
                rec_num(&r, "proxy_rss_kb", (double)rss);
        }
        rec_print(&r);
    }
}

/* ---- set-up ------------------------------------------------------------------------ */

static const char *mode_name(int mode)
{
    switch (mode) {
    case PSPAWN_MODE_ZYGOTE:
        return "zygote";
    case PSPAWN_MODE_RELAY:
        return "relay";
    case PSPAWN_MODE_FALLBACK:
        return "fallback";
    case PSPAWN_MODE_EXEC:
        return "exec";
    default:
        return "unknown";
    }
}

static void create_contexts(struct bench_method *bm)
{
    int count = bm->id == M_PSPAWN_N_2P ? 2 : bm->id >= M_PSPAWN ? 1 : 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 0; i < count; i++) {
        pspawn_context_attr_t attr;
        pspawn_context_attr_init(&attr);
        attr.flags = PSPAWN_CTX_FALLBACK | opt.extra_flags;
        if (bm->id == M_PSPAWN_N_LAZY)
            attr.flags |= PSPAWN_CTX_NO_BIND_NOW;
        if (bm->id == M_PSPAWN_N_2P)
            attr.core = ncpu > 1 ? i : -1;
        attr.proxy_envp = bench_env;
        if (bm->id == M_PSPAWN_N_PREFAULT)
            attr.flags |= PSPAWN_CTX_PREFAULT;
        if (bm->id == M_PSPAWN_N_K1 || bm->id == M_PSPAWN_VECTOR_K1) {
            attr.proxies = 1;
            attr.numa = PSPAWN_NUMA_OFF; /* one proxy, also on a NUMA machine */
        }
        if (bm->id == M_PSPAWN_POOL || bm->id == M_PSPAWN_N_POOL)
            attr.pool = opt.pool;
        if (bm->id == M_PSPAWN_DEFERRED)
            attr.flags |= PSPAWN_CTX_DEFERRED;
        if (bm->id == M_PSPAWN_N_NUMA_OFF)
            attr.numa = PSPAWN_NUMA_OFF;
        if (bm->id == M_PSPAWN_N_REPLICAS)
            attr.flags |= PSPAWN_CTX_NUMA_REPLICAS;
        if (bm->id == M_PSPAWN_N_EXEC)
            attr.flags = PSPAWN_CTX_EXEC | (opt.extra_flags & ~PSPAWN_CTX_RELAY);
        double t0 = now_s();
        if (pspawn_context_create_ex(&bm->ctx[i], opt.target, &attr) != 0) {
            fprintf(stderr, "spawnbench: %s: pspawn_context_create_ex(%s): %s\n", method_names[bm->id],
                    opt.target, strerror(errno));
            exit(2);
        }
        bm->create_ms[i] = (now_s() - t0) * 1e3;
        bm->nctx++;
        struct record r;
        rec_init(&r, "context", method_names[bm->id]);
        rec_num(&r, "create_ms", bm->create_ms[i]);
        long rss_kb = proc_status_kb(pspawn_context_proxy_pid(&bm->ctx[i]), "VmRSS");
        if (rss_kb >= 0)
            rec_num(&r, "proxy_rss_kb", (double)rss_kb);
        rec_str(&r, "mode", mode_name(pspawn_context_mode(&bm->ctx[i])));
        rec_print(&r);
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: spawnbench [options] TARGET [ARG...]\n"
            "  -n N          instances per throughput measurement (default 100)\n"
            "  -r R          rounds; methods are interleaved in each round (default 5)\n"
            "  -m LIST       methods, comma-separated (default " DEFAULT_METHODS ")\n"
            "                also: pspawn_n_lazy (no bind-now in the proxy), pspawn_n_2p\n"
            "                (two proxies pinned to CPUs 0 and 1, spawning in parallel),\n"
            "                pspawn_n_prefault (PSPAWN_CTX_PREFAULT: forks copy the\n"
            "                page tables of the target's file mappings), pspawn_vector\n"
            "                (per-instance environment: RANK=i), pspawn_vector_async\n"
            "                (the same through a session), pspawn_n_k1 / pspawn_vector_k1\n"
            "                (one proxy instead of one per usable CPU), pspawn_n_exec\n"
            "                (PSPAWN_CTX_EXEC: the parallel exec backend), pspawn_pool /\n"
            "                pspawn_n_pool (pspawn / pspawn_n with a warm pool),\n"
            "                pspawn_deferred (pspawn, context with PSPAWN_CTX_DEFERRED:\n"
            "                targets that call pspawn_ready()),\n"
            "                pspawn_n_numa_off (PSPAWN_NUMA_OFF), pspawn_n_attr /\n"
            "                pspawn_n_cgroup (pspawn_nx with an empty attr / with -g's\n"
            "                cgroup), pspawn_n_replicas (PSPAWN_CTX_NUMA_REPLICAS),\n"
            "                all (but pspawn_n_cgroup)\n"
            "  -P K          warm pool per proxy of the *_pool methods (default 8)\n"
            "  -g CGROUP     cgroup v2 directory of pspawn_n_cgroup\n"
            "  -e KIND       environment of the instances: empty (default), realistic\n"
            "                (10 LD_LIBRARY_PATH entries before the real one, 50 variables),\n"
            "                inherit\n"
            "  -l K          single-spawn latency samples per method and round (default 10)\n"
            "  -w K          warm-up spawns per method before the first round (default 3)\n"
            "  -x FLAGS      PSPAWN_CTX_* flags (hexadecimal) added to every context, e.g.\n"
            "                -x 8 (PSPAWN_CTX_PREFAULT) with -m pspawn_n_2p\n"
            "  -c            CSV instead of JSON lines\n"
            "  -s            summary records only (plus machine and context)\n"
            "  -t NAME       target label in the output (default: file name of TARGET)\n"
            "  -p            print the selected environment (one variable a line) and exit\n");
}

static void select_methods(const char *list)
{
    char *copy = xstrdup(list);
    memset(opt.selected, 0, sizeof(opt.selected));
    opt.nselected = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        bool all = strcmp(tok, "all") == 0;
        bool found = false;
        for (int m = 0; m < M_COUNT; m++) {
            bool pick = (all && m != M_PSPAWN_N_CGROUP) || strcmp(tok, method_names[m]) == 0; /* it needs -g */
            if (pick && !opt.selected[m]) {
                opt.selected[m] = true;
                opt.order[opt.nselected++] = m;
            }
            found |= all || strcmp(tok, method_names[m]) == 0;
        }
        if (!found) {
            fprintf(stderr, "spawnbench: unknown method '%s'\n", tok);
            exit(2);
        }
    }
    free(copy);
    if (opt.nselected == 0) {
        fprintf(stderr, "spawnbench: no method selected\n");
        exit(2);
    }
}

static int positive(const char *s, const char *what, int min)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > 1000000) {
        fprintf(stderr, "spawnbench: bad %s '%s'\n", what, s);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    opt.n = 100;
    opt.rounds = 5;
    opt.pool = 8;
    opt.latency_samples = 10;
    opt.warmup = 3;
    opt.env_kind = "empty";
    bool print_env = false;
    select_methods(DEFAULT_METHODS);

    int c;
    const char *cgroup = NULL;
    while ((c = getopt(argc, argv, "+n:r:m:e:l:w:x:P:g:cst:ph")) != -1) {
        switch (c) {
        case 'g': cgroup = optarg; break;
        case 'n': opt.n = positive(optarg, "N", 1); break;
        case 'r': opt.rounds = positive(optarg, "rounds", 1); break;
        case 'P': opt.pool = positive(optarg, "pool", 1); break;
        case 'm': select_methods(optarg); break;
        case 'e': opt.env_kind = optarg; break;
        case 'l': opt.latency_samples = positive(optarg, "latency samples", 0); break;
        case 'w': opt.warmup = positive(optarg, "warm-up", 0); break;
        case 'x': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 16);
            if (*optarg == '\0' || *end != '\0' || v > 0xffffu) {
                fprintf(stderr, "spawnbench: bad flags '%s'\n", optarg);
                return 2;
            }
            opt.extra_flags = (unsigned)v;
            break;
        }
        case 'c': opt.csv = true; break;
        case 's': opt.summary_only = true; break;
        case 't': opt.name = optarg; break;
        case 'p': print_env = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    if (pspawn_attr_create(&bench_empty_attr) != 0 || pspawn_attr_create(&bench_cgroup_attr) != 0)
        die("pspawn_attr_create");
    if (cgroup != NULL && pspawn_attr_set_cgroup(bench_cgroup_attr, cgroup) != 0)
        die(cgroup);
    if (cgroup == NULL && opt.selected[M_PSPAWN_N_CGROUP]) {
        fprintf(stderr, "spawnbench: pspawn_n_cgroup needs -g CGROUP\n");
        return 2;
    }
    char *target = realpath(argv[optind], NULL);
    if (target == NULL)
        die(argv[optind]);
    opt.target = target;
    if (opt.name == NULL) {
        const char *slash = strrchr(target, '/');
        opt.name = slash ? slash + 1 : target;
    }
    int targc = argc - optind;
    opt.argv = xcalloc((size_t)targc + 1, sizeof(char *));
    opt.argv[0] = target;
    for (int i = 1; i < targc; i++)
        opt.argv[i] = argv[optind + i];

    bench_env = make_env(opt.env_kind, target);
    if (print_env) {
        for (char **e = bench_env; *e != NULL; e++)
            puts(*e);
        return 0;
    }

    print_machine();
    struct bench_method methods[M_COUNT];
    memset(methods, 0, sizeof(methods));
    for (int i = 0; i < opt.nselected; i++) {
        struct bench_method *bm = &methods[i];
        bm->id = (enum method)opt.order[i];
        double **arrays[] = {&bm->per_sec, &bm->lat_p50, &bm->call_p50, &bm->launcher_cpu, &bm->children_cpu,
                             &bm->children_minflt, &bm->launcher_minflt, &bm->proxy_cpu, &bm->proxy_minflt};
        for (size_t a = 0; a < sizeof(arrays) / sizeof(arrays[0]); a++)
            *arrays[a] = xcalloc((size_t)opt.rounds, sizeof(double));
        create_contexts(bm);
    }

    /* Warm-up: page cache, the proxies' first forks, the loader's caches. */
    for (int i = 0; i < opt.nselected; i++) {
        int count = opt.warmup < opt.n ? opt.warmup : opt.n;
        if (count == 0)
            continue;
        pid_t *pids = xcalloc((size_t)count, sizeof(pid_t));
        spawn_batch(&methods[i], pids, count);
        reap_batch(&methods[i], pids, count);
        free(pids);
    }
    if (failures != 0) {
        fprintf(stderr, "spawnbench: %ld instance(s) failed during warm-up\n", failures);
        return 1;
    }

    for (int round = 0; round < opt.rounds; round++) {
        for (int j = 0; j < opt.nselected; j++) {
            struct bench_method *bm = &methods[(j + round) % opt.nselected];
            measure_throughput(bm, round);
            measure_latency(bm, round);
        }
    }
    for (int i = 0; i < opt.nselected; i++)
        print_summary(&methods[i]);
    for (int i = 0; i < opt.nselected; i++)
        for (int j = 0; j < methods[i].nctx; j++)
            pspawn_context_destroy(&methods[i].ctx[j]);
    if (failures != 0)
        fprintf(stderr, "spawnbench: %ld instance(s) failed\n", failures);
    return failures != 0 ? 1 : 0;
}
