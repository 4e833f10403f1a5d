/* PSPAWN_CTX_WATCH_IMAGE: once a file the proxy's image was loaded from changed on disk,
 * spawns fail with ESTALE (an exec would load the new file); changes to other names in
 * the same directory do not count. (Libraries: intercept.libchange rebuilds one.) */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

static const char *target;

static void create(pspawn_context_t *ctx, unsigned flags)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = flags;
    attr.proxies = 1;
    CHECK(pspawn_context_create_ex(ctx, target, &attr) == 0);
    CHECK_EQ_INT(pspawn_context_mode(ctx), PSPAWN_MODE_ZYGOTE);
}

/* 0 if an instance ran and exited 0, else the spawn's errno. */
static int spawn_errno(pspawn_context_t *ctx)
{
    char *argv[] = {"noop", NULL};
    errno = 0;
    pid_t pid = pspawn(ctx, argv);
    if (pid < 0)
        return errno;
    int st = wait_child(pid, 30000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}

/* The target: a copy of noop in the test's folder (kept: copy_fixture's buffer rotates). */
static void setup(void)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s", copy_fixture("noop", "noop", 0755));
    target = path;
}

static void renamed_over_is_stale(void)
{
    setup();
    pspawn_context_t ctx;
    create(&ctx, PSPAWN_CTX_WATCH_IMAGE);
    CHECK_EQ_INT(spawn_errno(&ctx), 0);
    const char *other = copy_fixture("noop", "noop.new", 0755);
    CHECK(rename(other, target) == 0);
    CHECK_EQ_INT(spawn_errno(&ctx), ESTALE);
    CHECK_EQ_INT(spawn_errno(&ctx), ESTALE); /* for good */
    pspawn_context_destroy(&ctx);
    create(&ctx, PSPAWN_CTX_WATCH_IMAGE); /* a new context loads the new file */
    CHECK_EQ_INT(spawn_errno(&ctx), 0);
    pspawn_context_destroy(&ctx);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

static void chmod_is_stale(void)
{
    setup();
    pspawn_context_t ctx;
    create(&ctx, PSPAWN_CTX_WATCH_IMAGE);
    CHECK_EQ_INT(spawn_errno(&ctx), 0);
    CHECK(chmod(target, 0700) == 0);
    CHECK_EQ_INT(spawn_errno(&ctx), ESTALE);
    pspawn_context_destroy(&ctx);
}

static void other_names_do_not_count(void)
{
    setup();
    pspawn_context_t ctx;
    create(&ctx, PSPAWN_CTX_WATCH_IMAGE);
    CHECK_EQ_INT(spawn_errno(&ctx), 0);
    const char *other = make_file("noop.o", "object", 0644);
    char moved[4096];
    snprintf(moved, sizeof(moved), "%s.renamed", other);
    CHECK(rename(other, moved) == 0);
    CHECK(unlink(moved) == 0);
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(spawn_errno(&ctx), 0);
    pspawn_context_destroy(&ctx);
}

/* Without the flag the old image goes on serving (documented). */
static void without_the_flag_the_old_image_serves(void)
{
    setup();
    pspawn_context_t ctx;
    create(&ctx, 0);
    CHECK_EQ_INT(spawn_errno(&ctx), 0);
    CHECK(rename(copy_fixture("noop", "noop.new", 0755), target) == 0);
    CHECK_EQ_INT(spawn_errno(&ctx), 0);
    pspawn_context_destroy(&ctx);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"renamed_over_is_stale", renamed_over_is_stale},
        {"chmod_is_stale", chmod_is_stale},
        {"other_names_do_not_count", other_names_do_not_count},
        {"without_the_flag_the_old_image_serves", without_the_flag_the_old_image_serves},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
