/* spawnbench: records as JSON lines or CSV rows, and the machine line. */
#include "spawnbench.h"

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
_Static_assert(sizeof(csv_columns) / sizeof(csv_columns[0]) == NCOLUMNS, "struct record has a value per column");

void rec_init(struct record *r, const char *kind, const char *method)
{
    memset(r, 0, sizeof(*r));
    r->values[0] = kind;
    r->values[1] = opt.name;
    r->values[2] = opt.env_kind;
    r->values[3] = method;
}

int column(const char *name)
{
    for (size_t i = 0; i < NCOLUMNS; i++)
        if (strcmp(csv_columns[i], name) == 0)
            return (int)i;
    fprintf(stderr, "spawnbench: internal error: no column %s\n", name);
    abort();
}

void rec_num(struct record *r, const char *name, double v)
{
    int c = column(name);
    if (v == (double)(long long)v && v < 1e15 && v > -1e15)
        snprintf(r->storage[c], sizeof(r->storage[c]), "%lld", (long long)v);
    else
        snprintf(r->storage[c], sizeof(r->storage[c]), "%.6g", v);
    r->values[c] = r->storage[c];
}

void rec_str(struct record *r, const char *name, const char *v)
{
    int c = column(name);
    snprintf(r->storage[c], sizeof(r->storage[c]), "%s", v);
    r->values[c] = r->storage[c];
}

static bool is_text_column(size_t i)
{
    return i <= 3 || strcmp(csv_columns[i], "stat") == 0 || strcmp(csv_columns[i], "mode") == 0;
}

void rec_print(const struct record *r)
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

void print_machine(void)
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
