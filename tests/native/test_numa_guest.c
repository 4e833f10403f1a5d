/* Per-node proxies on a real two-node machine (the qemu guest with --numa 2, where each
 * node has its own CPUs and memory; tests/kernel/guest.d/numa.sh): children of a node's
 * instances run on its CPUs, their anonymous memory is on its node, the node's proxy's
 * pages are there too. Every case skips, with the reason, on a machine without two
 * nodes of disjoint CPUs (this host has one). Also: library replicas' page cache on
 * their node. */
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

static struct {
    cpu_set_t cpus;
} g_nodes[2];

static bool two_nodes(void)
{
    pspawn_numa_node_t nodes[PSPAWN_MAX_NODES];
    int n = pspawn_numa_topology(nodes, PSPAWN_MAX_NODES);
    CHECK(n >= 1);
    if (n >= 2 && nodes[0].id == 0 && nodes[1].id == 1 && nodes[0].cpu_count > 0 && nodes[1].cpu_count > 0) {
        for (int k = 0; k < 2; k++) {
            CPU_ZERO(&g_nodes[k].cpus);
            memcpy(&g_nodes[k].cpus, nodes[k].cpus, sizeof(nodes[k].cpus));
        }
        cpu_set_t both;
        CPU_AND(&both, &g_nodes[0].cpus, &g_nodes[1].cpus);
        if (CPU_COUNT(&both) == 0)
            return true;
    }
    fprintf(stderr, "skipped: %d usable NUMA node(s) here, not two with CPUs of their own "
                    "(runs in the qemu guest: tests/kernel/guest.d/numa.sh)\n", n);
    return false;
}

/* Field 39 of /proc/<pid>/stat: the CPU it last ran on. */
static int last_cpu(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *text = read_file(path);
    CHECK(text != NULL);
    char *p = strrchr(text, ')');
    CHECK(p != NULL);
    int field = 2, cpu = -1;
    for (char *tok = strtok(p + 1, " "); tok != NULL; tok = strtok(NULL, " "))
        if (++field == 39)
            cpu = atoi(tok);
    free(text);
    return cpu;
}

static void check_on_node(pid_t pid, int node)
{
    cpu_set_t set;
    CHECK(sched_getaffinity(pid, sizeof(set), &set) == 0);
    if (!CPU_EQUAL(&set, &g_nodes[node].cpus) || !CPU_ISSET(last_cpu(pid), &g_nodes[node].cpus)) {
        fprintf(stderr, "pid %d: affinity %d CPUs, last on CPU %d; expected node %d's\n", (int)pid, CPU_COUNT(&set),
                last_cpu(pid), node);
        exit(1);
    }
}

/* Pages of pid's anonymous mappings (no file behind them) on each node, and the task's
 * memory policy as numa_maps shows it for the first such mapping. */
static void anon_pages(pid_t pid, long per_node[2], char *policy, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/numa_maps", (int)pid);
    char *text = read_file(path);
    CHECK(text != NULL);
    per_node[0] = per_node[1] = 0;
    policy[0] = '\0';
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strstr(line, " anon=") == NULL || strstr(line, " file=") != NULL)
            continue;
        char *space = strchr(line, ' ');
        if (policy[0] == '\0' && space != NULL)
            snprintf(policy, size, "%.*s", (int)strcspn(space + 1, " "), space + 1);
        for (int n = 0; n < 2; n++) {
            char key[8];
            snprintf(key, sizeof(key), " N%d=", n);
            char *at = strstr(line, key);
            if (at != NULL)
                per_node[n] += atol(at + strlen(key));
        }
    }
    free(text);
}

/* At least `min` anonymous pages on `node`, and at most 5% of them elsewhere. */
static void check_memory_on(pid_t pid, int node, long min, const char *want_policy)
{
    long pages[2];
    char policy[32];
    anon_pages(pid, pages, policy, sizeof(policy));
    fprintf(stderr, "pid %d (node %d): anonymous pages N0=%ld N1=%ld, policy %s\n", (int)pid, node, pages[0], pages[1],
            policy);
    CHECK(pages[node] >= min);
    CHECK(pages[1 - node] * 20 <= pages[0] + pages[1]);
    CHECK(want_policy == NULL || strcmp(policy, want_policy) == 0);
}

static void two_nodes_topology(void)
{
    if (!two_nodes())
        return;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, "/bin/true", -1) == 0);
    int nodes[64];
    int count = pspawn_context_proxy_nodes(&ctx, nodes, 64);
    CHECK(count >= 2);
    pid_t proxies[64];
    CHECK_EQ_INT(pspawn_context_proxy_pids(&ctx, proxies, 64), count);
    bool seen[2] = {false, false};
    for (int k = 0; k < count; k++) {
        CHECK(nodes[k] == 0 || nodes[k] == 1);
        seen[nodes[k]] = true;
        check_on_node(proxies[k], nodes[k]);
    }
    CHECK(seen[0] && seen[1]);
    pspawn_context_destroy(&ctx);
}

/* Instances with a node's CPU set run there; those without are spread (round-robin)
 * and each runs on all of its node's CPUs. */
static void children_run_on_their_nodes_cpus(void)
{
    if (!two_nodes())
        return;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, "/bin/sleep", -1) == 0);
    char *argv[] = {"sleep", "30", NULL};
    pspawn_instance_t in[6];
    for (int i = 0; i < 6; i++)
        in[i] = (pspawn_instance_t){.argv = argv, .cpus = i < 2 ? &g_nodes[i].cpus : NULL,
                                    .cpusetsize = i < 2 ? sizeof(cpu_set_t) : 0};
    pid_t pids[6];
    int errors[6];
    CHECK_EQ_INT(pspawn_vector(pids, errors, &ctx, in, 6, NULL), 6);
    usleep(200 * 1000); /* let each exec and sleep: last_cpu is then where it ran */
    check_on_node(pids[0], 0);
    check_on_node(pids[1], 1);
    int per_node[2] = {0, 0};
    for (int i = 2; i < 6; i++) {
        cpu_set_t set;
        CHECK(sched_getaffinity(pids[i], sizeof(set), &set) == 0);
        int node = CPU_EQUAL(&set, &g_nodes[0].cpus) ? 0 : 1;
        check_on_node(pids[i], node);
        per_node[node]++;
    }
    CHECK_EQ_INT(per_node[0], 2);
    CHECK_EQ_INT(per_node[1], 2);
    for (int i = 0; i < 6; i++) {
        kill(pids[i], SIGKILL);
        CHECK(pspawn_waitpid(&ctx, pids[i], NULL, 0) == pids[i]);
    }
    pspawn_context_destroy(&ctx);
}

/* A child of node n's instance writes 16 MiB: its anonymous pages are on node n, with
 * the default policy (reset) or, with pspawn_attr_set_numa_local, bound to n. */
static void child_memory_on_its_node(void)
{
    if (!two_nodes())
        return;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, fixture("anon_touch"), -1) == 0);
    char *argv[] = {"anon_touch", "16", NULL};
    /* Both die with us: a stopped child left behind would hold the suite's output open. */
    pspawn_attr_t *reset, *local;
    CHECK(pspawn_attr_create(&reset) == 0 && pspawn_attr_create(&local) == 0);
    CHECK(pspawn_attr_set_parent_death_signal(reset, SIGKILL) == 0);
    CHECK(pspawn_attr_set_parent_death_signal(local, SIGKILL) == 0);
    CHECK(pspawn_attr_set_numa_local(local, 1) == 0);
    for (int k = 0; k < 4; k++) {
        int node = k % 2;
        pspawn_instance_t in = {.argv = argv, .cpus = &g_nodes[node].cpus, .cpusetsize = sizeof(cpu_set_t)};
        pid_t pid;
        int error;
        CHECK_EQ_INT(pspawn_vector(&pid, &error, &ctx, &in, 1, k < 2 ? reset : local), 1);
        int status;
        /* Stopped once its pages are written (a zygote child is ours: plain waitpid). */
        CHECK(waitpid(pid, &status, WUNTRACED) == pid && WIFSTOPPED(status));
        char bound[16];
        snprintf(bound, sizeof(bound), "bind:%d", node);
        check_memory_on(pid, node, 16 << 8, k < 2 ? "default" : bound);
        kill(pid, SIGKILL);
        CHECK(pspawn_waitpid(&ctx, pid, &status, 0) == pid);
    }
    pspawn_attr_destroy(reset);
    pspawn_attr_destroy(local);
    pspawn_context_destroy(&ctx);
}

/* Each proxy's anonymous pages (loader, heap, stack: set up after its policy was set,
 * before exec) are on its node, under MPOL_BIND. */
static void proxy_pages_on_its_node(void)
{
    if (!two_nodes())
        return;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, fixture("anon_touch"), -1) == 0);
    int nodes[64];
    pid_t proxies[64];
    int count = pspawn_context_proxy_nodes(&ctx, nodes, 64);
    CHECK_EQ_INT(pspawn_context_proxy_pids(&ctx, proxies, 64), count);
    for (int k = 0; k < count; k++) {
        char bound[16];
        snprintf(bound, sizeof(bound), "bind:%d", nodes[k]);
        check_memory_on(proxies[k], nodes[k], 4, bound);
    }
    pspawn_context_destroy(&ctx);
}

/* Pages of pid's mappings of files under "pspawn-replicas-" on each node. */
static void replica_pages(pid_t pid, long per_node[2])
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/numa_maps", (int)pid);
    char *text = read_file(path);
    CHECK(text != NULL);
    per_node[0] = per_node[1] = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strstr(line, "/pspawn-replicas-") == NULL)
            continue;
        for (int n = 0; n < 2; n++) {
            char key[8];
            snprintf(key, sizeof(key), " N%d=", n);
            char *at = strstr(line, key);
            if (at != NULL)
                per_node[n] += atol(at + strlen(key));
        }
    }
    free(text);
}

/* With PSPAWN_CTX_NUMA_REPLICAS each proxy maps its node's copies, whose page cache
 * (written by a thread bound to the node) is on that node. */
static void replica_pages_on_their_node(void)
{
    if (!two_nodes())
        return;
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = PSPAWN_CTX_NUMA_REPLICAS;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("pynamic10"), &attr) == 0);
    CHECK(pspawn_context_replica_bytes(&ctx) > 0);
    int nodes[64];
    pid_t proxies[64];
    int count = pspawn_context_proxy_nodes(&ctx, nodes, 64);
    CHECK_EQ_INT(pspawn_context_proxy_pids(&ctx, proxies, 64), count);
    for (int k = 0; k < count; k++) {
        long pages[2];
        replica_pages(proxies[k], pages);
        fprintf(stderr, "proxy %d (node %d): replica pages N0=%ld N1=%ld\n", (int)proxies[k], nodes[k], pages[0], pages[1]);
        CHECK(pages[nodes[k]] > 0 && pages[1 - nodes[k]] == 0);
    }
    char *argv[] = {"pynamic10", NULL};
    pid_t pids[4];
    CHECK_EQ_INT(pspawn_n(pids, &ctx, 4, argv), 4);
    for (int i = 0; i < 4; i++) {
        int status;
        CHECK(pspawn_waitpid(&ctx, pids[i], &status, 0) == pids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    pspawn_context_destroy(&ctx);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"two_nodes_topology", two_nodes_topology},
        {"children_run_on_their_nodes_cpus", children_run_on_their_nodes_cpus},
        {"child_memory_on_its_node", child_memory_on_its_node},
        {"proxy_pages_on_its_node", proxy_pages_on_its_node},
        {"replica_pages_on_their_node", replica_pages_on_their_node},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
