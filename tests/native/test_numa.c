/* Per-node proxies: the public topology query; a context over a fake two-node machine
 * (PSPAWN_SYSFS_ROOT, one real CPU per node): one proxy per node pinned to it, children
 * without a CPU set spread over the nodes and run on their node's CPUs, instances with
 * a CPU set forked by their node's proxy; on this host (one node), the proxies' memory
 * policy (bind/prefer node 0, before exec) and the children's (reset, or kept when asked). */
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

/* The first two CPUs this process may use, or false. */
static bool two_cpus(int *a, int *b)
{
    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
    int found = 0;
    for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
        if (CPU_ISSET(c, &set))
            *(found++ == 0 ? a : b) = c;
    return found == 2;
}

/* A machine whose node0 holds CPU a and node1 CPU b. */
static const char *two_node_root(int a, int b)
{
    static char root[4096];
    snprintf(root, sizeof(root), "%s/two", temp_dir());
    char text[64];
    snprintf(text, sizeof(text), "%d,%d\n", a, b);
    write_tree_file(root, "sys/devices/system/cpu/online", text);
    snprintf(text, sizeof(text), "%d\n", a);
    write_tree_file(root, "sys/devices/system/node/node0/cpulist", text);
    write_tree_file(root, "sys/devices/system/node/node0/distance", "10 21\n");
    snprintf(text, sizeof(text), "%d\n", b);
    write_tree_file(root, "sys/devices/system/node/node1/cpulist", text);
    write_tree_file(root, "sys/devices/system/node/node1/distance", "21 10\n");
    return root;
}

/* Field `n` (1-based) of /proc/<pid>/schedstat: 3 = times it was scheduled. */
static unsigned long long schedstat(pid_t pid, int n)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
    char *text = read_file(path);
    CHECK(text != NULL);
    unsigned long long v[3] = {0, 0, 0};
    CHECK(sscanf(text, "%llu %llu %llu", &v[0], &v[1], &v[2]) == 3);
    free(text);
    return v[n - 1];
}

/* The memory policy of the first mapping in /proc/<pid>/numa_maps ("default",
 * "bind:0", "prefer:0", ...): a mapping without its own policy shows the task's. */
static void task_policy(pid_t pid, char *out, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/numa_maps", (int)pid);
    char *text = read_file(path);
    CHECK(text != NULL);
    char *space = strchr(text, ' ');
    CHECK(space != NULL);
    size_t n = strcspn(space + 1, " \n");
    CHECK(n < size);
    memcpy(out, space + 1, n);
    out[n] = '\0';
    free(text);
}

static void public_topology(void)
{
    pspawn_numa_node_t nodes[PSPAWN_MAX_NODES];
    int n = pspawn_numa_topology(nodes, PSPAWN_MAX_NODES);
    CHECK(n >= 1);
    cpu_set_t mine;
    CHECK(sched_getaffinity(0, sizeof(mine), &mine) == 0);
    int total = 0;
    for (int j = 0; j < n; j++) {
        cpu_set_t set;
        memcpy(&set, nodes[j].cpus, sizeof(set));
        CHECK_EQ_INT(CPU_COUNT(&set), nodes[j].cpu_count);
        total += nodes[j].cpu_count;
        fprintf(stderr, "node%d: %d CPUs, memory %s, distance to itself %d\n", nodes[j].id, nodes[j].cpu_count,
                nodes[j].memory_allowed ? "allowed" : "excluded", nodes[j].distance[j]);
    }
    CHECK(total >= 1 && total <= CPU_COUNT(&mine));
    CHECK_EQ_INT(pspawn_numa_topology(NULL, 0), n);
    CHECK(pspawn_numa_topology(NULL, 1) == -1 && errno == EINVAL);
    CHECK(pspawn_numa_topology(nodes, -1) == -1 && errno == EINVAL);

    /* A machine described by a broken tree: the query fails clearly, a context still
     * works (placement is advisory: the plain layout). */
    char root[4096];
    snprintf(root, sizeof(root), "%s/broken", temp_dir());
    write_tree_file(root, "sys/devices/system/cpu/online", "0-1\n");
    write_tree_file(root, "sys/devices/system/node/node0/cpulist", "0-1\n");
    write_tree_file(root, "sys/devices/system/node/node0/distance", "ten\n");
    CHECK(setenv("PSPAWN_SYSFS_ROOT", root, 1) == 0);
    CHECK(pspawn_numa_topology(nodes, PSPAWN_MAX_NODES) == -1 && errno == EINVAL);
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, fixture("noop"), -1) == 0);
    int proxy_nodes[64];
    int k = pspawn_context_proxy_nodes(&ctx, proxy_nodes, 64);
    CHECK(k >= 1);
    for (int j = 0; j < k; j++)
        CHECK_EQ_INT(proxy_nodes[j], -1);
    pspawn_context_destroy(&ctx);
    unsetenv("PSPAWN_SYSFS_ROOT");
    CHECK(pspawn_context_proxy_nodes(NULL, NULL, 0) == -1 && errno == EINVAL);

    /* Bad NUMA attributes. */
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.numa = 3;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == -1 && errno == EINVAL);
    attr.numa = 0;
    attr.numa_spread = 2;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == -1 && errno == EINVAL);
    attr.numa_spread = 0;
    attr.numa_memory = -1;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == -1 && errno == EINVAL);
    /* A caller built against the header before the NUMA fields: defaults. */
    pspawn_context_attr_init(&attr);
    attr.size = offsetof(pspawn_context_attr_t, numa);
    attr.numa = 99; /* beyond its size: not read */
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == 0);
    pspawn_context_destroy(&ctx);
    attr.size = offsetof(pspawn_context_attr_t, numa) - 1;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == -1 && errno == EINVAL);
}

static pspawn_context_t open_two(int spread)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.numa_spread = spread;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("report"), &attr) == 0);
    return ctx;
}

/* The affinity (a CPU list) a report child saw. */
static int child_cpu(const char *dir, const char *tag, int i)
{
    char path[4300];
    snprintf(path, sizeof(path), "%s/%s.%d.json", dir, tag, i);
    char *json = await_file(path, 20000);
    CHECK(json != NULL);
    size_t count = 0;
    long long *cpus = json_ints(json, "affinity", &count);
    CHECK(cpus != NULL);
    int cpu = count == 1 ? (int)cpus[0] : -1;
    free(cpus);
    free(json);
    return cpu;
}

static void run_report(pspawn_context_t *ctx, const char *tag, int n, const cpu_set_t *mask, pid_t *pids)
{
    char argbuf[64][4300];
    char *argvs[64][3];
    pspawn_instance_t in[64];
    CHECK(n <= 64);
    for (int i = 0; i < n; i++) {
        snprintf(argbuf[i], sizeof(argbuf[i]), "--report-out=%s/%s.%d.json", temp_dir(), tag, i);
        argvs[i][0] = "report";
        argvs[i][1] = argbuf[i];
        argvs[i][2] = NULL;
        in[i] = (pspawn_instance_t){.argv = argvs[i], .cpus = mask, .cpusetsize = mask ? sizeof(*mask) : 0};
    }
    int errors[64];
    CHECK_EQ_INT(pspawn_vector(pids, errors, ctx, in, n, NULL), n);
    for (int i = 0; i < n; i++)
        CHECK(WIFEXITED(wait_child(pids[i], 20000)));
}

/* Two fake nodes of one real CPU each: a proxy per node, pinned there; children
 * without a CPU set alternate between the nodes and run on their node's CPU; those with
 * a CPU set are forked by the proxy of its node alone. */
static void fake_two_nodes(void)
{
    int a = -1, b = -1;
    if (!two_cpus(&a, &b)) {
        fprintf(stderr, "skipped: needs two usable CPUs\n");
        return;
    }
    CHECK(setenv("PSPAWN_SYSFS_ROOT", two_node_root(a, b), 1) == 0);
    pspawn_numa_node_t nodes[4];
    CHECK_EQ_INT(pspawn_numa_topology(nodes, 4), 2);
    CHECK(nodes[0].cpu_count == 1 && nodes[1].cpu_count == 1 && nodes[0].distance[1] == 21);
    pspawn_context_t ctx = open_two(PSPAWN_SPREAD_ROUND_ROBIN);
    unsetenv("PSPAWN_SYSFS_ROOT");
    CHECK_EQ_INT(pspawn_context_proxy_count(&ctx), 2);
    int pnodes[2];
    pid_t proxies[2];
    CHECK_EQ_INT(pspawn_context_proxy_nodes(&ctx, pnodes, 2), 2);
    CHECK_EQ_INT(pspawn_context_proxy_pids(&ctx, proxies, 2), 2);
    CHECK(pnodes[0] == 0 && pnodes[1] == 1);
    for (int k = 0; k < 2; k++) {
        cpu_set_t set;
        CHECK(sched_getaffinity(proxies[k], sizeof(set), &set) == 0);
        CHECK(CPU_COUNT(&set) == 1 && CPU_ISSET(k == 0 ? a : b, &set));
    }
    enum { N = 8 };
    pid_t pids[64];
    run_report(&ctx, "rr", N, NULL, pids);
    int on_a = 0, on_b = 0;
    for (int i = 0; i < N; i++) {
        int cpu = child_cpu(temp_dir(), "rr", i);
        on_a += cpu == a;
        on_b += cpu == b;
        if (i > 0) /* round-robin: neighbours on different nodes */
            CHECK(cpu != child_cpu(temp_dir(), "rr", i - 1));
    }
    CHECK_EQ_INT(on_a, N / 2);
    CHECK_EQ_INT(on_b, N / 2);
    /* One at a time: calls continue the rotation. */
    int first = -1;
    for (int i = 0; i < 4; i++) {
        char tag[16];
        snprintf(tag, sizeof(tag), "one%d", i);
        run_report(&ctx, tag, 1, NULL, pids);
        int cpu = child_cpu(temp_dir(), tag, 0);
        if (i == 0)
            first = cpu;
        CHECK_EQ_INT(cpu, i % 2 == 0 ? first : (first == a ? b : a));
    }

    /* CPU b is node 1's: only that proxy forks them (the other is never scheduled). */
    cpu_set_t only_b;
    CPU_ZERO(&only_b);
    CPU_SET(b, &only_b);
    unsigned long long before0 = schedstat(proxies[0], 3), before1 = schedstat(proxies[1], 3);
    run_report(&ctx, "masked", 12, &only_b, pids);
    CHECK(schedstat(proxies[0], 3) == before0);
    CHECK(schedstat(proxies[1], 3) > before1);
    for (int i = 0; i < 12; i++)
        CHECK_EQ_INT(child_cpu(temp_dir(), "masked", i), b);
    pspawn_context_destroy(&ctx);

    /* NUMA off: the plain layout, nobody node-bound. */
    CHECK(setenv("PSPAWN_SYSFS_ROOT", two_node_root(a, b), 1) == 0);
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.numa = PSPAWN_NUMA_OFF;
    CHECK(pspawn_context_create_ex(&ctx, fixture("report"), &attr) == 0);
    unsetenv("PSPAWN_SYSFS_ROOT");
    int k = pspawn_context_proxy_nodes(&ctx, pnodes, 2);
    for (int j = 0; j < k && j < 2; j++)
        CHECK_EQ_INT(pnodes[j], -1);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* This host, node-bound on its one node (PSPAWN_NUMA_ON): every proxy's memory policy
 * is bind:0 (prefer:0 when asked), set before exec so its first mapping shows it;
 * children reset it unless they ask for node-local memory. AUTO on one node binds
 * nothing. */
static void host_memory_policy(void)
{
    const char *sleep_path = "/usr/bin/sleep";
    if (access(sleep_path, X_OK) != 0)
        sleep_path = "/bin/sleep";
    for (int mode = 0; mode < 3; mode++) {
        pspawn_context_attr_t attr;
        pspawn_context_attr_init(&attr);
        attr.numa = mode == 2 ? PSPAWN_NUMA_AUTO : PSPAWN_NUMA_ON;
        attr.numa_memory = mode == 1 ? PSPAWN_NUMA_MEM_PREFERRED : PSPAWN_NUMA_MEM_BIND;
        pspawn_numa_node_t nodes[PSPAWN_MAX_NODES];
        int nn = pspawn_numa_topology(nodes, PSPAWN_MAX_NODES);
        CHECK(nn >= 1);
        pspawn_context_t ctx;
        CHECK(pspawn_context_create_ex(&ctx, sleep_path, &attr) == 0);
        pid_t proxies[64];
        int pnodes[64];
        int k = pspawn_context_proxy_pids(&ctx, proxies, 64);
        CHECK_EQ_INT(pspawn_context_proxy_nodes(&ctx, pnodes, 64), k);
        const char *want = mode == 0 ? "bind:" : mode == 1 ? "prefer:" : "default";
        bool bound = mode != 2 || nn > 1;
        for (int j = 0; j < k; j++) {
            char policy[64];
            task_policy(proxies[j], policy, sizeof(policy));
            fprintf(stderr, "mode %d proxy %d: node %d, policy %s\n", mode, j, pnodes[j], policy);
            if (bound) {
                CHECK(pnodes[j] >= 0);
                char exact[32];
                snprintf(exact, sizeof(exact), "%s%d", want, pnodes[j]);
                CHECK(strcmp(policy, exact) == 0);
            } else {
                CHECK_EQ_INT(pnodes[j], -1);
                CHECK(strcmp(policy, "default") == 0);
            }
        }
        /* Children: reset by default; kept with pspawn_attr_set_numa_local. */
        char *argv[] = {"sleep", "30", NULL};
        pid_t kids[4];
        CHECK_EQ_INT(pspawn_n(kids, &ctx, 2, argv), 2);
        pspawn_attr_t *local;
        CHECK(pspawn_attr_create(&local) == 0);
        CHECK(pspawn_attr_set_numa_local(local, 1) == 0);
        int errors[2];
        CHECK_EQ_INT(pspawn_nx(kids + 2, errors, NULL, &ctx, 2, argv, NULL, local), 2);
        pspawn_attr_destroy(local);
        usleep(200 * 1000); /* past the child's set-up: the reset happens right after clone */
        for (int j = 0; j < 4; j++) {
            char policy[64];
            task_policy(kids[j], policy, sizeof(policy));
            fprintf(stderr, "  child %d (%s): %s\n", j, j < 2 ? "default" : "numa_local", policy);
            if (j < 2 || !bound)
                CHECK(strcmp(policy, "default") == 0);
            else
                CHECK(strncmp(policy, want, strlen(want)) == 0);
        }
        for (int j = 0; j < 4; j++) {
            kill(kids[j], SIGKILL);
            CHECK(WIFSIGNALED(wait_child(kids[j], 20000)));
        }
        pspawn_context_destroy(&ctx);
    }
    CHECK_EQ_INT(count_zombie_children(), 0);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"public_topology", public_topology},
        {"fake_two_nodes", fake_two_nodes},
        {"host_memory_policy", host_memory_policy},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
