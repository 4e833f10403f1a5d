/* argv and environment sizes: one rule, execve's, in zygote and fallback mode alike,
 * checked against what a real execve does on this machine. */
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define MAX_ARG_STRLEN 131072 /* 32 pages, the terminator included */

/* A context in `mode` (zygote: noop; fallback: noop_static, which a zygote cannot serve)
 * with a shared buffer large enough for every size tried here. */
static void open_context(pspawn_context_t *ctx, int mode, const char **path)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.buffer_size = 16u << 20;
    attr.flags = mode == PSPAWN_MODE_FALLBACK ? PSPAWN_CTX_FALLBACK : 0;
    *path = fixture(mode == PSPAWN_MODE_FALLBACK ? "noop_static" : "noop");
    CHECK(pspawn_context_create_ex(ctx, *path, &attr) == 0);
    CHECK_EQ_INT(pspawn_context_mode(ctx), mode);
}

/* 0 if an instance started and exited 0, else the spawn's errno. */
static int spawn_errno(pspawn_context_t *ctx, char *const argv[], char *const envp[])
{
    errno = 0;
    pid_t pid = pspawn_e(ctx, argv, envp);
    if (pid < 0)
        return errno;
    int st = wait_child(pid, 30000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}

/* 0 if execve(path) in a forked child accepted the sizes (noop exits 0), else its errno. */
static int execve_errno(const char *path, char *const argv[], char *const envp[])
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execve(path, argv, envp);
        _exit(errno);
    }
    int st = wait_child(pid, 30000);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    CHECK(s != NULL);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static const int modes[] = {PSPAWN_MODE_ZYGOTE, PSPAWN_MODE_FALLBACK};

/* One string: 131071 bytes plus its NUL is MAX_ARG_STRLEN and works; one more is E2BIG,
 * as an argument and as an environment string. */
static void longest_string(void)
{
    char *fits = repeat('a', MAX_ARG_STRLEN - 1), *over = repeat('a', MAX_ARG_STRLEN);
    char *env_fits = repeat('e', MAX_ARG_STRLEN - 1), *env_over = repeat('e', MAX_ARG_STRLEN);
    memcpy(env_fits, "E=", 2);
    memcpy(env_over, "E=", 2);
    for (int m = 0; m < 2; m++) {
        pspawn_context_t ctx;
        const char *path;
        open_context(&ctx, modes[m], &path);
        char *none[] = {NULL};
        char *ok[] = {"noop", fits, NULL}, *big[] = {"noop", over, NULL}, *plain[] = {"noop", NULL};
        char *env_ok[] = {env_fits, NULL}, *env_big[] = {env_over, NULL};
        CHECK_EQ_INT(spawn_errno(&ctx, ok, none), 0);
        CHECK_EQ_INT(spawn_errno(&ctx, big, none), E2BIG);
        CHECK_EQ_INT(spawn_errno(&ctx, plain, env_ok), 0);
        CHECK_EQ_INT(spawn_errno(&ctx, plain, env_big), E2BIG);
        CHECK_EQ_INT(execve_errno(path, ok, none), 0);
        CHECK_EQ_INT(execve_errno(path, big, none), E2BIG);
        CHECK_EQ_INT(count_zombie_children(), 0);
        pspawn_context_destroy(&ctx);
    }
    free(fits);
    free(over);
    free(env_fits);
    free(env_over);
}

/* 400,000 one-byte arguments: 800 KB of strings, but 3.2 MB of pointers. */
static void many_strings(void)
{
    enum { N = 400000 };
    char **argv = malloc((N + 1) * sizeof(char *));
    CHECK(argv != NULL);
    for (int i = 0; i < N; i++)
        argv[i] = "a";
    argv[N] = NULL;
    char *none[] = {NULL};
    for (int m = 0; m < 2; m++) {
        pspawn_context_t ctx;
        const char *path;
        open_context(&ctx, modes[m], &path);
        CHECK_EQ_INT(spawn_errno(&ctx, argv, none), E2BIG);
        pid_t pids[4];
        int errors[4];
        errno = 0;
        CHECK(pspawn_ne(pids, errors, &ctx, 4, argv, none) == -1 && errno == E2BIG);
        for (int i = 0; i < 4; i++)
            CHECK(pids[i] == -1 && errors[i] == E2BIG);
        CHECK_EQ_INT(execve_errno(path, argv, none), E2BIG);
        CHECK_EQ_INT(count_zombie_children(), 0);
        pspawn_context_destroy(&ctx);
    }
    free(argv);
}

/* argv of `small` one-byte arguments, then `total` bytes of 'a' in strings of at most
 * MAX_ARG_STRLEN - 1 characters. */
struct args {
    char **argv;
    char *bytes;
};

static struct args make_args(size_t small, size_t total)
{
    size_t strings = 1 + small + total / (MAX_ARG_STRLEN - 1) + 1;
    struct args a = {.argv = malloc((strings + 1) * sizeof(char *)), .bytes = repeat('a', total + strings)};
    CHECK(a.argv != NULL);
    size_t n = 0;
    a.argv[n++] = "noop";
    for (size_t i = 0; i < small; i++)
        a.argv[n++] = "a";
    char *p = a.bytes;
    for (size_t left = total; left > 0;) {
        size_t len = left < MAX_ARG_STRLEN - 1 ? left : MAX_ARG_STRLEN - 1;
        a.argv[n++] = p;
        p[len] = '\0';
        p += len + 1;
        left -= len;
    }
    a.argv[n] = NULL;
    return a;
}

static void free_args(struct args *a)
{
    free(a->argv);
    free(a->bytes);
}

typedef int (*probe_fn)(void *context, const char *path, char *const argv[], char *const envp[]);

static int probe_execve(void *context, const char *path, char *const argv[], char *const envp[])
{
    (void)context;
    return execve_errno(path, argv, envp);
}

static int probe_pspawn(void *context, const char *path, char *const argv[], char *const envp[])
{
    (void)path;
    return spawn_errno(context, argv, envp);
}

static int probe(probe_fn fn, void *context, const char *path, size_t small, size_t total)
{
    struct args a = make_args(small, total);
    char *none[] = {NULL};
    int err = fn(context, path, a.argv, none);
    free_args(&a);
    CHECK(err == 0 || err == E2BIG);
    return err;
}

/* The largest `total` execve accepts (after `small` one-byte arguments). */
static size_t execve_boundary(const char *path, size_t small)
{
    size_t lo = 0, hi = 8u << 20; /* lo accepted, hi refused */
    CHECK_EQ_INT(probe(probe_execve, NULL, path, small, lo), 0);
    CHECK_EQ_INT(probe(probe_execve, NULL, path, small, hi), E2BIG);
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (probe(probe_execve, NULL, path, small, mid) == 0)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static void set_stack_soft_limit(rlim_t soft)
{
    struct rlimit r;
    CHECK(getrlimit(RLIMIT_STACK, &r) == 0);
    r.rlim_cur = soft;
    CHECK(setrlimit(RLIMIT_STACK, &r) == 0);
}

/* Where execve starts refusing, both modes start refusing, for a few stack limits and
 * with few or many pointers. */
static void boundary_matches_execve(void)
{
    struct rlimit saved;
    CHECK(getrlimit(RLIMIT_STACK, &saved) == 0);
    const rlim_t limits[] = {saved.rlim_cur, 1u << 20, RLIM_INFINITY};
    const size_t smalls[] = {0, 10000};
    for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
        if (limits[l] > saved.rlim_max)
            continue;
        set_stack_soft_limit(limits[l]);
        for (int m = 0; m < 2; m++) {
            pspawn_context_t ctx;
            const char *path;
            open_context(&ctx, modes[m], &path);
            for (size_t s = 0; s < sizeof(smalls) / sizeof(smalls[0]); s++) {
                size_t edge = execve_boundary(path, smalls[s]);
                printf("RLIMIT_STACK %ld KiB (-1: unlimited), %s, %zu one-byte arguments: execve and pspawn "
                       "accept up to %zu more bytes\n", limits[l] == RLIM_INFINITY ? -1L : (long)(limits[l] >> 10),
                       m == 0 ? "zygote" : "fallback", smalls[s], edge);
                CHECK_EQ_INT(probe(probe_pspawn, &ctx, path, smalls[s], edge), 0);
                CHECK_EQ_INT(probe(probe_pspawn, &ctx, path, smalls[s], edge + 1), E2BIG);
            }
            pspawn_context_destroy(&ctx);
        }
    }
    CHECK(setrlimit(RLIMIT_STACK, &saved) == 0);
    CHECK_EQ_INT(count_zombie_children(), 0);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"longest_string", longest_string},
        {"many_strings", many_strings},
        {"boundary_matches_execve", boundary_matches_execve},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
