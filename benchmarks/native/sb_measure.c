/* spawnbench: one round of a method (throughput, latency) and the summary over rounds. */
#include "spawnbench.h"

void measure_throughput(struct bench_method *bm, int round)
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

void measure_latency(struct bench_method *bm, int round)
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

void print_summary(struct bench_method *bm)
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
