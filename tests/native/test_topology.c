/* NUMA topology from fake sysfs trees built in the test's temporary directory (any
 * machine: 1, 2, 4, 8 nodes; asymmetric distances and sparse ids; offline CPUs; a
 * launcher limited by its cgroup's cpuset, v2 and v1; malformed files), the per-node
 * layout of proxies over them, and the spreading of instances over nodes. It calls the
 * launcher's topology module directly (compiled in: its symbols are hidden in
 * libpspawn). */
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launcher/topology.h"
#include "support.h"

/* A fresh root under the temporary directory. */
static const char *new_root(const char *name)
{
    static char roots[8][4096];
    static int next;
    char *root = roots[next++ % 8];
    snprintf(root, 4096, "%s/%s", temp_dir(), name);
    CHECK(mkdir(root, 0755) == 0);
    return root;
}

/* nodes x per CPUs, node j holding CPUs [j*per, (j+1)*per), distances 10 / 20. */
static const char *symmetric(const char *name, int nodes, int per)
{
    const char *root = new_root(name);
    char text[256];
    snprintf(text, sizeof(text), "0-%d\n", nodes * per - 1);
    write_tree_file(root, "sys/devices/system/cpu/online", text);
    for (int j = 0; j < nodes; j++) {
        char rel[128];
        snprintf(rel, sizeof(rel), "sys/devices/system/node/node%d/cpulist", j);
        snprintf(text, sizeof(text), "%d-%d\n", j * per, (j + 1) * per - 1);
        write_tree_file(root, rel, text);
        size_t len = 0;
        for (int k = 0; k < nodes; k++)
            len += (size_t)snprintf(text + len, sizeof(text) - len, "%s%d", k ? " " : "", k == j ? 10 : 20);
        snprintf(text + len, sizeof(text) - len, "\n");
        snprintf(rel, sizeof(rel), "sys/devices/system/node/node%d/distance", j);
        write_tree_file(root, rel, text);
    }
    return root;
}

static void check_range(const cpu_set_t *set, int lo, int hi)
{
    for (int c = 0; c < 64; c++)
        if ((c >= lo && c <= hi) != (CPU_ISSET(c, set) != 0)) {
            fprintf(stderr, "CPU %d: expected %s in the set [%d, %d]\n", c, c >= lo && c <= hi ? "" : "not", lo, hi);
            exit(1);
        }
}

/* Every proxy of the layout on CPUs of its own node; every usable node has one. */
static void check_layout_on_nodes(const struct psp_topology *t, const struct psp_layout *l)
{
    CHECK(l->per_node);
    for (int j = 0; j < t->count; j++) {
        int have = 0;
        for (int k = 0; k < l->count; k++)
            have += l->proxy[k].node == t->nodes[j].id;
        CHECK((t->nodes[j].cpu_count > 0) == (have > 0));
    }
    for (int k = 0; k < l->count; k++) {
        const struct psp_layout_proxy *p = &l->proxy[k];
        CHECK(p->node_index >= 0 && t->nodes[p->node_index].id == p->node);
        cpu_set_t both;
        CPU_AND(&both, &p->cpus, &t->nodes[p->node_index].cpus);
        CHECK(CPU_COUNT(&p->cpus) > 0 && CPU_EQUAL(&both, &p->cpus));
        CHECK(CPU_EQUAL(&p->domain, &t->nodes[p->node_index].cpus));
    }
}

/* 1, 2, 4, 8 nodes of 4 CPUs: nodes, CPUs, distances; the default layout (one proxy
 * per CPU, at most 8, at least one per node) and explicit counts. */
static void nodes_1_2_4_8(void)
{
    static struct psp_topology t;
    static struct psp_layout l;
    const int counts[] = {1, 2, 4, 8};
    for (int c = 0; c < 4; c++) {
        int n = counts[c];
        char name[32];
        snprintf(name, sizeof(name), "sym%d", n);
        const char *root = symmetric(name, n, 4);
        CHECK_EQ_INT(psp_topology_read(root, NULL, &t), 0);
        CHECK_EQ_INT(t.count, n);
        CHECK_EQ_INT(t.usable_nodes, n);
        CHECK(!t.synthetic);
        for (int j = 0; j < n; j++) {
            CHECK_EQ_INT(t.nodes[j].id, j);
            CHECK_EQ_INT(t.nodes[j].cpu_count, 4);
            check_range(&t.nodes[j].cpus, 4 * j, 4 * j + 3);
            CHECK(t.nodes[j].memory_allowed);
            for (int k = 0; k < n; k++)
                CHECK_EQ_INT(t.nodes[j].distance[k], j == k ? 10 : 20);
        }
        /* Default: min(CPUs, 8) proxies, the same share per node. */
        int k = psp_layout_per_node(&t, 0, 8, &l);
        CHECK_EQ_INT(k, 4 * n < 8 ? 4 * n : 8);
        check_layout_on_nodes(&t, &l);
        for (int j = 0; j < n; j++) {
            int have = 0;
            for (int p = 0; p < k; p++)
                have += l.proxy[p].node == j;
            CHECK_EQ_INT(have, k / n);
        }
        /* Fewer asked for than there are nodes: one per node all the same. */
        CHECK_EQ_INT(psp_layout_per_node(&t, 1, 8, &l), n);
        check_layout_on_nodes(&t, &l);
        /* More proxies than CPUs: a node's CPUs are shared round-robin. */
        CHECK_EQ_INT(psp_layout_per_node(&t, 6 * n, 8, &l), 6 * n);
        check_layout_on_nodes(&t, &l);
        for (int p = 0; p < l.count; p++)
            CHECK_EQ_INT(CPU_COUNT(&l.proxy[p].cpus), 1);
        fprintf(stderr, "%d nodes: default %d proxies\n", n, k);
    }
}

/* Sparse ids (0, 1, 3), a node without CPUs (memory only), asymmetric distances,
 * unequal nodes: proxies in proportion, none on the CPU-less node. */
static void asymmetric(void)
{
    static struct psp_topology t;
    static struct psp_layout l;
    const char *root = new_root("asym");
    write_tree_file(root, "sys/devices/system/cpu/online", "0-7\n");
    write_tree_file(root, "sys/devices/system/node/node0/cpulist", "0-5\n");
    write_tree_file(root, "sys/devices/system/node/node0/distance", "10 16 32\n");
    write_tree_file(root, "sys/devices/system/node/node1/cpulist", "6-7\n");
    write_tree_file(root, "sys/devices/system/node/node1/distance", "16 10 21\n");
    write_tree_file(root, "sys/devices/system/node/node3/cpulist", "\n");
    write_tree_file(root, "sys/devices/system/node/node3/distance", "32 21 10\n");
    write_tree_file(root, "sys/devices/system/node/possible", "0-3\n"); /* not a node directory */
    CHECK_EQ_INT(psp_topology_read(root, NULL, &t), 0);
    CHECK_EQ_INT(t.count, 3);
    CHECK_EQ_INT(t.usable_nodes, 2);
    CHECK_EQ_INT(t.nodes[2].id, 3);
    CHECK_EQ_INT(t.nodes[2].cpu_count, 0);
    CHECK_EQ_INT(t.nodes[0].distance[2], 32);
    CHECK_EQ_INT(t.nodes[2].distance[0], 32);
    CHECK_EQ_INT(t.nodes[1].distance[2], 21);
    CHECK_EQ_INT(t.nodes[1].distance[0], 16);
    CHECK_EQ_INT(psp_layout_per_node(&t, 0, 8, &l), 8);
    check_layout_on_nodes(&t, &l);
    int on0 = 0, on1 = 0;
    for (int p = 0; p < l.count; p++) {
        on0 += l.proxy[p].node == 0;
        on1 += l.proxy[p].node == 1;
        CHECK(l.proxy[p].node != 3);
    }
    CHECK_EQ_INT(on0, 6);
    CHECK_EQ_INT(on1, 2);
    /* Two proxies: one per node, whatever their sizes. */
    CHECK_EQ_INT(psp_layout_per_node(&t, 2, 8, &l), 2);
    CHECK(l.proxy[0].node == 0 && l.proxy[1].node == 1);
    check_range(&l.proxy[0].cpus, 0, 5);
    check_range(&l.proxy[1].cpus, 6, 7);
}

/* Offline CPUs are nobody's; a node whose CPUs are all offline gets no proxy. */
static void offline_cpus(void)
{
    static struct psp_topology t;
    static struct psp_layout l;
    const char *root = symmetric("offline", 4, 2);
    write_tree_file(root, "sys/devices/system/cpu/online", "0,2-5\n"); /* 1 and 6-7 offline */
    CHECK_EQ_INT(psp_topology_read(root, NULL, &t), 0);
    CHECK_EQ_INT(t.nodes[0].cpu_count, 1);
    check_range(&t.nodes[0].cpus, 0, 0);
    CHECK_EQ_INT(t.nodes[1].cpu_count, 2);
    CHECK_EQ_INT(t.nodes[3].cpu_count, 0);
    check_range(&t.nodes[3].all_cpus, 6, 7);
    CHECK_EQ_INT(t.usable_nodes, 3);
    CHECK_EQ_INT(psp_layout_per_node(&t, 0, 8, &l), 5);
    check_layout_on_nodes(&t, &l);
    for (int p = 0; p < l.count; p++)
        CHECK(l.proxy[p].node != 3);
}

/* The launcher's cpuset (v2 cpuset.cpus.effective, and v1 cpuset.effective_cpus where
 * v2 has no cpuset) and its affinity limit the nodes; excluded mems are not bound. */
static void cpuset_restricted(void)
{
    static struct psp_topology t;
    static struct psp_layout l;
    const char *root = symmetric("cpuset2", 2, 4);
    write_tree_file(root, "proc/self/cgroup", "0::/job/step\n");
    write_tree_file(root, "sys/fs/cgroup/job/step/cpuset.cpus.effective", "2-5\n");
    write_tree_file(root, "sys/fs/cgroup/job/step/cpuset.mems.effective", "1\n");
    CHECK_EQ_INT(psp_topology_read(root, NULL, &t), 0);
    CHECK_EQ_INT(t.nodes[0].cpu_count, 2);
    check_range(&t.nodes[0].cpus, 2, 3);
    check_range(&t.nodes[1].cpus, 4, 5);
    CHECK(!t.nodes[0].memory_allowed && t.nodes[1].memory_allowed);
    CHECK_EQ_INT(psp_layout_per_node(&t, 0, 8, &l), 4);
    for (int p = 0; p < l.count; p++)
        CHECK_EQ_INT(l.proxy[p].bind_memory, l.proxy[p].node == 1);

    /* Affinity too: only CPU 5 of those. */
    cpu_set_t mask;
    CPU_ZERO(&mask);
    CPU_SET(5, &mask);
    CPU_SET(7, &mask);
    CHECK_EQ_INT(psp_topology_read(root, &mask, &t), 0);
    CHECK_EQ_INT(t.usable_nodes, 1);
    CHECK_EQ_INT(t.nodes[0].cpu_count, 0);
    check_range(&t.nodes[1].cpus, 5, 5);

    /* Hybrid: the v2 mount at /sys/fs/cgroup/unified without cpuset, v1 cpuset. */
    root = symmetric("cpuset1", 2, 4);
    write_tree_file(root, "proc/self/cgroup", "9:name=systemd:/\n3:cpuset:/batch\n2:cpu,cpuacct:/\n0::/\n");
    write_tree_file(root, "sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n");
    write_tree_file(root, "sys/fs/cgroup/cpuset/batch/cpuset.effective_cpus", "0-1,6\n");
    write_tree_file(root, "sys/fs/cgroup/cpuset/batch/cpuset.effective_mems", "0-1\n");
    CHECK_EQ_INT(psp_topology_read(root, NULL, &t), 0);
    CHECK_EQ_INT(t.nodes[0].cpu_count, 2);
    CHECK_EQ_INT(t.nodes[1].cpu_count, 1);
    check_range(&t.nodes[1].cpus, 6, 6);
    CHECK(t.nodes[0].memory_allowed && t.nodes[1].memory_allowed);

    /* No cgroup file at all: nothing limits. */
    root = symmetric("nocg", 2, 1);
    CHECK_EQ_INT(psp_topology_read(root, NULL, &t), 0);
    CHECK_EQ_INT(t.usable_nodes, 2);
}

/* One broken file at a time: a clear error (errno and a message naming the file),
 * never a crash; the same bytes in other files too. */
static void malformed_files(void)
{
    static struct psp_topology t;
    struct bad {
        const char *rel;
        const char *content; /* NULL: remove the file */
        int err;
        const char *words;   /* in the message */
    } cases[] = {
        {"sys/devices/system/node/node1/cpulist", "0-x\n", EINVAL, "node1/cpulist"},
        {"sys/devices/system/node/node1/cpulist", "3-1\n", EINVAL, "not a CPU list"},
        {"sys/devices/system/node/node1/cpulist", "0,,1\n", EINVAL, "not a CPU list"},
        {"sys/devices/system/node/node1/cpulist", "-1\n", EINVAL, "node1/cpulist"},
        {"sys/devices/system/node/node1/cpulist", "0\n", EINVAL, "another node"},
        {"sys/devices/system/node/node1/cpulist", NULL, ENOENT, "node1/cpulist"},
        {"sys/devices/system/node/node0/distance", "10 abc\n", EINVAL, "distances"},
        {"sys/devices/system/node/node0/distance", "10\n", EINVAL, "1 distances for 2 nodes"},
        {"sys/devices/system/node/node0/distance", "10 20 30\n", EINVAL, "3 distances"},
        {"sys/devices/system/node/node0/distance", "10 999\n", EINVAL, "out of range"},
        {"sys/devices/system/node/node0/distance", "", EINVAL, "0 distances"},
        {"sys/devices/system/node/node0/distance", NULL, ENOENT, "node0/distance"},
        {"sys/devices/system/cpu/online", "\x01\x02\xff\n", EINVAL, "cpu/online"},
        {"sys/devices/system/cpu/online", NULL, ENOENT, "cpu/online"},
        {"sys/devices/system/node/node64/cpulist", "9\n", EINVAL, "node64"},
        {"proc/self/cgroup", "0::/x\n", 0, ""}, /* no such cpuset file: not limited */
        {"sys/fs/cgroup/x/cpuset.cpus.effective", "zz\n", EINVAL, "cpuset.cpus.effective"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        char name[32];
        snprintf(name, sizeof(name), "bad%zu", c);
        const char *root = symmetric(name, 2, 2);
        if (c == sizeof(cases) / sizeof(cases[0]) - 1)
            write_tree_file(root, "proc/self/cgroup", "0::/x\n");
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", root, cases[c].rel);
        if (cases[c].content == NULL)
            CHECK(unlink(path) == 0);
        else
            write_tree_file(root, cases[c].rel, cases[c].content);
        int err = psp_topology_read(root, NULL, &t);
        if (err != cases[c].err || strstr(t.error, cases[c].words) == NULL) {
            fprintf(stderr, "case %zu (%s): error %d \"%s\", expected %d with \"%s\"\n", c, cases[c].rel, err, t.error,
                    cases[c].err, cases[c].words);
            exit(1);
        }
        if (err != 0)
            fprintf(stderr, "  %s\n", t.error);
    }
    /* No node directory at all (a kernel without NUMA): one node 0, made up. */
    const char *root = new_root("nonuma");
    write_tree_file(root, "sys/devices/system/cpu/online", "0-3\n");
    CHECK_EQ_INT(psp_topology_read(root, NULL, &t), 0);
    CHECK(t.synthetic && t.count == 1 && t.nodes[0].cpu_count == 4 && t.nodes[0].distance[0] == 10);
    /* An empty node directory: an error, not a made-up node. */
    root = new_root("emptynodes");
    write_tree_file(root, "sys/devices/system/cpu/online", "0-3\n");
    write_tree_file(root, "sys/devices/system/node/online", "0\n");
    CHECK_EQ_INT(psp_topology_read(root, NULL, &t), ENOENT);
    /* Random bytes in every file: any answer but a crash. */
    srand(12);
    for (int round = 0; round < 200; round++) {
        char name[32];
        snprintf(name, sizeof(name), "fuzz%d", round);
        const char *r = symmetric(name, 2, 2);
        const char *files[] = {"sys/devices/system/cpu/online", "sys/devices/system/node/node0/cpulist",
                               "sys/devices/system/node/node1/distance", "proc/self/cgroup"};
        char junk[64];
        int len = rand() % 63;
        for (int i = 0; i < len; i++)
            junk[i] = (char)("0123456789-, \n:/x"[rand() % 17]);
        junk[len] = '\0';
        write_tree_file(r, files[rand() % 4], junk);
        int err = psp_topology_read(r, NULL, &t);
        CHECK(err == 0 || err == EINVAL || err == ENOENT);
        CHECK(err == 0 || t.error[0] != '\0');
    }
}

/* Round-robin: k % n. Fill: as many consecutive instances as a node has CPUs. */
static void spread_policies(void)
{
    int cpus[3] = {2, 1, 3};
    int rr[8], fill[8];
    for (unsigned k = 0; k < 8; k++) {
        rr[k] = psp_spread_node(0, cpus, 3, k);
        fill[k] = psp_spread_node(1, cpus, 3, k);
    }
    const int want_rr[8] = {0, 1, 2, 0, 1, 2, 0, 1};
    const int want_fill[8] = {0, 0, 1, 2, 2, 2, 0, 0};
    for (int k = 0; k < 8; k++) {
        CHECK_EQ_INT(rr[k], want_rr[k]);
        CHECK_EQ_INT(fill[k], want_fill[k]);
    }
    CHECK_EQ_INT(psp_spread_node(1, cpus, 1, 5), 0);
}

/* This machine, read for real: every usable CPU is on some node. */
static void this_host(void)
{
    static struct psp_topology t;
    cpu_set_t mine;
    CHECK(sched_getaffinity(0, sizeof(mine), &mine) == 0);
    CHECK_EQ_INT(psp_topology_read("", &mine, &t), 0);
    int total = 0;
    for (int j = 0; j < t.count; j++) {
        fprintf(stderr, "node%d: %d usable CPUs, distance to node0 %d\n", t.nodes[j].id, t.nodes[j].cpu_count,
                t.nodes[j].distance[0]);
        total += t.nodes[j].cpu_count;
    }
    CHECK(t.count >= 1 && total == CPU_COUNT(&t.usable) && total >= 1);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"nodes_1_2_4_8", nodes_1_2_4_8},       {"asymmetric", asymmetric},
        {"offline_cpus", offline_cpus},         {"cpuset_restricted", cpuset_restricted},
        {"malformed_files", malformed_files},   {"spread_policies", spread_policies},
        {"this_host", this_host},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
