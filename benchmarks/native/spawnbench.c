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
#include "spawnbench.h"

const char *const method_names[M_COUNT] = {
    "sfork", "afork", "vfork", "posix_spawn", "pspawn", "pspawn_n", "pspawn_n_lazy", "pspawn_n_2p",
    "pspawn_n_prefault", "pspawn_vector", "pspawn_vector_async", "pspawn_n_k1", "pspawn_vector_k1", "pspawn_n_exec",
    "pspawn_pool", "pspawn_n_pool", "pspawn_deferred",
    "pspawn_n_numa_off", "pspawn_n_attr", "pspawn_n_cgroup", "pspawn_n_replicas",
};

pspawn_attr_t *bench_empty_attr, *bench_cgroup_attr; /* pspawn_n_attr, pspawn_n_cgroup */
struct options opt;
char **bench_env;   /* the environment of every instance (and of the proxies) */
long failures;      /* instances that failed to start or did not exit 0 */

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
