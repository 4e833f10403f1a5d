/* The deferred fork point (PSPAWN_CTX_DEFERRED, pspawn_ready.h): children are forked
 * where the program called pspawn_ready(), after its start-up, and get their own argv and
 * environment; run without PSpawn, pspawn_ready() is a no-op; a program that never calls
 * it fails context creation. */
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

static char data_path[4200], data_env[4300];
static long long data_sum;

/* The fixture's costly input: 20,000 integers. */
static void make_data(void)
{
    snprintf(data_path, sizeof(data_path), "%s/deferred-data.txt", temp_dir());
    FILE *f = fopen(data_path, "w");
    CHECK(f != NULL);
    data_sum = 0;
    for (int i = 1; i <= 20000; i++) {
        fprintf(f, "%d\n", i * 3);
        data_sum += i * 3;
    }
    CHECK(fclose(f) == 0);
    snprintf(data_env, sizeof(data_env), "DEFERRED_DATA=%s", data_path);
}

static int exit_code(pid_t pid)
{
    int st = wait_child(pid, 20000);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* The fixture's output, checked line by line against `want` (NULL-terminated). */
static void check_output(const char *path, const char *const want[])
{
    char *text = await_file(path, 20000);
    CHECK(text != NULL);
    char *cursor = text;
    for (size_t i = 0; want[i] != NULL; i++) {
        size_t n = strlen(want[i]);
        if (strncmp(cursor, want[i], n) != 0 || cursor[n] != '\n') {
            fprintf(stderr, "line %zu: want '%s', got '%.*s'\n", i, want[i], (int)strcspn(cursor, "\n"), cursor);
            exit(1);
        }
        cursor += n + 1;
    }
    CHECK(*cursor == '\0');
    free(text);
}

static void outside_pspawn_is_a_no_op(void)
{
    make_data();
    char out[4200], sum[64];
    snprintf(out, sizeof(out), "%s/alone.txt", temp_dir());
    snprintf(sum, sizeof(sum), "sum %lld", data_sum);
    char *argv[] = {"deferred", out, "alone", NULL};
    char *envp[] = {data_env, NULL};
    pid_t pid;
    CHECK(posix_spawn(&pid, fixture("deferred"), NULL, NULL, argv, envp) == 0);
    CHECK_EQ_INT(exit_code(pid), 0);
    char arg1[4300], env0[4400];
    snprintf(arg1, sizeof(arg1), "arg %s", out);
    snprintf(env0, sizeof(env0), "env %s", data_env);
    const char *want[] = {"ready 0", sum, "arg deferred", arg1, "arg alone", env0, NULL};
    check_output(out, want);
}

static void children_get_their_own_argv_and_environ(void)
{
    make_data();
    for (int pool = 0; pool <= 2; pool += 2) {
        pspawn_context_attr_t attr;
        pspawn_context_attr_init(&attr);
        attr.flags = PSPAWN_CTX_DEFERRED;
        attr.proxies = 1;
        attr.pool = pool;
        char *proxy_envp[] = {data_env, NULL};
        attr.proxy_envp = proxy_envp;
        pspawn_context_t ctx;
        CHECK(pspawn_context_create_ex(&ctx, fixture("deferred"), &attr) == 0);
        for (int k = 0; k < 3; k++) {
            char out[4200], sum[64], arg1[4300], arg2[64], env1[64];
            snprintf(out, sizeof(out), "%s/child-%d-%d.txt", temp_dir(), pool, k);
            snprintf(sum, sizeof(sum), "sum %lld", data_sum);
            snprintf(arg1, sizeof(arg1), "arg %s", out);
            snprintf(arg2, sizeof(arg2), "arg instance %d", k);
            snprintf(env1, sizeof(env1), "env K=%d", k);
            char instance[32], variable[32];
            snprintf(instance, sizeof(instance), "instance %d", k);
            snprintf(variable, sizeof(variable), "K=%d", k);
            char *argv[] = {"deferred-child", out, instance, NULL};
            char *envp[] = {"ONLY=this", variable, NULL};
            pid_t pid = pspawn_e(&ctx, argv, envp);
            CHECK(pid > 0);
            CHECK_EQ_INT(exit_code(pid), 0);
            /* The sum was computed once, in the proxy, before pspawn_ready(). */
            const char *want[] = {"ready 1", sum, "arg deferred-child", arg1, arg2, "env ONLY=this", env1, NULL};
            check_output(out, want);
        }
        if (pool > 0)
            CHECK(pspawn_context_pool_claims(&ctx) >= 1);
        pspawn_context_destroy(&ctx);
        CHECK_EQ_INT(count_zombie_children(), 0);
    }
}

static void a_program_that_never_calls_ready_fails_create(void)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.flags = PSPAWN_CTX_DEFERRED;
    attr.proxies = 1;
    pspawn_context_t ctx;
    errno = 0;
    CHECK_EQ_INT(pspawn_context_create_ex(&ctx, fixture("noop"), &attr), -1);
    CHECK_EQ_INT(errno, EPIPE); /* it ran main and exited: no proxy */
    CHECK_EQ_INT(count_zombie_children(), 0);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"outside_pspawn_is_a_no_op", outside_pspawn_is_a_no_op},
        {"children_get_their_own_argv_and_environ", children_get_their_own_argv_and_environ},
        {"a_program_that_never_calls_ready_fails_create", a_program_that_never_calls_ready_fails_create},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
