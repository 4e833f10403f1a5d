/* spawnbench: the proxies' own counters (CPU, faults, RSS; they are not reaped during a run). */
#include "spawnbench.h"

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

long proc_status_kb(pid_t pid, const char *field)
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
bool has_proxy(const struct bench_method *bm)
{
    pid_t pids[128];
    return proxy_pids(bm, pids, 128) > 0;
}

struct proc_counters proxies_counters(const struct bench_method *bm)
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
long proxies_rss_kb(const struct bench_method *bm)
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
