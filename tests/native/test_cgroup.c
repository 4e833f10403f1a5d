/* cgroup v2 placement on this host (skipped, with the reason, where no writable cgroup2
 * mount exists): children created directly in the attr's or the context's cgroup
 * (zygote and relay mode), the default following the caller's cgroup at spawn time
 * (the caller moves after create), typed errors, a pids.max limit where the v2
 * hierarchy has the pids controller, memory.max, per-instance cgroups, the fallback
 * without clone3. Every cgroup made here is removed. The pids/memory cases run in the
 * qemu guest (tests/kernel/guest.d/cgroup.sh), which has a writable cgroup2 of its own. */
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

static char g_mount[64];
static char g_base[1200];   /* our test cgroup (absolute path) */
static char g_home[512];  /* the cgroup we were in (relative to the mount) */

static const char *sleep_path(void)
{
    return access("/usr/bin/sleep", X_OK) == 0 ? "/usr/bin/sleep" : "/bin/sleep";
}

static bool setup(void)
{
    const char *mounts[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    for (int m = 0; m < 2 && g_mount[0] == '\0'; m++) {
        struct statfs sf;
        if (statfs(mounts[m], &sf) == 0 && sf.f_type == 0x63677270)
            snprintf(g_mount, sizeof(g_mount), "%s", mounts[m]);
    }
    if (g_mount[0] == '\0') {
        fprintf(stderr, "skipped: no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified\n");
        return false;
    }
    char *self = read_file("/proc/self/cgroup");
    CHECK(self != NULL);
    char *line = strncmp(self, "0::", 3) == 0 ? self : strstr(self, "\n0::");
    CHECK(line != NULL);
    line += line[0] == '\n' ? 4 : 3;
    size_t n = strcspn(line, "\n");
    memcpy(g_home, line, n);
    g_home[n] = '\0';
    free(self);
    snprintf(g_base, sizeof(g_base), "%s%s%spspawn-test-%d", g_mount, g_home, strcmp(g_home, "/") ? "/" : "",
             (int)getpid());
    if (mkdir(g_base, 0755) != 0) {
        fprintf(stderr, "skipped: cgroup v2 at %s is not writable here (%s)\n", g_mount, strerror(errno));
        return false;
    }
    return true;
}

static const char *sub(const char *name)
{
    static char paths[4][4096];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, 4096, "%s/%s", g_base, name);
    return p;
}

static void make_cgroup(const char *name)
{
    CHECK(mkdir(sub(name), 0755) == 0);
}

static void remove_cgroup(const char *name)
{
    /* A child just killed may take a moment to leave it. */
    for (int i = 0; i < 200 && rmdir(sub(name)) != 0; i++) {
        CHECK(errno == EBUSY);
        usleep(10 * 1000);
    }
}

static void teardown(void)
{
    CHECK(rmdir(g_base) == 0);
}

/* The cgroup v2 path of pid, relative to the mount. */
static void cgroup_of(pid_t pid, char *out, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    char *text = read_file(path);
    CHECK(text != NULL);
    char *line = strncmp(text, "0::", 3) == 0 ? text : strstr(text, "\n0::");
    CHECK(line != NULL);
    line += line[0] == '\n' ? 4 : 3;
    size_t n = strcspn(line, "\n");
    CHECK(n < size);
    memcpy(out, line, n);
    out[n] = '\0';
    free(text);
}

/* pid is in g_base/name. */
static void check_in(pid_t pid, const char *name)
{
    char got[4096], want[4096];
    cgroup_of(pid, got, sizeof(got));
    snprintf(want, sizeof(want), "%s", sub(name) + strlen(g_mount));
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "pid %d in %s, expected %s\n", (int)pid, got, want);
        exit(1);
    }
}

static void check_home(pid_t pid)
{
    char got[1024];
    cgroup_of(pid, got, sizeof(got));
    CHECK(strcmp(got, g_home) == 0);
}

static void kill_all(pspawn_context_t *ctx, const pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        if (pids[i] <= 0)
            continue;
        kill(pids[i], SIGKILL);
        int status;
        CHECK(pspawn_waitpid(ctx, pids[i], &status, 0) == pids[i]);
    }
}

static void move_self(const char *cgroup_dir)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup_dir);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    CHECK(write(fd, pid, (size_t)len) == len);
    close(fd);
}

static void move_home(void)
{
    char home[1100];
    snprintf(home, sizeof(home), "%s%s", g_mount, g_home);
    move_self(home);
}

/* Per batch (attr) and per context, in zygote and relay mode: children are born in the
 * cgroup; the proxies stay where they were; without either, children are where we are. */
static void children_born_in_cgroup(void)
{
    if (!setup())
        return;
    make_cgroup("batch");
    make_cgroup("ctx");
    for (int relay = 0; relay < 2; relay++) {
        pspawn_context_attr_t cattr;
        pspawn_context_attr_init(&cattr);
        cattr.flags = relay ? PSPAWN_CTX_RELAY : 0;
        pspawn_context_t plain, inctx;
        CHECK(pspawn_context_create_ex(&plain, sleep_path(), &cattr) == 0);
        cattr.cgroup = sub("ctx");
        CHECK(pspawn_context_create_ex(&inctx, sleep_path(), &cattr) == 0);
        char *argv[] = {"sleep", "30", NULL};
        pspawn_attr_t *attr;
        CHECK(pspawn_attr_create(&attr) == 0);
        CHECK(pspawn_attr_set_cgroup(attr, sub("batch")) == 0);
        pid_t pids[12];
        int errors[12];
        CHECK_EQ_INT(pspawn_nx(pids, errors, NULL, &plain, 4, argv, NULL, attr), 4);
        CHECK_EQ_INT(pspawn_n(pids + 4, &plain, 2, argv), 2);
        CHECK_EQ_INT(pspawn_n(pids + 6, &inctx, 3, argv), 3);
        CHECK_EQ_INT(pspawn_nx(pids + 9, errors, NULL, &inctx, 3, argv, NULL, attr), 3); /* attr wins */
        for (int i = 0; i < 4; i++)
            check_in(pids[i], "batch");
        for (int i = 4; i < 6; i++)
            check_home(pids[i]);
        for (int i = 6; i < 9; i++)
            check_in(pids[i], "ctx");
        for (int i = 9; i < 12; i++)
            check_in(pids[i], "batch");
        check_home(pspawn_context_proxy_pid(&inctx));
        /* NULL: back to the default. */
        CHECK(pspawn_attr_set_cgroup(attr, NULL) == 0);
        pid_t again;
        CHECK_EQ_INT(pspawn_nx(&again, errors, NULL, &plain, 1, argv, NULL, attr), 1);
        check_home(again);
        kill_all(&plain, &again, 1);
        pspawn_attr_destroy(attr);
        kill_all(&plain, pids, 6);
        kill_all(&inctx, pids + 6, 6);
        pspawn_context_destroy(&plain);
        pspawn_context_destroy(&inctx);
    }
    remove_cgroup("batch");
    remove_cgroup("ctx");
    teardown();
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* The caller moves into another cgroup after create: new children follow it (as after
 * fork+exec), old ones stay; back home, children are home again. */
static void default_follows_caller(void)
{
    if (!setup())
        return;
    make_cgroup("moved");
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, sleep_path(), -1) == 0);
    char *argv[] = {"sleep", "30", NULL};
    pid_t pids[6];
    CHECK_EQ_INT(pspawn_n(pids, &ctx, 2, argv), 2);
    move_self(sub("moved"));
    CHECK_EQ_INT(pspawn_n(pids + 2, &ctx, 2, argv), 2);
    move_home();
    CHECK_EQ_INT(pspawn_n(pids + 4, &ctx, 2, argv), 2);
    check_home(pids[0]);
    check_home(pids[1]);
    check_in(pids[2], "moved");
    check_in(pids[3], "moved");
    check_home(pids[4]);
    check_home(pids[5]);
    for (int k = 0; k < pspawn_context_proxy_count(&ctx); k++) {
        pid_t proxies[64];
        pspawn_context_proxy_pids(&ctx, proxies, 64);
        check_home(proxies[k]);
    }
    kill_all(&ctx, pids, 6);
    pspawn_context_destroy(&ctx);
    remove_cgroup("moved");
    teardown();
}

/* Errors, typed: no such cgroup, not a directory, a v1 hierarchy or not a cgroup at
 * all; at create too; a cgroup removed after it was opened fails each instance alone;
 * the exec backend refuses explicit cgroups. */
static void typed_errors(void)
{
    if (!setup())
        return;
    pspawn_attr_t *attr;
    CHECK(pspawn_attr_create(&attr) == 0);
    CHECK(pspawn_attr_set_cgroup(attr, sub("absent")) == -1 && errno == ENOENT);
    char file[4200];
    snprintf(file, sizeof(file), "%s/cgroup.procs", g_base);
    CHECK(pspawn_attr_set_cgroup(attr, file) == -1 && errno == ENOTDIR);
    CHECK(pspawn_attr_set_cgroup(attr, temp_dir()) == -1 && errno == EOPNOTSUPP);
    struct statfs sf;
    if (statfs("/sys/fs/cgroup/pids", &sf) == 0 && sf.f_type == 0x27e0eb /* CGROUP_SUPER_MAGIC (v1) */)
        CHECK(pspawn_attr_set_cgroup(attr, "/sys/fs/cgroup/pids") == -1 && errno == EOPNOTSUPP);
    CHECK(pspawn_attr_set_cgroup(NULL, g_base) == -1 && errno == EINVAL);
    pspawn_context_attr_t cattr;
    pspawn_context_attr_init(&cattr);
    cattr.cgroup = sub("absent");
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, sleep_path(), &cattr) == -1 && errno == ENOENT);

    /* Removed after it was opened: the kernel refuses each instance. */
    make_cgroup("gone");
    CHECK(pspawn_attr_set_cgroup(attr, sub("gone")) == 0);
    remove_cgroup("gone");
    CHECK(pspawn_context_create(&ctx, sleep_path(), -1) == 0);
    char *argv[] = {"sleep", "30", NULL};
    pid_t pids[3];
    int errors[3];
    CHECK_EQ_INT(pspawn_nx(pids, errors, NULL, &ctx, 3, argv, NULL, attr), -1);
    for (int i = 0; i < 3; i++) {
        CHECK(pids[i] == -1 && errors[i] != 0);
        fprintf(stderr, "removed cgroup: instance %d errno %d (%s)\n", i, errors[i], strerror(errors[i]));
    }
    CHECK_EQ_INT(pspawn_context_ping(&ctx), 0); /* the proxy is fine */
    pspawn_context_destroy(&ctx);

    /* Exec backend: ENOTSUP per instance. */
    make_cgroup("exec");
    CHECK(pspawn_attr_set_cgroup(attr, sub("exec")) == 0);
    cattr.cgroup = NULL;
    cattr.flags = PSPAWN_CTX_EXEC;
    CHECK(pspawn_context_create_ex(&ctx, sleep_path(), &cattr) == 0);
    CHECK_EQ_INT(pspawn_nx(pids, errors, NULL, &ctx, 2, argv, NULL, attr), -1);
    CHECK(errors[0] == ENOTSUP && errors[1] == ENOTSUP);
    pspawn_context_destroy(&ctx);
    pspawn_attr_destroy(attr);
    remove_cgroup("exec");
    teardown();
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* Writes `value` into g_base/name/file (name "" : g_base itself). */
static bool write_control(const char *name, const char *file, const char *value)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s%s%s/%s", g_base, name[0] ? "/" : "", name, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t len = (ssize_t)strlen(value);
    bool ok = write(fd, value, (size_t)len) == len;
    close(fd);
    return ok;
}

/* The controller delegated to our test cgroup's children; false (with the reason on
 * stderr: the test is skipped) where the v2 hierarchy does not have it for us. */
static bool enable_controller(const char *controller)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/cgroup.controllers", g_base);
    char *controllers = read_file(path);
    bool has = controllers != NULL && strstr(controllers, controller) != NULL;
    free(controllers);
    char plus[32];
    snprintf(plus, sizeof(plus), "+%s", controller);
    if (has && write_control("", "cgroup.subtree_control", plus))
        return true;
    char root[200];
    snprintf(root, sizeof(root), "%s/cgroup.controllers", g_mount);
    char *at_root = read_file(root);
    fprintf(stderr, "skipped: the cgroup v2 hierarchy here has no %s controller for us (%s: \"%.*s\"); "
                    "on this machine's host it is a v1 controller (the test runs in the qemu guest)\n",
            controller, root, at_root ? (int)strcspn(at_root, "\n") : 0, at_root ? at_root : "");
    free(at_root);
    return false;
}

/* setup() with the controller delegated; false: skipped (nothing left behind). */
static bool setup_with(const char *controller)
{
    if (!setup())
        return false;
    if (enable_controller(controller))
        return true;
    teardown();
    return false;
}

/* Of n instances `refused` failed with EAGAIN (pids.max; which ones depends on the
 * proxies' order), the others are in g_base/name. */
static void check_limited(const pid_t *pids, const int *errors, int n, int refused, const char *name)
{
    int failed = 0;
    for (int i = 0; i < n; i++) {
        if (pids[i] > 0) {
            check_in(pids[i], name);
        } else {
            CHECK_EQ_INT(errors[i], EAGAIN);
            failed++;
        }
    }
    CHECK_EQ_INT(failed, refused);
}

/* pids.max applies to the fork itself (born in the cgroup): needs the pids controller
 * in the v2 hierarchy, delegated down to our test cgroup. */
static void pids_limit(void)
{
    if (!setup_with("pids"))
        return;
    make_cgroup("limited");
    CHECK(write_control("limited", "pids.max", "3"));
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, sleep_path(), -1) == 0);
    pspawn_attr_t *attr;
    CHECK(pspawn_attr_create(&attr) == 0);
    CHECK(pspawn_attr_set_cgroup(attr, sub("limited")) == 0);
    char *argv[] = {"sleep", "30", NULL};
    pid_t pids[5];
    int errors[5];
    CHECK_EQ_INT(pspawn_nx(pids, errors, NULL, &ctx, 5, argv, NULL, attr), 3);
    check_limited(pids, errors, 5, 2, "limited");
    kill_all(&ctx, pids, 5);
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
    remove_cgroup("limited");
    teardown();
}

/* The case: a launcher that joins a pids-limited cgroup after creating its
 * context has the limit applied to its new children (the proxies stay where they
 * were); back home, the limit no longer applies. pids.max counts the launcher too. */
static void launcher_joins_limited_cgroup(void)
{
    if (!setup_with("pids"))
        return;
    make_cgroup("limited");
    CHECK(write_control("limited", "pids.max", "4")); /* us + 3 children */
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, sleep_path(), -1) == 0);
    char *argv[] = {"sleep", "30", NULL};
    move_self(sub("limited"));
    pid_t pids[8];
    int errors[8];
    CHECK_EQ_INT(pspawn_ne(pids, errors, &ctx, 5, argv, NULL), 3);
    check_limited(pids, errors, 5, 2, "limited");
    move_home();
    CHECK_EQ_INT(pspawn_ne(pids + 5, errors, &ctx, 3, argv, NULL), 3);
    for (int i = 5; i < 8; i++)
        check_home(pids[i]);
    check_home(pspawn_context_proxy_pid(&ctx));
    kill_all(&ctx, pids, 8);
    pspawn_context_destroy(&ctx);
    remove_cgroup("limited");
    teardown();
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* memory.max applies to children born in the cgroup: cow100m writes 100 MiB of
 * copy-on-write pages, which a 16 MiB cgroup (no swap) cannot hold: the OOM killer
 * ends it; the same program in our cgroup exits 0. */
static void memory_limit(void)
{
    if (!setup_with("memory"))
        return;
    make_cgroup("small");
    CHECK(write_control("small", "memory.max", "16M"));
    (void)write_control("small", "memory.swap.max", "0"); /* absent without swap support */
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, fixture("cow100m"), -1) == 0);
    pspawn_attr_t *attr;
    CHECK(pspawn_attr_create(&attr) == 0);
    CHECK(pspawn_attr_set_cgroup(attr, sub("small")) == 0);
    char *argv[] = {"cow100m", NULL};
    pid_t limited, free_one;
    int error;
    CHECK_EQ_INT(pspawn_nx(&limited, &error, NULL, &ctx, 1, argv, NULL, attr), 1);
    CHECK_EQ_INT(pspawn_nx(&free_one, &error, NULL, &ctx, 1, argv, NULL, NULL), 1);
    int status;
    CHECK(pspawn_waitpid(&ctx, limited, &status, 0) == limited);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        fprintf(stderr, "child in a 16M cgroup: status 0x%x, expected SIGKILL (OOM)\n", status);
        exit(1);
    }
    CHECK(pspawn_waitpid(&ctx, free_one, &status, 0) == free_one);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char events_path[4400];
    snprintf(events_path, sizeof(events_path), "%s/memory.events", sub("small"));
    char *events = read_file(events_path);
    CHECK(events != NULL && strstr(events, "oom_kill 1") != NULL);
    free(events);
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
    remove_cgroup("small");
    teardown();
}

/* Instance i in paths[i % count]; NULL entries get the batch's cgroup (the attr's, else
 * the default); several cgroups in one call; a bad path changes nothing. */
static void per_instance_cgroups(void)
{
    if (!setup())
        return;
    make_cgroup("a");
    make_cgroup("b");
    make_cgroup("batch");
    for (int relay = 0; relay < 2; relay++) {
        pspawn_context_attr_t cattr;
        pspawn_context_attr_init(&cattr);
        cattr.flags = relay ? PSPAWN_CTX_RELAY : 0;
        cattr.proxies = 2;
        pspawn_context_t ctx;
        CHECK(pspawn_context_create_ex(&ctx, sleep_path(), &cattr) == 0);
        pspawn_attr_t *attr;
        CHECK(pspawn_attr_create(&attr) == 0);
        const char *paths[3] = {sub("a"), NULL, sub("b")};
        CHECK(pspawn_attr_set_cgroup_per_instance(attr, paths, 3) == 0);
        const char *bad[2] = {sub("b"), sub("absent")};
        CHECK(pspawn_attr_set_cgroup_per_instance(attr, bad, 2) == -1 && errno == ENOENT);
        CHECK(pspawn_attr_set_cgroup_per_instance(attr, NULL, 2) == -1 && errno == EINVAL);
        char *argv[] = {"sleep", "30", NULL};
        pid_t pids[12];
        int errors[12];
        CHECK_EQ_INT(pspawn_nx(pids, errors, NULL, &ctx, 6, argv, NULL, attr), 6);
        CHECK(pspawn_attr_set_cgroup(attr, sub("batch")) == 0);
        CHECK_EQ_INT(pspawn_nx(pids + 6, errors, NULL, &ctx, 3, argv, NULL, attr), 3);
        CHECK(pspawn_attr_set_cgroup_per_instance(attr, NULL, 0) == 0);
        CHECK_EQ_INT(pspawn_nx(pids + 9, errors, NULL, &ctx, 3, argv, NULL, attr), 3);
        for (int i = 0; i < 6; i++) {
            if (i % 3 == 1)
                check_home(pids[i]);
            else
                check_in(pids[i], i % 3 == 0 ? "a" : "b");
        }
        check_in(pids[6], "a");
        check_in(pids[7], "batch");
        check_in(pids[8], "b");
        for (int i = 9; i < 12; i++)
            check_in(pids[i], "batch");
        pspawn_attr_destroy(attr);
        kill_all(&ctx, pids, 12);
        pspawn_context_destroy(&ctx);
    }
    remove_cgroup("a");
    remove_cgroup("b");
    remove_cgroup("batch");
    teardown();
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* clone3 refused with ENOSYS (what container runtimes' seccomp profiles do), so the
 * kernel cannot create children in a cgroup: they move themselves there before exec;
 * a move the kernel refuses (the cgroup was removed) fails each instance. Runs in a
 * child process, which keeps the filter. */
static void no_clone3_body(void)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(filter) / sizeof(filter[0]), .filter = filter};
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
    CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0);
    CHECK(syscall(__NR_clone3, NULL, 0) == -1 && errno == ENOSYS);
    for (int relay = 0; relay < 2; relay++) {
        pspawn_context_attr_t cattr;
        pspawn_context_attr_init(&cattr);
        cattr.flags = relay ? PSPAWN_CTX_RELAY : 0;
        pspawn_context_t ctx;
        CHECK(pspawn_context_create_ex(&ctx, sleep_path(), &cattr) == 0);
        pspawn_attr_t *attr;
        CHECK(pspawn_attr_create(&attr) == 0);
        CHECK(pspawn_attr_set_cgroup(attr, sub("moved")) == 0);
        char *argv[] = {"sleep", "30", NULL};
        pid_t pids[4];
        int errors[4];
        CHECK_EQ_INT(pspawn_nx(pids, errors, NULL, &ctx, 3, argv, NULL, attr), 3);
        for (int i = 0; i < 3; i++)
            check_in(pids[i], "moved");
        CHECK_EQ_INT(pspawn_n(pids + 3, &ctx, 1, argv), 1);
        check_home(pids[3]);
        kill_all(&ctx, pids, 4);
        make_cgroup("gone");
        CHECK(pspawn_attr_set_cgroup(attr, sub("gone")) == 0);
        remove_cgroup("gone");
        CHECK_EQ_INT(pspawn_nx(pids, errors, NULL, &ctx, 2, argv, NULL, attr), -1);
        CHECK(pids[0] == -1 && errors[0] != 0 && pids[1] == -1 && errors[1] != 0);
        fprintf(stderr, "fallback, removed cgroup: errno %d (%s)\n", errors[0], strerror(errors[0]));
        CHECK_EQ_INT(pspawn_context_ping(&ctx), 0);
        pspawn_attr_destroy(attr);
        pspawn_context_destroy(&ctx);
    }
    CHECK_EQ_INT(count_zombie_children(), 0);
    exit(0);
}

static void fallback_without_clone3(void)
{
    if (!setup())
        return;
    make_cgroup("moved");
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0)
        no_clone3_body();
    int status = wait_child(child, 60000);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    remove_cgroup("moved");
    teardown();
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"children_born_in_cgroup", children_born_in_cgroup},
        {"default_follows_caller", default_follows_caller},
        {"typed_errors", typed_errors},
        {"pids_limit", pids_limit},
        {"launcher_joins_limited_cgroup", launcher_joins_limited_cgroup},
        {"memory_limit", memory_limit},
        {"per_instance_cgroups", per_instance_cgroups},
        {"fallback_without_clone3", fallback_without_clone3},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
