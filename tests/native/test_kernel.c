/* The kernel backend's detection on a host without the pspawn/ipspawn system calls
 * (the backend itself is tested in the guest: tests/kernel/guest.d/kernel_backend.sh).
 * Absent: PSPAWN_KERNEL_AUTO serves everything through the proxies, silently and
 * correctly; PSPAWN_KERNEL_REQUIRE fails with ENOSYS; PSPAWN_KERNEL_FORBID works. A fake
 * /sys/kernel/pspawn (PSPAWN_SYSFS_ROOT) with another ABI, malformed or out-of-range
 * numbers, or numbers that are not these calls (ENOSYS, another call) is absent too:
 * nothing crashes and no process is left behind. */
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

static bool host_has_calls(void)
{
    struct stat st;
    return stat("/sys/kernel/pspawn", &st) == 0;
}

/* No child of ours is left (reaped or not). */
static void check_no_children(void)
{
    errno = 0;
    CHECK(waitpid(-1, NULL, WNOHANG | __WALL) == -1 && errno == ECHILD);
}

static int create_with(pspawn_context_t *ctx, const char *target, int kernel)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.kernel = kernel;
    return pspawn_context_create_ex(ctx, target, &attr);
}

/* Two report instances with their own argv through pspawn_vector, one pspawn_n of noop:
 * they start, report what they were given, exit 0 and are ours to wait for. */
static void spawns_work(pspawn_context_t *ctx, int want_mode)
{
    CHECK_EQ_INT(pspawn_request_mode(ctx, NULL), want_mode);
    char out[2][512], arg[2][32];
    char *argv[2][4];
    pspawn_instance_t in[2];
    for (int i = 0; i < 2; i++) {
        snprintf(out[i], sizeof(out[i]), "--report-out=%s/k%d.json", temp_dir(), i);
        snprintf(arg[i], sizeof(arg[i]), "inst-%d", i);
        argv[i][0] = (char *)fixture("report");
        argv[i][1] = arg[i];
        argv[i][2] = out[i];
        argv[i][3] = NULL;
        in[i] = (pspawn_instance_t){.argv = argv[i]};
    }
    pid_t pids[2];
    int errors[2];
    CHECK_EQ_INT(pspawn_vector(pids, errors, ctx, in, 2, NULL), 2);
    for (int i = 0; i < 2; i++) {
        int status;
        CHECK_EQ_INT(errors[i], 0);
        CHECK(waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        char *json = await_file(out[i] + strlen("--report-out="), 10000);
        CHECK(json != NULL);
        size_t n;
        char **got = json_strings(json, "argv", &n);
        CHECK_EQ_INT(n, 3);
        CHECK(strcmp(got[1], arg[i]) == 0);
        CHECK_EQ_INT(json_int(json, "ppid"), getpid());
        free_strings(got, n);
        free(json);
        unlink(out[i] + strlen("--report-out="));
    }
    char shared_out[512];
    snprintf(shared_out, sizeof(shared_out), "--report-out=%s/n.json", temp_dir());
    char *n_argv[] = {(char *)"report", shared_out, NULL};
    pid_t many[3];
    CHECK_EQ_INT(pspawn_n(many, ctx, 3, n_argv), 3);
    for (int i = 0; i < 3; i++) {
        int status;
        CHECK(waitpid(many[i], &status, 0) == many[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
}

static void absent_auto_uses_proxies(void)
{
    if (host_has_calls()) {
        fprintf(stderr, "skipped: this kernel has the calls\n");
        return;
    }
    CHECK_EQ_INT(pspawn_kernel_available(), 0);
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, fixture("report"), -1) == 0); /* attr defaults: AUTO */
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_ZYGOTE);
    spawns_work(&ctx, PSPAWN_MODE_ZYGOTE);
    pspawn_context_destroy(&ctx);
    pspawn_context_t exec;
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    CHECK_EQ_INT(attr.kernel, PSPAWN_KERNEL_AUTO);
    attr.flags = PSPAWN_CTX_EXEC;
    CHECK(pspawn_context_create_ex(&exec, fixture("report"), &attr) == 0);
    spawns_work(&exec, PSPAWN_MODE_EXEC);
    pspawn_context_destroy(&exec);
    check_no_children();
}

static void absent_require_fails(void)
{
    if (host_has_calls()) {
        fprintf(stderr, "skipped: this kernel has the calls\n");
        return;
    }
    int fds = count_open_fds();
    pspawn_context_t ctx = {.impl = (struct pspawn_impl *)&ctx};
    errno = 0;
    CHECK_EQ_INT(create_with(&ctx, fixture("report"), PSPAWN_KERNEL_REQUIRE), -1);
    CHECK_EQ_INT(errno, ENOSYS);
    CHECK(ctx.impl == NULL);
    CHECK_EQ_INT(count_open_fds(), fds);
    check_no_children();
}

static void forbid_works(void)
{
    pspawn_context_t ctx;
    CHECK(create_with(&ctx, fixture("report"), PSPAWN_KERNEL_FORBID) == 0);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_ZYGOTE);
    spawns_work(&ctx, PSPAWN_MODE_ZYGOTE);
    pspawn_context_destroy(&ctx);
    check_no_children();
}

static void bad_kernel_options(void)
{
    pspawn_context_t ctx;
    errno = 0;
    CHECK_EQ_INT(create_with(&ctx, fixture("report"), 3), -1);
    CHECK_EQ_INT(errno, EINVAL);
    errno = 0;
    CHECK_EQ_INT(create_with(&ctx, fixture("report"), -1), -1);
    CHECK_EQ_INT(errno, EINVAL);
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.kernel = PSPAWN_KERNEL_REQUIRE;
    attr.flags = PSPAWN_CTX_RELAY;
    errno = 0;
    CHECK_EQ_INT(pspawn_context_create_ex(&ctx, fixture("report"), &attr), -1);
    CHECK_EQ_INT(errno, EINVAL);
    errno = 0;
    CHECK_EQ_INT(pspawn_request_mode(NULL, NULL), -1);
    CHECK_EQ_INT(errno, EINVAL);
    errno = 0;
    CHECK_EQ_INT(pspawn_session_mode(NULL), -1);
    CHECK_EQ_INT(errno, EINVAL);
    check_no_children();
}

/* A fake sysfs: the real CPU list (the topology is read under the same root) and
 * kernel/pspawn with these contents (NULL: the file is missing). */
static const char *fake_root(int k, const char *abi, const char *pspawn_nr, const char *ipspawn_nr)
{
    static char root[4096];
    snprintf(root, sizeof(root), "%s/fake%d", temp_dir(), k);
    char *online = read_file("/sys/devices/system/cpu/online");
    CHECK(online != NULL);
    write_tree_file(root, "sys/devices/system/cpu/online", online);
    free(online);
    if (abi != NULL)
        write_tree_file(root, "sys/kernel/pspawn/abi_version", abi);
    if (pspawn_nr != NULL)
        write_tree_file(root, "sys/kernel/pspawn/pspawn_nr", pspawn_nr);
    if (ipspawn_nr != NULL)
        write_tree_file(root, "sys/kernel/pspawn/ipspawn_nr", ipspawn_nr);
    write_tree_file(root, "sys/kernel/pspawn/max_spawns", "8192\n");
    return root;
}

static void fake_sysfs_bogus_is_absent(void)
{
    if (host_has_calls()) {
        fprintf(stderr, "skipped: this kernel has the calls\n");
        return;
    }
    /* 451 and 452 are cachestat and fchmodat2 on newer kernels (EBADF/EFAULT for the
     * probe), 500/501 nothing (ENOSYS), 39 getpid (out of range: never called). */
    static const char *cases[][3] = {
        {"2\n", "451\n", "452\n"},   {"0\n", "451\n", "452\n"},     {"1\n", "451\n", "452\n"},
        {"1\n", "500\n", "501\n"},   {"1\n", "39\n", "39\n"},       {"1\n", "abc\n", "452\n"},
        {"1\n", "451", "451"},       {"1\n", "-451\n", "452\n"},    {"1\n", "99999999999999999999\n", "452\n"},
        {"", "", ""},                {"1x\n", "451\n", "452\n"},    {NULL, "451\n", "452\n"},
        {"1\n", NULL, "452\n"},      {"1\n", "451\n", NULL},        {"1\n", "9999\n", "10000\n"},
    };
    int fds = count_open_fds();
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        CHECK(setenv("PSPAWN_SYSFS_ROOT", fake_root((int)k, cases[k][0], cases[k][1], cases[k][2]), 1) == 0);
        CHECK_EQ_INT(pspawn_kernel_available(), 0);
        pspawn_context_t ctx;
        errno = 0;
        CHECK_EQ_INT(create_with(&ctx, fixture("report"), PSPAWN_KERNEL_REQUIRE), -1);
        CHECK_EQ_INT(errno, ENOSYS);
        check_no_children();
        CHECK(create_with(&ctx, fixture("report"), PSPAWN_KERNEL_AUTO) == 0);
        CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_ZYGOTE);
        spawns_work(&ctx, PSPAWN_MODE_ZYGOTE);
        pspawn_context_destroy(&ctx);
        check_no_children();
    }
    unsetenv("PSPAWN_SYSFS_ROOT");
    CHECK_EQ_INT(count_open_fds(), fds);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"absent_auto_uses_proxies", absent_auto_uses_proxies},
        {"absent_require_fails", absent_require_fails},
        {"forbid_works", forbid_works},
        {"bad_kernel_options", bad_kernel_options},
        {"fake_sysfs_bogus_is_absent", fake_sysfs_bogus_is_absent},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
