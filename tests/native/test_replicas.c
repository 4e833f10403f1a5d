/* Library replicas (PSPAWN_CTX_NUMA_REPLICAS) on this host: a node-bound context (numa
 * ON, one node here) runs its proxies from per-node copies of the executable and the
 * libraries they map; children behave as without replicas (same argv, environment,
 * descriptors, exit status), argv[0] is the caller's; the copies' size is reported and
 * they are gone after destroy. Where the copies' page cache lands: test_numa_guest. */
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

static bool open_replicas(pspawn_context_t *ctx, const char *target, bool replicas)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.numa = PSPAWN_NUMA_ON;
    attr.flags = replicas ? PSPAWN_CTX_NUMA_REPLICAS : 0;
    CHECK(pspawn_context_create_ex(ctx, target, &attr) == 0);
    int nodes[64];
    CHECK(pspawn_context_proxy_nodes(ctx, nodes, 64) >= 1);
    int node = nodes[0];
    if (node < 0) {
        fprintf(stderr, "skipped: the proxy is not node-bound here (numa ON gave node %d)\n", node);
        pspawn_context_destroy(ctx);
        return false;
    }
    return true;
}

/* The target of /proc/<pid>/exe. */
static void exe_of(pid_t pid, char *out, size_t size)
{
    char link[64];
    snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(link, out, size - 1);
    CHECK(n > 0);
    out[n] = '\0';
}

/* The replica root of a proxy: /proc/<proxy>/exe is ROOT/nodeN/<name>. */
static void replica_root(pid_t proxy, char *root, size_t size)
{
    exe_of(proxy, root, size);
    CHECK(strstr(root, "/pspawn-replicas-") != NULL);
    for (int k = 0; k < 2; k++)
        *strrchr(root, '/') = '\0';
}

/* Lines of /proc/<pid>/maps naming `name` (a file name): from the replica dir, elsewhere. */
static void count_mapped(pid_t pid, const char *root, const char *name, int *inside, int *outside)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    char *text = read_file(path);
    CHECK(text != NULL);
    *inside = *outside = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char *file = strchr(line, '/');
        const char *base = file != NULL ? strrchr(file, '/') + 1 : NULL;
        if (base == NULL || strcmp(base, name) != 0)
            continue;
        (strncmp(file, root, strlen(root)) == 0 ? inside : outside)[0]++;
    }
    free(text);
}

static long long dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    long long total = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX + 300];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        CHECK(stat(path, &st) == 0);
        total += S_ISDIR(st.st_mode) ? dir_bytes(path) : st.st_size;
    }
    closedir(d);
    return total;
}

/* The report fixture's JSON from one child of ctx (argv[0] "report-argv0"). */
static char *report_once(pspawn_context_t *ctx, const char *tag, pid_t *pid_out)
{
    char out[PATH_MAX], arg[PATH_MAX + 32];
    snprintf(out, sizeof(out), "%s/%s.json", temp_dir(), tag);
    snprintf(arg, sizeof(arg), "--report-out=%s", out);
    char *argv[] = {"report-argv0", arg, "--report-sleep-ms=20000", "x y", NULL};
    char *envp[] = {"A=1", "B=two", NULL};
    pid_t pid = pspawn_e(ctx, argv, envp);
    CHECK(pid > 0);
    char *json = await_file(out, 30000);
    CHECK(json != NULL);
    *pid_out = pid;
    return json;
}

static void replicas_used_and_removed(void)
{
    pspawn_context_t plain, ctx;
    if (!open_replicas(&ctx, fixture("report"), true))
        return;
    CHECK(open_replicas(&plain, fixture("report"), false));
    CHECK_EQ_INT(pspawn_context_replica_bytes(&plain), 0);
    pid_t proxy = pspawn_context_proxy_pid(&ctx);
    char root[PATH_MAX], exe[PATH_MAX];
    replica_root(proxy, root, sizeof(root));
    /* The executable, libc and the proxy library come from the replicas, nothing else. */
    const char *names[] = {"report", "libc.so.6", "libpspawn_proxy.so"};
    for (int k = 0; k < 3; k++) {
        int inside, outside;
        count_mapped(proxy, root, names[k], &inside, &outside);
        if (inside == 0 || outside != 0) {
            fprintf(stderr, "%s: %d mappings from %s, %d from elsewhere\n", names[k], inside, root, outside);
            exit(1);
        }
    }
    long long bytes = pspawn_context_replica_bytes(&ctx);
    CHECK_EQ_INT(bytes, dir_bytes(root));
    struct stat st;
    CHECK(stat(fixture("report"), &st) == 0 && bytes > st.st_size);
    fprintf(stderr, "replicas: %lld bytes in %s\n", bytes, root);

    /* Children: the same report as without replicas; /proc/self/exe is the copy. */
    pid_t a, b;
    char *with = report_once(&ctx, "with", &a);
    char *without = report_once(&plain, "without", &b);
    exe_of(a, exe, sizeof(exe));
    CHECK(strncmp(exe, root, strlen(root)) == 0);
    int status;
    kill(a, SIGKILL);
    kill(b, SIGKILL);
    CHECK(pspawn_waitpid(&ctx, a, &status, 0) == a && WIFSIGNALED(status));
    CHECK(pspawn_waitpid(&plain, b, &status, 0) == b && WIFSIGNALED(status));
    /* argv[1] names each child's own report file; everything else is the same. */
    const char *keys[] = {"argv", "env"};
    for (int k = 0; k < 2; k++) {
        size_t n1, n2;
        char **s1 = json_strings(with, keys[k], &n1);
        char **s2 = json_strings(without, keys[k], &n2);
        CHECK(n1 == n2);
        for (size_t i = 0; i < n1; i++)
            if (strcmp(s1[i], s2[i]) != 0 && !(k == 0 && i == 1)) {
                fprintf(stderr, "%s[%zu]: \"%s\" with replicas, \"%s\" without\n", keys[k], i, s1[i], s2[i]);
                exit(1);
            }
        if (k == 0)
            CHECK(n1 == 4 && strcmp(s1[0], "report-argv0") == 0);
        free_strings(s1, n1);
        free_strings(s2, n2);
    }
    size_t f1, f2;
    long long *fds1 = json_ints(with, "fds", &f1), *fds2 = json_ints(without, "fds", &f2);
    CHECK(f1 == f2 && memcmp(fds1, fds2, f1 * sizeof(long long)) == 0);
    free(fds1);
    free(fds2);
    free(with);
    free(without);
    pspawn_context_destroy(&plain);
    pspawn_context_destroy(&ctx);
    CHECK(access(root, F_OK) != 0 && errno == ENOENT);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* pynamic10's ten generated libraries (found through RUNPATH $ORIGIN/../lib normally)
 * are loaded from the replica directory; children exit 0. */
static void pynamic_libraries_replicated(void)
{
    if (access(fixture("pynamic10"), X_OK) != 0) {
        fprintf(stderr, "skipped: no pynamic10 fixture in this build tree (%s)\n", fixture("pynamic10"));
        return;
    }
    pspawn_context_t ctx;
    if (!open_replicas(&ctx, fixture("pynamic10"), true))
        return;
    pid_t proxy = pspawn_context_proxy_pid(&ctx);
    char root[PATH_MAX];
    replica_root(proxy, root, sizeof(root));
    for (int k = 0; k < 10; k++) {
        char name[64];
        snprintf(name, sizeof(name), "libpynamic10_%d.so", k);
        int inside, outside;
        count_mapped(proxy, root, name, &inside, &outside);
        CHECK(inside > 0 && outside == 0);
    }
    char *argv[] = {"pynamic10", NULL};
    pid_t pids[8];
    CHECK_EQ_INT(pspawn_n(pids, &ctx, 8, argv), 8);
    for (int i = 0; i < 8; i++) {
        int status;
        CHECK(pspawn_waitpid(&ctx, pids[i], &status, 0) == pids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    pspawn_context_destroy(&ctx);
    CHECK(access(root, F_OK) != 0 && errno == ENOENT);
}

/* Without per-node proxies the flag changes nothing; a bad context is EINVAL. */
static void replicas_need_per_node_proxies(void)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.numa = PSPAWN_NUMA_OFF;
    attr.flags = PSPAWN_CTX_NUMA_REPLICAS;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == 0);
    CHECK_EQ_INT(pspawn_context_replica_bytes(&ctx), 0);
    char exe[PATH_MAX];
    exe_of(pspawn_context_proxy_pid(&ctx), exe, sizeof(exe));
    CHECK(strcmp(exe, fixture("noop")) == 0);
    pspawn_context_destroy(&ctx);
    CHECK(pspawn_context_replica_bytes(NULL) == -1 && errno == EINVAL);
}

static int hold_context(pspawn_context_t *ctx)
{
    (void)ctx;
    pause();
    return 0;
}

/* A launcher killed with SIGKILL leaves its replicas; the next context with replicas
 * (of any launcher of the same user) removes them, since their pid is gone. */
static void leftovers_of_a_killed_launcher_removed(void)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/tmpdir", temp_dir());
    CHECK(mkdir(tmp, 0700) == 0);
    CHECK(setenv("TMPDIR", tmp, 1) == 0);
    pspawn_context_t probe;
    if (!open_replicas(&probe, fixture("noop"), true))
        return;
    pspawn_context_destroy(&probe);
    /* fork_launcher's child uses the default attr: make its context by hand instead. */
    pid_t launcher = fork();
    CHECK(launcher >= 0);
    if (launcher == 0) {
        pspawn_context_t ctx;
        if (!open_replicas(&ctx, fixture("noop"), true))
            _exit(1);
        (void)hold_context(&ctx);
        _exit(0);
    }
    char left[2 * PATH_MAX] = "";
    for (int i = 0; i < 3000 && left[0] == '\0'; i++) {
        DIR *d = opendir(tmp);
        CHECK(d != NULL);
        for (struct dirent *e; (e = readdir(d)) != NULL;)
            if (strncmp(e->d_name, "pspawn-replicas-", 16) == 0 && atoi(e->d_name + 16) == launcher)
                snprintf(left, sizeof(left), "%s/%s", tmp, e->d_name);
        closedir(d);
        usleep(10 * 1000);
    }
    CHECK(left[0] != '\0');
    usleep(300 * 1000); /* its proxies started: the copies are complete */
    kill(launcher, SIGKILL);
    CHECK(WIFSIGNALED(wait_child(launcher, 10000)));
    CHECK(access(left, F_OK) == 0); /* still there */
    pspawn_context_t ctx;
    CHECK(open_replicas(&ctx, fixture("noop"), true));
    CHECK(access(left, F_OK) != 0 && errno == ENOENT);
    pspawn_context_destroy(&ctx);
    CHECK(rmdir(tmp) == 0); /* nothing else left */
    unsetenv("TMPDIR");
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"replicas_used_and_removed", replicas_used_and_removed},
        {"pynamic_libraries_replicated", pynamic_libraries_replicated},
        {"replicas_need_per_node_proxies", replicas_need_per_node_proxies},
        {"leftovers_of_a_killed_launcher_removed", leftovers_of_a_killed_launcher_removed},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
