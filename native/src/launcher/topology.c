/* NUMA topology from sysfs, limited by the launcher's affinity and cgroup cpuset; the
 * per-node layout of proxies; spreading instances over nodes. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/topology.h"

#define PSP_FILE_MAX 16384

const char *psp_topology_root(void)
{
    const char *root = getenv("PSPAWN_SYSFS_ROOT");
    return root != NULL ? root : "";
}

bool psp_parse_cpu_list(const char *text, cpu_set_t *set)
{
    CPU_ZERO(set);
    const char *p = text;
    while (*p == ' ' || *p == '\t')
        p++;
    while (*p != '\0' && *p != '\n') {
        if (!isdigit((unsigned char)*p))
            return false;
        char *end;
        errno = 0;
        long lo = strtol(p, &end, 10);
        if (errno != 0 || lo < 0)
            return false;
        long hi = lo;
        p = end;
        if (*p == '-') {
            if (!isdigit((unsigned char)p[1]))
                return false;
            hi = strtol(p + 1, &end, 10);
            if (errno != 0 || hi < lo)
                return false;
            p = end;
        }
        for (long c = lo; c <= hi && c < CPU_SETSIZE; c++)
            CPU_SET((size_t)c, set);
        if (*p == ',')
            p++;
        else if (*p != '\0' && *p != '\n')
            return false;
    }
    return true;
}

static void set_error(struct psp_topology *topo, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(topo->error, sizeof(topo->error), fmt, ap);
    va_end(ap);
}

/* The whole (small) file, NUL-terminated; NULL with errno if it cannot be read. */
static char *slurp(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = malloc(PSP_FILE_MAX);
    size_t len = 0;
    while (buf != NULL && len < PSP_FILE_MAX - 1) {
        ssize_t n = read(fd, buf + len, PSP_FILE_MAX - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    int err = errno;
    close(fd);
    if (buf == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    buf[len] = '\0';
    errno = err;
    return buf;
}

/* Reads a CPU list file: 0, ENOENT (absent) or EINVAL (does not parse). */
static int read_cpu_file(struct psp_topology *topo, const char *path, cpu_set_t *set, bool *empty)
{
    char *text = slurp(path);
    if (text == NULL) {
        set_error(topo, "%s: %s", path, strerror(errno));
        return ENOENT;
    }
    bool ok = psp_parse_cpu_list(text, set);
    if (empty != NULL) {
        const char *p = text;
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        *empty = *p == '\0';
    }
    free(text);
    if (!ok) {
        set_error(topo, "%s: not a CPU list", path);
        return EINVAL;
    }
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The launcher's cpuset (v2 cpuset.cpus.effective where the v2 hierarchy has the
 * controller, else v1 cpuset.effective_cpus): *found false if there is none. */
static int read_cpuset(const char *root, struct psp_topology *topo, cpu_set_t *cpus, cpu_set_t *mems,
                       bool *found)
{
    *found = false;
    char path[4096 + 256];
    snprintf(path, sizeof(path), "%s/proc/self/cgroup", root);
    char *text = slurp(path);
    if (text == NULL)
        return 0; /* no cgroups: nothing limits us */
    char v2[2048] = "", v1[2048] = "";
    bool has_v2 = false, has_v1 = false;
    for (char *line = text; *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
        if (c2 != NULL && c2[1] == '/' && strlen(c2 + 1) < sizeof(v2)) {
            *c2 = '\0';
            if (strcmp(line, "0:") == 0 || (strncmp(line, "0:", 2) == 0 && c1[1] == '\0')) {
                strcpy(v2, c2 + 1);
                has_v2 = true;
            } else {
                /* controllers between the colons, comma separated */
                for (char *tok = c1 + 1; tok != NULL && *tok != '\0';) {
                    char *comma = strchr(tok, ',');
                    size_t len = comma != NULL ? (size_t)(comma - tok) : strlen(tok);
                    if (len == 6 && strncmp(tok, "cpuset", 6) == 0) {
                        strcpy(v1, c2 + 1);
                        has_v1 = true;
                    }
                    tok = comma != NULL ? comma + 1 : NULL;
                }
            }
        }
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    free(text);
    const char *v2_mounts[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    for (int m = 0; has_v2 && m < 2 && !*found; m++) {
        snprintf(path, sizeof(path), "%s%s%s/cpuset.cpus.effective", root, v2_mounts[m], v2);
        if (access(path, R_OK) != 0)
            continue;
        bool empty = false;
        int err = read_cpu_file(topo, path, cpus, &empty);
        if (err != 0)
            return err;
        if (empty)
            continue;
        *found = true;
        snprintf(path, sizeof(path), "%s%s%s/cpuset.mems.effective", root, v2_mounts[m], v2);
        if (access(path, R_OK) != 0 || read_cpu_file(topo, path, mems, &empty) != 0 || empty)
            memset(mems, 0xff, sizeof(*mems));
    }
    if (has_v1 && !*found) {
        snprintf(path, sizeof(path), "%s/sys/fs/cgroup/cpuset%s/cpuset.effective_cpus", root, v1);
        if (access(path, R_OK) == 0) {
            bool empty = false;
            int err = read_cpu_file(topo, path, cpus, &empty);
            if (err != 0)
                return err;
            if (!empty) {
                *found = true;
                snprintf(path, sizeof(path), "%s/sys/fs/cgroup/cpuset%s/cpuset.effective_mems", root, v1);
                if (access(path, R_OK) != 0 || read_cpu_file(topo, path, mems, &empty) != 0 || empty)
                    memset(mems, 0xff, sizeof(*mems));
            }
        }
    }
    topo->error[0] = '\0';
    return 0;
}

static int parse_distances(struct psp_topology *topo, const char *path, const char *text, unsigned char *out,
                           int expected)
{
    int n = 0;
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\n' || *p == '\0')
            break;
        if (!isdigit((unsigned char)*p)) {
            set_error(topo, "%s: not a list of distances", path);
            return EINVAL;
        }
        char *end;
        long v = strtol(p, &end, 10);
        if (v < 0 || v > 255 || n >= PSP_MAX_NODES) {
            set_error(topo, "%s: distance out of range or too many", path);
            return EINVAL;
        }
        out[n++] = (unsigned char)v;
        p = end;
    }
    if (n != expected) {
        set_error(topo, "%s: %d distances for %d nodes", path, n, expected);
        return EINVAL;
    }
    return 0;
}

int psp_topology_read(const char *root, const cpu_set_t *affinity, struct psp_topology *topo)
{
    memset(topo, 0, sizeof(*topo));
    if (root == NULL)
        root = "";
    char path[4096 + 256];
    snprintf(path, sizeof(path), "%s/sys/devices/system/cpu/online", root);
    int err = read_cpu_file(topo, path, &topo->online, NULL);
    if (err != 0)
        return err;
    cpu_set_t usable = topo->online;
    if (affinity != NULL)
        CPU_AND(&usable, &usable, affinity);
    cpu_set_t cpuset_cpus, cpuset_mems;
    bool limited = false;
    memset(&cpuset_mems, 0xff, sizeof(cpuset_mems));
    if ((err = read_cpuset(root, topo, &cpuset_cpus, &cpuset_mems, &limited)) != 0)
        return err;
    if (limited) {
        cpu_set_t both;
        CPU_AND(&both, &usable, &cpuset_cpus);
        usable = both;
    }
    topo->usable = usable;

    /* The nodes: nodeN directories, in id order. */
    snprintf(path, sizeof(path), "%s/sys/devices/system/node", root);
    int ids[PSP_MAX_NODES];
    int count = 0;
    DIR *dir = opendir(path);
    if (dir == NULL) {
        /* A kernel without NUMA: one node 0 with every online CPU. */
        topo->synthetic = true;
        topo->count = 1;
        struct psp_node *node = &topo->nodes[0];
        node->id = 0;
        node->all_cpus = topo->online;
        node->cpus = usable;
        node->cpu_count = CPU_COUNT(&usable);
        node->memory_allowed = true;
        node->distance[0] = 10;
        topo->usable_nodes = node->cpu_count > 0;
        return 0;
    }
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        const char *name = e->d_name;
        if (strncmp(name, "node", 4) != 0 || !isdigit((unsigned char)name[4]))
            continue;
        char *end;
        long id = strtol(name + 4, &end, 10);
        if (*end != '\0')
            continue;
        if (id < 0 || id >= PSP_MAX_NODES || count >= PSP_MAX_NODES) {
            set_error(topo, "%s/%s: node id beyond %d", path, name, PSP_MAX_NODES - 1); /* before
                                                     closedir: `name` lives in the DIR */
            closedir(dir);
            return EINVAL;
        }
        ids[count++] = (int)id;
    }
    closedir(dir);
    if (count == 0) {
        set_error(topo, "%s: no nodeN directory", path);
        return ENOENT;
    }
    qsort(ids, (size_t)count, sizeof(int), cmp_int);
    topo->count = count;
    cpu_set_t seen;
    CPU_ZERO(&seen);
    for (int j = 0; j < count; j++) {
        struct psp_node *node = &topo->nodes[j];
        node->id = ids[j];
        snprintf(path, sizeof(path), "%s/sys/devices/system/node/node%d/cpulist", root, ids[j]);
        bool empty = false;
        if ((err = read_cpu_file(topo, path, &node->all_cpus, &empty)) != 0)
            return err;
        cpu_set_t overlap;
        CPU_AND(&overlap, &seen, &node->all_cpus);
        if (CPU_COUNT(&overlap) > 0) {
            set_error(topo, "%s: CPUs also listed by another node", path);
            return EINVAL;
        }
        CPU_OR(&seen, &seen, &node->all_cpus);
        CPU_AND(&node->cpus, &node->all_cpus, &usable);
        node->cpu_count = CPU_COUNT(&node->cpus);
        node->memory_allowed = CPU_ISSET((size_t)ids[j], &cpuset_mems);
        topo->usable_nodes += node->cpu_count > 0;
        snprintf(path, sizeof(path), "%s/sys/devices/system/node/node%d/distance", root, ids[j]);
        char *text = slurp(path);
        if (text == NULL) {
            set_error(topo, "%s: %s", path, strerror(errno));
            return ENOENT;
        }
        err = parse_distances(topo, path, text, node->distance, count);
        free(text);
        if (err != 0)
            return err;
    }
    return 0;
}

int psp_layout_per_node(const struct psp_topology *topo, int requested, int default_max, struct psp_layout *out)
{
    memset(out, 0, sizeof(*out));
    int usable_nodes = 0, n = 0;
    int index[PSP_MAX_NODES];
    for (int j = 0; j < topo->count; j++)
        if (topo->nodes[j].cpu_count > 0) {
            index[usable_nodes++] = j;
            n += topo->nodes[j].cpu_count;
        }
    if (usable_nodes == 0)
        return 0;
    int k = requested > 0 ? requested : (n < default_max ? n : default_max);
    if (k < usable_nodes)
        k = usable_nodes;
    if (k > PSP_LAYOUT_MAX)
        k = PSP_LAYOUT_MAX;
    /* One per node, then the rest in proportion to CPUs (largest remainders). */
    int per[PSP_MAX_NODES];
    int rest = k - usable_nodes, given = 0;
    long rem[PSP_MAX_NODES];
    for (int u = 0; u < usable_nodes; u++) {
        long share = (long)rest * topo->nodes[index[u]].cpu_count;
        per[u] = 1 + (int)(share / n);
        rem[u] = share % n;
        given += per[u] - 1;
    }
    while (given < rest) {
        int best = 0;
        for (int u = 1; u < usable_nodes; u++)
            if (rem[u] > rem[best])
                best = u;
        per[best]++;
        rem[best] = -1;
        given++;
    }
    int at = 0;
    for (int u = 0; u < usable_nodes; u++) {
        const struct psp_node *node = &topo->nodes[index[u]];
        int list[CPU_SETSIZE];
        int m = 0;
        for (int c = 0; c < CPU_SETSIZE && m < node->cpu_count; c++)
            if (CPU_ISSET(c, &node->cpus))
                list[m++] = c;
        for (int g = 0; g < per[u]; g++) {
            struct psp_layout_proxy *p = &out->proxy[at++];
            CPU_ZERO(&p->cpus);
            if (per[u] <= m) {
                for (int j = g * m / per[u]; j < (g + 1) * m / per[u]; j++)
                    CPU_SET((size_t)list[j], &p->cpus);
            } else {
                CPU_SET((size_t)list[g % m], &p->cpus);
            }
            p->domain = node->cpus;
            p->node = node->id;
            p->node_index = index[u];
            p->bind_memory = node->memory_allowed;
        }
    }
    out->count = at;
    out->pinned = true;
    out->per_node = true;
    return at;
}

int psp_spread_node(int policy, const int *cpus, int n, unsigned k)
{
    if (n <= 1)
        return 0;
    if (policy != 1 /* PSPAWN_SPREAD_FILL */)
        return (int)(k % (unsigned)n);
    unsigned total = 0;
    for (int j = 0; j < n; j++)
        total += cpus[j] > 0 ? (unsigned)cpus[j] : 1u;
    unsigned at = k % total;
    for (int j = 0; j < n; j++) {
        unsigned c = cpus[j] > 0 ? (unsigned)cpus[j] : 1u;
        if (at < c)
            return j;
        at -= c;
    }
    return n - 1;
}
