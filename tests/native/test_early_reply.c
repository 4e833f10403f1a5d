/* The early reply (PSP_OPT_REPLY_EARLY, the interceptor's): the proxy answers at the clone
 * only when no set-up step of the request can fail and a child of it has already got
 * past the image; otherwise it waits for the children's reports, as for any options.
 *
 * To see which it did, the tests make the one step that never fails in practice fail on
 * purpose: the proxy's RLIMIT_AS is lowered to its present size, so a child's first new
 * mapping (the image's block) gets ENOMEM. A reported spawn then fails with ENOMEM; an
 * early one has already returned its pid, and the child exits with 127 before main. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/attr.h"
#include "support.h"

static int exit_code(pid_t pid)
{
    int st = wait_child(pid, 20000);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static pspawn_context_t open_noop(void)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.proxies = 1;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop"), &attr) == 0);
    return ctx;
}

/* No new mapping fits in the proxy (nor in its children, which are its copies). */
static struct rlimit freeze_address_space(pid_t proxy)
{
    struct rlimit old;
    CHECK(prlimit(proxy, RLIMIT_AS, NULL, &old) == 0);
    long vm_kb = proc_status_field(proxy, "VmSize:");
    CHECK(vm_kb > 0);
    struct rlimit tight = {.rlim_cur = (rlim_t)vm_kb * 1024, .rlim_max = old.rlim_max};
    CHECK(prlimit(proxy, RLIMIT_AS, &tight, NULL) == 0);
    return old;
}

static pspawn_attr_t *early_attr(void)
{
    pspawn_attr_t *attr;
    CHECK(pspawn_attr_create(&attr) == 0);
    CHECK(pspawn_attr_set_umask(attr, 022) == 0);
    CHECK(psp_attr_reply_early(attr) == 0);
    return attr;
}

/* Spawns one noop with attr; returns its pid, or -errno. */
static pid_t spawn_with(pspawn_context_t *ctx, const pspawn_attr_t *attr)
{
    char *argv[] = {"noop", NULL};
    char *envp[] = {NULL};
    pid_t pid = pspawn_x(ctx, argv, envp, attr, NULL);
    return pid > 0 ? pid : -errno;
}

/* Before any child of the proxy got past set-up, the image is not known to be
 * installable there: the early request is reported like any other. */
static void reported_until_a_child_proved_the_image(void)
{
    pspawn_context_t ctx = open_noop();
    pid_t proxy = pspawn_context_proxy_pid(&ctx);
    struct rlimit old = freeze_address_space(proxy);
    pspawn_attr_t *attr = early_attr();
    CHECK_EQ_INT(spawn_with(&ctx, attr), -ENOMEM);
    CHECK(prlimit(proxy, RLIMIT_AS, &old, NULL) == 0);
    pid_t pid = spawn_with(&ctx, attr);
    CHECK(pid > 0);
    CHECK_EQ_INT(exit_code(pid), 0);
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* Once proven, the early request returns at the clone; a request with a step that can
 * fail, or without the flag, still waits for the report. */
static void early_only_when_no_step_can_fail(void)
{
    pspawn_context_t ctx = open_noop();
    pid_t proxy = pspawn_context_proxy_pid(&ctx);
    pspawn_attr_t *early = early_attr();
    pid_t pid = spawn_with(&ctx, early);
    CHECK(pid > 0);
    CHECK_EQ_INT(exit_code(pid), 0);
    struct rlimit old = freeze_address_space(proxy);

    pid = spawn_with(&ctx, early); /* answered before the child failed */
    CHECK(pid > 0);
    CHECK_EQ_INT(exit_code(pid), 127);

    pspawn_attr_t *plain;
    CHECK(pspawn_attr_create(&plain) == 0);
    CHECK(pspawn_attr_set_umask(plain, 022) == 0);
    CHECK_EQ_INT(spawn_with(&ctx, plain), -ENOMEM);

    pspawn_attr_t *with_cwd = early_attr(); /* chdir can fail */
    CHECK(pspawn_attr_set_cwd(with_cwd, temp_dir()) == 0);
    CHECK_EQ_INT(spawn_with(&ctx, with_cwd), -ENOMEM);

    pspawn_attr_t *with_file = early_attr(); /* open can fail */
    CHECK(pspawn_attr_stdio_null(with_file, 0) == 0);
    CHECK_EQ_INT(spawn_with(&ctx, with_file), -ENOMEM);

    pspawn_attr_t *with_group = early_attr(); /* joining a group can fail, leading one cannot */
    CHECK(pspawn_attr_set_process_group(with_group, getpgrp()) == 0);
    CHECK_EQ_INT(spawn_with(&ctx, with_group), -ENOMEM);
    CHECK(pspawn_attr_set_process_group(with_group, 0) == 0);
    pid = spawn_with(&ctx, with_group);
    CHECK(pid > 0);
    CHECK_EQ_INT(exit_code(pid), 127);

    pspawn_attr_t *with_limit = early_attr(); /* setrlimit can fail */
    CHECK(pspawn_attr_add_rlimit(with_limit, RLIMIT_CORE, 0, 0) == 0);
    CHECK_EQ_INT(spawn_with(&ctx, with_limit), -ENOMEM);

    CHECK(prlimit(proxy, RLIMIT_AS, &old, NULL) == 0);
    pid = spawn_with(&ctx, early);
    CHECK(pid > 0);
    CHECK_EQ_INT(exit_code(pid), 0);
    pspawn_attr_destroy(early);
    pspawn_attr_destroy(plain);
    pspawn_attr_destroy(with_cwd);
    pspawn_attr_destroy(with_file);
    pspawn_attr_destroy(with_group);
    pspawn_attr_destroy(with_limit);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

/* A descriptor map is early only while its moves fit below the child's RLIMIT_NOFILE
 * (the child holds the proxy's descriptors while it moves the map's above its floor). */
static void descriptor_map_early_only_with_room(void)
{
    pspawn_context_t ctx = open_noop();
    pid_t proxy = pspawn_context_proxy_pid(&ctx);
    pspawn_attr_t *early = early_attr();
    int targets[] = {0, 1, 2, 200};
    int sources[] = {0, 1, 2, 2};
    CHECK(psp_attr_set_fd_map(early, targets, sources, 4) == 0);
    pid_t pid = spawn_with(&ctx, early);
    CHECK(pid > 0);
    CHECK_EQ_INT(exit_code(pid), 0);
    struct rlimit old = freeze_address_space(proxy);
    pid = spawn_with(&ctx, early);
    CHECK(pid > 0);
    CHECK_EQ_INT(exit_code(pid), 127);

    struct rlimit files, tight;
    CHECK(prlimit(proxy, RLIMIT_NOFILE, NULL, &files) == 0);
    tight = (struct rlimit){.rlim_cur = 210, .rlim_max = files.rlim_max}; /* 201 + 4 + the proxy's > 210 */
    CHECK(prlimit(proxy, RLIMIT_NOFILE, &tight, NULL) == 0);
    CHECK_EQ_INT(spawn_with(&ctx, early), -ENOMEM);
    CHECK(prlimit(proxy, RLIMIT_NOFILE, &files, NULL) == 0);

    CHECK(prlimit(proxy, RLIMIT_AS, &old, NULL) == 0);
    pid = spawn_with(&ctx, early);
    CHECK(pid > 0);
    CHECK_EQ_INT(exit_code(pid), 0);
    pspawn_attr_destroy(early);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"reported_until_a_child_proved_the_image", reported_until_a_child_proved_the_image},
        {"early_only_when_no_step_can_fail", early_only_when_no_step_can_fail},
        {"descriptor_map_early_only_with_room", descriptor_map_early_only_with_room},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
