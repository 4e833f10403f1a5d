/* A child's start-up image as fork+exec would give it: what /proc shows of it, the
 * auxiliary vector past envp, its own stack canary and AT_RANDOM, its dumpable flag. */
#include <elf.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define CAP_SYS_RESOURCE_BIT 24
#define MAX_ARGS 16

struct bytes {
    char *data;
    size_t len;
};

static struct bytes read_bytes(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    struct bytes b = {.data = NULL, .len = 0};
    size_t cap = 0;
    for (;;) {
        if (b.len == cap)
            CHECK((b.data = realloc(b.data, cap = cap ? 2 * cap : 4096)) != NULL);
        ssize_t r = read(fd, b.data + b.len, cap - b.len);
        CHECK(r >= 0);
        if (r == 0)
            break;
        b.len += (size_t)r;
    }
    close(fd);
    return b;
}

static struct bytes proc_file(pid_t pid, const char *name)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
    return read_bytes(path);
}

/* The strings one after another, each with its NUL: the format of cmdline and environ. */
static struct bytes joined(char *const list[])
{
    struct bytes b = {.data = NULL, .len = 0};
    for (size_t i = 0; list[i] != NULL; i++)
        b.len += strlen(list[i]) + 1;
    CHECK((b.data = malloc(b.len + 1)) != NULL);
    char *out = b.data;
    for (size_t i = 0; list[i] != NULL; i++)
        out = stpcpy(out, list[i]) + 1;
    return b;
}

static void check_same_bytes(const char *what, struct bytes got, struct bytes want)
{
    if (got.len == want.len && memcmp(got.data, want.data, got.len) == 0)
        return;
    fprintf(stderr, "%s: got %zu bytes, expected %zu:\n  got:      ", what, got.len, want.len);
    for (size_t i = 0; i < got.len; i++)
        fputc(got.data[i] ? got.data[i] : '|', stderr);
    fprintf(stderr, "\n  expected: ");
    for (size_t i = 0; i < want.len; i++)
        fputc(want.data[i] ? want.data[i] : '|', stderr);
    fputc('\n', stderr);
    exit(1);
}

static unsigned long long cap_eff(pid_t pid)
{
    struct bytes status = proc_file(pid, "status");
    CHECK((status.data = realloc(status.data, status.len + 1)) != NULL);
    status.data[status.len] = '\0';
    const char *line = strstr(status.data, "CapEff:");
    CHECK(line != NULL);
    unsigned long long mask = strtoull(line + 7, NULL, 16);
    free(status.data);
    return mask;
}

static pspawn_context_t open_report(char *const proxy_envp[])
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.proxy_envp = proxy_envp;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("report"), &attr) == 0);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_ZYGOTE);
    return ctx;
}

/* A report child that wrote its JSON and sleeps until stopped: its /proc can be read. */
struct child {
    pid_t pid;
    char *argv[MAX_ARGS];
    char out[4200];
    char option[4300];
    char *json;
};

static void start_report(struct child *c, pspawn_context_t *ctx, char *const extra[], char *const envp[],
                         const pspawn_attr_t *attr, bool stay)
{
    static int serial;
    snprintf(c->out, sizeof(c->out), "%s/image-%d-%d.json", temp_dir(), (int)getpid(), serial++);
    snprintf(c->option, sizeof(c->option), "--report-out=%s", c->out);
    size_t n = 0;
    c->argv[n++] = "report";
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        CHECK(n < MAX_ARGS - 3);
        c->argv[n++] = extra[i];
    }
    c->argv[n++] = c->option;
    if (stay)
        c->argv[n++] = "--report-sleep-ms=60000";
    c->argv[n] = NULL;
    c->pid = pspawn_x(ctx, c->argv, envp, attr, NULL);
    CHECK(c->pid > 0);
    c->json = await_file(c->out, 20000);
}

static void stop_report(struct child *c)
{
    kill(c->pid, SIGKILL);
    int st = wait_child(c->pid, 20000);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    free(c->json);
}

static int finish_report(struct child *c)
{
    int st = wait_child(c->pid, 20000);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void check_cmdline(bool without_cap)
{
    pspawn_context_t ctx = open_report(NULL);
    if (without_cap)
        CHECK(((cap_eff(pspawn_context_proxy_pid(&ctx)) >> CAP_SYS_RESOURCE_BIT) & 1) == 0);
    char *extra[] = {"first", "with space", "", "\xc3\xa9t\xc3\xa9", NULL};
    char *envp[] = {"A=1", NULL};
    struct child c;
    start_report(&c, &ctx, extra, envp, NULL, true);
    struct bytes want = joined(c.argv);
    struct bytes got = proc_file(c.pid, "cmdline");
    check_same_bytes("/proc/<child>/cmdline", got, want);
    size_t n;
    char **seen = json_strings(c.json, "cmdline", &n);
    CHECK_EQ_INT(n, 7);
    CHECK(strcmp(seen[0], "report") == 0 && strcmp(seen[2], "with space") == 0 && seen[3][0] == '\0');
    free_strings(seen, n);
    free(got.data);
    free(want.data);
    stop_report(&c);
    pspawn_context_destroy(&ctx);
}

static void cmdline_is_the_childs(void)
{
    fprintf(stderr, "CAP_SYS_RESOURCE %s\n",
            (cap_eff(getpid()) >> CAP_SYS_RESOURCE_BIT) & 1 ? "held" : "not held");
    check_cmdline(false);
}

/* Out of every set, and out of the bounding set so that a proxy exec'd as root lacks it
 * too (a user other than root gets no capability from exec and may not drop it). */
static void drop_capability(int cap)
{
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
        CHECK(errno == EPERM && geteuid() != 0);
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    CHECK(syscall(SYS_capget, &header, data) == 0);
    uint32_t bit = 1u << (cap % 32);
    data[cap / 32].effective &= ~bit;
    data[cap / 32].permitted &= ~bit;
    data[cap / 32].inheritable &= ~bit;
    CHECK(syscall(SYS_capset, &header, data) == 0);
}

static void cmdline_without_cap_sys_resource(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        drop_capability(CAP_SYS_RESOURCE_BIT);
        CHECK(((cap_eff(getpid()) >> CAP_SYS_RESOURCE_BIT) & 1) == 0);
        check_cmdline(true);
        _exit(0);
    }
    int st = wait_child(pid, 60000);
    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(WEXITSTATUS(st), 0);
}

static void check_environ(pspawn_context_t *ctx, char *const envp[], const pspawn_attr_t *attr)
{
    struct child c;
    start_report(&c, ctx, NULL, envp, attr, true);
    struct bytes want = joined(envp);
    struct bytes got = proc_file(c.pid, "environ");
    check_same_bytes("/proc/<child>/environ", got, want);
    size_t n;
    char **seen = json_strings(c.json, "env", &n);
    size_t count = 0;
    while (envp[count] != NULL)
        count++;
    CHECK_EQ_INT(n, count);
    for (size_t i = 0; i < n; i++)
        CHECK(strcmp(seen[i], envp[i]) == 0);
    free_strings(seen, n);
    free(got.data);
    free(want.data);
    stop_report(&c);
}

static void environ_is_the_childs(void)
{
    char *proxy_envp[] = {"SECRET=create-time", "PATH=/usr/bin:/bin", NULL};
    pspawn_context_t ctx = open_report(proxy_envp);
    char *replaced[] = {"A=1", "SECRET=per-spawn", NULL};
    check_environ(&ctx, replaced, NULL);
    char *empty[] = {NULL};
    check_environ(&ctx, empty, NULL);
    /* The same through the per-spawn options path. */
    pspawn_attr_t *attr;
    CHECK(pspawn_attr_create(&attr) == 0);
    CHECK(pspawn_attr_set_cwd(attr, "/") == 0);
    CHECK(pspawn_attr_stdio_null(attr, 0) == 0);
    char *other[] = {"B=2", "LONG=" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", NULL};
    check_environ(&ctx, other, attr);
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

static long long value_of(const long long *walk, size_t n, long long type, bool *found)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        if (walk[i] == type) {
            *found = true;
            return walk[i + 1];
        }
    *found = false;
    return 0;
}

static void auxv_follows_envp(void)
{
    pspawn_context_t ctx = open_report(NULL);
    char *extra[] = {"--report-image", NULL};
    char *envp[] = {"A=1", "B=2", NULL};
    struct child c;
    start_report(&c, &ctx, extra, envp, NULL, false);
    CHECK_EQ_INT(finish_report(&c), 0);
    CHECK_EQ_INT(json_int(c.json, "auxv_terminated"), 1);
    size_t n, m;
    long long *walk = json_ints(c.json, "auxv_walk", &n);
    long long *libc = json_ints(c.json, "auxv_getauxval", &m);
    CHECK(n % 2 == 0 && m == n / 2);
    const long long required[] = {AT_SYSINFO_EHDR, AT_PAGESZ, AT_PHDR, AT_PHENT, AT_PHNUM, AT_BASE,
                                  AT_ENTRY, AT_RANDOM, AT_EXECFN, AT_UID, AT_SECURE};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        bool found;
        value_of(walk, n, required[i], &found);
        if (!found)
            fprintf(stderr, "AT type %lld not past envp\n", required[i]);
        CHECK(found);
    }
    /* glibc's getauxval(AT_HWCAP) on x86 is its own feature word, not the kernel's. */
    for (size_t i = 0; i < m; i++)
        if (walk[2 * i] != AT_HWCAP && walk[2 * i + 1] != libc[i]) {
            fprintf(stderr, "AT type %lld: %lld past envp, getauxval %lld\n", walk[2 * i], walk[2 * i + 1], libc[i]);
            exit(1);
        }
    /* The kernel's copy of the proxy's vector, which is the one a child inherits. */
    struct bytes kernel = proc_file(pspawn_context_proxy_pid(&ctx), "auxv");
    const unsigned long *k = (const unsigned long *)kernel.data;
    size_t pairs = 0;
    while ((pairs + 1) * 2 * sizeof(*k) <= kernel.len && k[2 * pairs] != AT_NULL)
        pairs++;
    CHECK_EQ_INT(2 * pairs, n);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT((long long)k[i], walk[i]);
    bool found;
    CHECK_EQ_INT(value_of(walk, n, AT_PAGESZ, &found), sysconf(_SC_PAGESIZE));
    free(kernel.data);
    free(walk);
    free(libc);
    free(c.json);
    pspawn_context_destroy(&ctx);
}

static char *hex_of(const unsigned char *bytes, size_t n)
{
    char *s = malloc(2 * n + 1);
    CHECK(s != NULL);
    for (size_t i = 0; i < n; i++)
        sprintf(s + 2 * i, "%02x", bytes[i]);
    return s;
}

/* n bytes of the proxy's memory at addr, in hex; NULL if we may not read it. */
static char *proxy_memory(pid_t proxy, long long addr, size_t n)
{
    char path[64];
    unsigned char buf[64];
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)proxy);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t r = pread(fd, buf, n, (off_t)addr);
    close(fd);
    return r == (ssize_t)n ? hex_of(buf, n) : NULL;
}

struct secrets {
    char *canary;
    char *at_random;
    long long tcb, at_random_addr;
};

static struct secrets secrets_of(pspawn_context_t *ctx, const pspawn_attr_t *attr)
{
    char *extra[] = {"--report-image", NULL};
    char *envp[] = {NULL};
    struct child c;
    start_report(&c, ctx, extra, envp, attr, false);
    CHECK_EQ_INT(finish_report(&c), 0);
    CHECK_EQ_INT(json_int(c.json, "protected_call"), 668);
    struct secrets s = {
        .canary = json_string_value(c.json, "canary"),
        .at_random = json_string_value(c.json, "at_random"),
        .tcb = json_int(c.json, "tcb"),
        .at_random_addr = json_int(c.json, "at_random_addr"),
    };
    CHECK(strlen(s.canary) == 16 && strlen(s.at_random) == 32);
    /* The low byte is zero, and the rest is AT_RANDOM's first word, as ld.so makes it. */
    CHECK(strncmp(s.canary, "00", 2) == 0);
    CHECK(strncmp(s.canary + 2, s.at_random + 2, 14) == 0);
    free(c.json);
    return s;
}

static void fresh_canary_and_at_random(void)
{
    pspawn_context_t ctx = open_report(NULL);
    pspawn_attr_t *attr;
    CHECK(pspawn_attr_create(&attr) == 0);
    CHECK(pspawn_attr_stdio_null(attr, 0) == 0);
    struct secrets a = secrets_of(&ctx, NULL), b = secrets_of(&ctx, NULL), c = secrets_of(&ctx, attr);
    CHECK(strcmp(a.canary, b.canary) != 0 && strcmp(a.canary, c.canary) != 0 && strcmp(b.canary, c.canary) != 0);
    CHECK(strcmp(a.at_random, b.at_random) != 0 && strcmp(a.at_random, c.at_random) != 0 &&
          strcmp(b.at_random, c.at_random) != 0);

    pid_t proxy = pspawn_context_proxy_pid(&ctx);
    char *proxy_canary = proxy_memory(proxy, a.tcb + 0x28, 8);
    char *proxy_random = proxy_memory(proxy, a.at_random_addr, 16);
    if (proxy_canary == NULL || proxy_random == NULL) {
        CHECK(geteuid() != 0); /* root reads it; others may lack ptrace rights */
        fprintf(stderr, "cannot read the proxy's memory: not compared with the proxy\n");
    } else {
        CHECK(strncmp(proxy_canary, "00", 2) == 0);
        CHECK(strcmp(proxy_canary, a.canary) != 0 && strcmp(proxy_canary, b.canary) != 0 &&
              strcmp(proxy_canary, c.canary) != 0);
        CHECK(strcmp(proxy_random, a.at_random) != 0 && strcmp(proxy_random, b.at_random) != 0 &&
              strcmp(proxy_random, c.at_random) != 0);
    }
    struct secrets *all[] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) {
        free(all[i]->canary);
        free(all[i]->at_random);
    }
    free(proxy_canary);
    free(proxy_random);
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

/* What fork+exec gives: the fixture run by posix_spawn. */
static long long dumpable_after_exec(void)
{
    char out[4200], option[4300];
    snprintf(out, sizeof(out), "%s/exec-dumpable.json", temp_dir());
    snprintf(option, sizeof(option), "--report-out=%s", out);
    char *argv[] = {"report", "--report-image", option, NULL};
    char *envp[] = {NULL};
    pid_t pid;
    CHECK(posix_spawn(&pid, fixture("report"), NULL, NULL, argv, envp) == 0);
    int st = wait_child(pid, 20000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *json = await_file(out, 5000);
    long long dumpable = json_int(json, "dumpable");
    free(json);
    return dumpable;
}

static void child_is_dumpable(void)
{
    long long expected = dumpable_after_exec();
    CHECK_EQ_INT(expected, 1);
    pspawn_context_t ctx = open_report(NULL);
    pspawn_attr_t *attr;
    CHECK(pspawn_attr_create(&attr) == 0);
    CHECK(pspawn_attr_set_cwd(attr, "/") == 0);
    char *extra[] = {"--report-image", NULL};
    char *envp[] = {NULL};
    for (int k = 0; k < 2; k++) {
        struct child c;
        start_report(&c, &ctx, extra, envp, k ? attr : NULL, false);
        CHECK_EQ_INT(finish_report(&c), 0);
        CHECK_EQ_INT(json_int(c.json, "dumpable"), expected);
        free(c.json);
    }
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"cmdline_is_the_childs", cmdline_is_the_childs},
        {"cmdline_without_cap_sys_resource", cmdline_without_cap_sys_resource},
        {"environ_is_the_childs", environ_is_the_childs},
        {"auxv_follows_envp", auxv_follows_envp},
        {"fresh_canary_and_at_random", fresh_canary_and_at_random},
        {"child_is_dumpable", child_is_dumpable},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
