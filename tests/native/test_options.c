/* Per-spawn options: stdio, working directory, CPUs, process groups, limits, umask,
 * parent-death signal; and child-side failures reported like exec failures. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

static pspawn_context_t open_report(void)
{
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, fixture("report"), -1) == 0);
    return ctx;
}

static pspawn_attr_t *new_attr(void)
{
    pspawn_attr_t *attr;
    CHECK(pspawn_attr_create(&attr) == 0);
    return attr;
}

/* Reads a descriptor to EOF. */
static char *read_all(int fd, size_t *length)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (len == cap)
            buf = realloc(buf, (cap *= 2) + 1);
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        CHECK(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    if (length != NULL)
        *length = len;
    return buf;
}

/* Spawns report with attr, stdout piped; returns its JSON and reaps it. */
static char *report_json(pspawn_context_t *ctx, pspawn_attr_t *attr, char **extra, int *status)
{
    CHECK(pspawn_attr_stdio_pipe(attr, 1) == 0);
    char *argv[6] = {"report"};
    for (int i = 0; extra != NULL && extra[i] != NULL && i < 4; i++)
        argv[i + 1] = extra[i];
    int fds[3];
    pid_t pid = pspawn_x(ctx, argv, NULL, attr, fds);
    CHECK(pid > 0);
    CHECK(fds[0] == -1 && fds[1] >= 0 && fds[2] == -1);
    char *json = read_all(fds[1], NULL);
    close(fds[1]);
    int st = wait_child(pid, 20000);
    if (status != NULL)
        *status = st;
    else
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return json;
}

static void stdout_pipe_and_no_extra_fds(void)
{
    int stray[2];
    CHECK(pipe(stray) == 0); /* not asked for: must not reach the child */
    pspawn_context_t ctx = open_report();
    pspawn_attr_t *attr = new_attr();
    CHECK(pspawn_attr_stdio_null(attr, 0) == 0);
    char *json = report_json(&ctx, attr, NULL, NULL);
    size_t n;
    long long *fds = json_ints(json, "fds", &n);
    CHECK(n == 3 && fds[0] == 0 && fds[1] == 1 && fds[2] == 2);
    free(fds);
    free(json);
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
    close(stray[0]);
    close(stray[1]);
}

static void stdout_to_file_and_caller_fd(void)
{
    pspawn_context_t ctx = open_report();
    pspawn_attr_t *attr = new_attr();
    char path[4200];
    snprintf(path, sizeof(path), "%s/out.json", temp_dir());
    CHECK(pspawn_attr_stdio_file(attr, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0600) == 0);
    char *argv[] = {"report", "--report-exit=4", NULL};
    pid_t pid = pspawn_x(&ctx, argv, NULL, attr, NULL);
    CHECK(pid > 0);
    int st = wait_child(pid, 10000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 4);
    char *json = read_file(path);
    CHECK(json != NULL && strstr(json, "\"argv\"") != NULL);
    free(json);

    /* A descriptor of ours as stderr: the child writes into our file. */
    snprintf(path, sizeof(path), "%s/err.txt", temp_dir());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK(pspawn_attr_stdio_fd(attr, 1, fd) == 0);
    char *argv2[] = {"report", "--report-write-bytes=1000", NULL};
    pid = pspawn_x(&ctx, argv2, NULL, attr, NULL);
    CHECK(pid > 0 && WIFEXITED(wait_child(pid, 10000)));
    close(fd);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && sb.st_size == 1000);
    errno = 0;
    CHECK(pspawn_attr_stdio_fd(attr, 1, 987654) == -1 && errno == EBADF);
    CHECK(pspawn_attr_stdio_pipe(attr, 3) == -1 && errno == EINVAL);
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

/* Drains several pipes at once (poll), so that no writer blocks on a full pipe. */
static void drain_pipes(int *fds, size_t *got, int count, int timeout_ms)
{
    struct pollfd *p = calloc((size_t)count, sizeof(struct pollfd));
    int open_count = count;
    for (int i = 0; i < count; i++)
        p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    char buf[65536];
    while (open_count > 0) {
        int n = poll(p, (nfds_t)count, timeout_ms);
        CHECK(n > 0);
        for (int i = 0; i < count; i++) {
            if (p[i].fd < 0 || p[i].revents == 0)
                continue;
            ssize_t r = read(p[i].fd, buf, sizeof(buf));
            CHECK(r >= 0);
            if (r == 0) {
                close(p[i].fd);
                p[i].fd = -1;
                open_count--;
            } else {
                for (ssize_t k = 0; k < r; k++)
                    CHECK(buf[k] == 'a' + (char)((got[i] + (size_t)k) % 26));
                got[i] += (size_t)r;
            }
        }
    }
    free(p);
}

static void capture_10mb_stdout_and_stderr(void)
{
    pspawn_context_t ctx = open_report();
    pspawn_attr_t *attr = new_attr();
    CHECK(pspawn_attr_stdio_pipe(attr, 1) == 0 && pspawn_attr_stdio_pipe(attr, 2) == 0);
    char *argv[] = {"report", "--report-write-bytes=10485760", NULL};
    int fds[3];
    pid_t pid = pspawn_x(&ctx, argv, NULL, attr, fds);
    CHECK(pid > 0);
    int pipes[2] = {fds[1], fds[2]};
    size_t got[2] = {0, 0};
    drain_pipes(pipes, got, 2, 20000);
    CHECK_EQ_INT(got[0], 10485760);
    CHECK_EQ_INT(got[1], 10485760);
    CHECK(WIFEXITED(wait_child(pid, 10000)));
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = rl.rlim_max;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
}

static void capture_200_children_at_once(void)
{
    raise_fd_limit();
    pspawn_context_t ctx = open_report();
    pspawn_attr_t *attr = new_attr();
    CHECK(pspawn_attr_stdio_pipe(attr, 1) == 0 && pspawn_attr_stdio_pipe(attr, 2) == 0);
    enum { N = 200 };
    pid_t pids[N];
    int errors[N], fds[3 * N];
    char *argv[] = {"report", "--report-write-bytes=1024", NULL};
    CHECK_EQ_INT(pspawn_nx(pids, errors, fds, &ctx, N, argv, NULL, attr), N);
    int pipes[2 * N];
    size_t got[2 * N];
    for (int i = 0; i < N; i++) {
        CHECK(errors[i] == 0 && fds[3 * i] == -1);
        pipes[2 * i] = fds[3 * i + 1];
        pipes[2 * i + 1] = fds[3 * i + 2];
        got[2 * i] = got[2 * i + 1] = 0;
    }
    drain_pipes(pipes, got, 2 * N, 20000);
    for (int i = 0; i < 2 * N; i++)
        CHECK_EQ_INT(got[i], 1024);
    for (int i = 0; i < N; i++)
        CHECK(WIFEXITED(wait_child(pids[i], 10000)));
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

static void stdin_echo(void)
{
    pspawn_context_t ctx = open_report();
    pspawn_attr_t *attr = new_attr();
    CHECK(pspawn_attr_stdio_pipe(attr, 0) == 0 && pspawn_attr_stdio_pipe(attr, 1) == 0);
    char *argv[] = {"report", "--report-stdin-echo", NULL};
    int fds[3];
    pid_t pid = pspawn_x(&ctx, argv, NULL, attr, fds);
    CHECK(pid > 0 && fds[0] >= 0 && fds[1] >= 0);
    const char *text = "hello through the zygote\nsecond line\n";
    CHECK(write(fds[0], text, strlen(text)) == (ssize_t)strlen(text));
    close(fds[0]);
    char *echo = read_all(fds[1], NULL);
    close(fds[1]);
    CHECK(strcmp(echo, text) == 0);
    free(echo);
    CHECK(WIFEXITED(wait_child(pid, 10000)));
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

static void working_directory(void)
{
    pspawn_context_t ctx = open_report();
    pspawn_attr_t *attr = new_attr();
    CHECK(pspawn_attr_set_cwd(attr, temp_dir()) == 0);
    char *json = report_json(&ctx, attr, NULL, NULL);
    char *cwd = json_string_value(json, "cwd");
    CHECK(strcmp(cwd, temp_dir()) == 0);
    free(cwd);
    free(json);
    pspawn_attr_destroy(attr);

    /* A missing directory is that spawn's error; main never runs; nothing is left. */
    attr = new_attr();
    CHECK(pspawn_attr_set_cwd(attr, "/nonexistent/directory") == 0);
    CHECK(pspawn_attr_stdio_pipe(attr, 1) == 0);
    pid_t pids[3];
    int errors[3], fds[9];
    char *argv[] = {"report", NULL};
    errno = 0;
    CHECK(pspawn_nx(pids, errors, fds, &ctx, 3, argv, NULL, attr) == -1);
    CHECK_EQ_INT(errno, ENOENT);
    for (int i = 0; i < 3; i++)
        CHECK(pids[i] == -1 && errors[i] == ENOENT && fds[3 * i + 1] == -1);
    CHECK_EQ_INT(count_zombie_children(), 0);
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

static void cpu_placement(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    pspawn_context_t ctx = open_report();
    pspawn_attr_t *attr = new_attr();
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET((size_t)(cpus - 1), &one);
    CHECK(pspawn_attr_set_cpus(attr, &one) == 0);
    char *json = report_json(&ctx, attr, NULL, NULL);
    size_t n;
    long long *aff = json_ints(json, "affinity", &n);
    CHECK(n == 1 && aff[0] == cpus - 1);
    free(aff);
    free(json);

    /* Instance i on core i: one set per instance. */
    cpu_set_t sets[2];
    for (int i = 0; i < 2; i++) {
        CPU_ZERO(&sets[i]);
        CPU_SET((size_t)(i % cpus), &sets[i]);
    }
    CHECK(pspawn_attr_set_cpus_per_instance(attr, sets, 2) == 0);
    CHECK(pspawn_attr_stdio_pipe(attr, 1) == 0);
    pid_t pids[4];
    int errors[4], fds[12];
    char *argv[] = {"report", NULL};
    CHECK_EQ_INT(pspawn_nx(pids, errors, fds, &ctx, 4, argv, NULL, attr), 4);
    for (int i = 0; i < 4; i++) {
        char *j = read_all(fds[3 * i + 1], NULL);
        close(fds[3 * i + 1]);
        aff = json_ints(j, "affinity", &n);
        CHECK(n == 1 && aff[0] == (i % 2) % cpus);
        free(aff);
        free(j);
        CHECK(WIFEXITED(wait_child(pids[i], 10000)));
    }

    /* An empty set is refused at once; a CPU that does not exist, by the child. */
    cpu_set_t empty;
    CPU_ZERO(&empty);
    errno = 0;
    CHECK(pspawn_attr_set_cpus(attr, &empty) == -1 && errno == EINVAL);
    cpu_set_t absent;
    CPU_ZERO(&absent);
    CPU_SET(CPU_SETSIZE - 1, &absent);
    CHECK(pspawn_attr_set_cpus(attr, &absent) == 0);
    errno = 0;
    CHECK(pspawn_x(&ctx, argv, NULL, attr, fds) == -1 && errno == EINVAL);
    CHECK_EQ_INT(count_zombie_children(), 0);
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

static bool process_gone(pid_t pid, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (!process_alive(pid))
            return true;
        usleep(10000);
    }
    return false;
}

static void process_group_kill_takes_grandchild(void)
{
    pspawn_context_t ctx = open_report();
    pspawn_attr_t *attr = new_attr();
    CHECK(pspawn_attr_set_process_group(attr, 0) == 0);
    CHECK(pspawn_attr_stdio_pipe(attr, 1) == 0);
    char *argv[] = {"report", "--report-spawn-grandchild", "--report-sleep-ms=60000", NULL};
    int fds[3];
    pid_t pid = pspawn_x(&ctx, argv, NULL, attr, fds);
    CHECK(pid > 0);
    /* The JSON comes before the sleep; read one line, not to EOF. */
    char line[65536];
    size_t len = 0;
    while (len == 0 || line[len - 1] != '\n') {
        ssize_t r = read(fds[1], line + len, sizeof(line) - len - 1);
        CHECK(r > 0);
        len += (size_t)r;
    }
    line[len] = '\0';
    close(fds[1]);
    CHECK_EQ_INT(json_int(line, "pgid"), pid);
    pid_t grandchild = (pid_t)json_int(line, "grandchild");
    CHECK(grandchild > 0 && process_alive(grandchild));
    CHECK(kill(-pid, SIGKILL) == 0);
    int st = wait_child(pid, 10000);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    CHECK(process_gone(grandchild, 5000));

    /* A new session: the child leads it. */
    CHECK(pspawn_attr_set_new_session(attr) == 0);
    char *json = report_json(&ctx, attr, NULL, NULL);
    CHECK_EQ_INT(json_int(json, "sid"), json_int(json, "pid"));
    free(json);
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

static void no_pipe_means_minus_one(void)
{
    pspawn_context_t ctx = open_report();
    pspawn_attr_t *attr = new_attr();
    CHECK(pspawn_attr_stdio_null(attr, 1) == 0);
    pid_t pids[2];
    int errors[2], fds[6] = {0, 1, 2, 0, 1, 2};
    char *argv[] = {"report", NULL};
    CHECK_EQ_INT(pspawn_nx(pids, errors, fds, &ctx, 2, argv, NULL, attr), 2);
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(fds[i], -1);
    for (int i = 0; i < 2; i++)
        CHECK(WIFEXITED(wait_child(pids[i], 10000)));
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

static void limits_and_umask(void)
{
    pspawn_context_t ctx = open_report();
    pspawn_attr_t *attr = new_attr();
    CHECK(pspawn_attr_add_rlimit(attr, RLIMIT_NOFILE, 100, 200) == 0);
    CHECK(pspawn_attr_set_umask(attr, 027) == 0);
    CHECK(pspawn_attr_stdio_null(attr, 1) == 0);
    char *argv[] = {"report", "--report-sleep-ms=2000", "--report-out=/dev/null", NULL};
    pid_t pid = pspawn_x(&ctx, argv, NULL, attr, NULL);
    CHECK(pid > 0);
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
    char *limits = read_file(path);
    const char *line = strstr(limits, "Max open files");
    CHECK(line != NULL);
    long soft = 0, hard = 0;
    CHECK(sscanf(line + strlen("Max open files"), "%ld %ld", &soft, &hard) == 2);
    CHECK(soft == 100 && hard == 200);
    free(limits);
    kill(pid, SIGKILL);
    wait_child(pid, 10000);
    pspawn_attr_destroy(attr);

    attr = new_attr();
    CHECK(pspawn_attr_set_umask(attr, 027) == 0);
    char *json = report_json(&ctx, attr, NULL, NULL);
    CHECK_EQ_INT(json_int(json, "umask"), 027);
    free(json);
    pspawn_attr_destroy(attr);

    /* A limit the kernel refuses (above fs.nr_open) fails that spawn. */
    attr = new_attr();
    CHECK(pspawn_attr_add_rlimit(attr, RLIMIT_NOFILE, 1u << 30, 1u << 30) == 0);
    errno = 0;
    CHECK(pspawn_x(&ctx, argv, NULL, attr, NULL) == -1 && errno == EPERM);
    CHECK_EQ_INT(count_zombie_children(), 0);
    errno = 0;
    CHECK(pspawn_attr_add_rlimit(attr, RLIMIT_NOFILE, 10, 5) == -1 && errno == EINVAL);
    CHECK(pspawn_attr_set_parent_death_signal(attr, 0) == -1 && errno == EINVAL);
    CHECK(pspawn_attr_set_umask(attr, 01000) == -1 && errno == EINVAL);
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

static pspawn_context_t thread_ctx;
static pid_t thread_child;

static void *create_and_spawn(void *arg)
{
    (void)arg;
    CHECK(pspawn_context_create(&thread_ctx, fixture("report"), -1) == 0);
    pspawn_attr_t *attr = new_attr();
    CHECK(pspawn_attr_set_parent_death_signal(attr, SIGTERM) == 0);
    char *argv[] = {"report", "--report-sleep-ms=60000", "--report-out=/dev/null", NULL};
    thread_child = pspawn_x(&thread_ctx, argv, NULL, attr, NULL);
    CHECK(thread_child > 0);
    pspawn_attr_destroy(attr);
    return NULL;
}

/* The kernel sends the parent-death signal when the thread that created the context
 * (the child's parent thread) exits: documented, and shown here. */
static void parent_death_signal(void)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, create_and_spawn, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    int st = wait_child(thread_child, 10000);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
    pspawn_context_destroy(&thread_ctx);
}

static void ten_thousand_piped_spawns_flat(void)
{
    pspawn_context_t ctx;
    CHECK(pspawn_context_create(&ctx, fixture("noop"), -1) == 0);
    pspawn_attr_t *attr = new_attr();
    CHECK(pspawn_attr_stdio_pipe(attr, 1) == 0 && pspawn_attr_stdio_pipe(attr, 2) == 0);
    char *argv[] = {"noop", NULL};
    int fds_before = count_open_fds();
    long rss_before = 0;
    for (int round = 0; round < 100; round++) {
        pid_t pids[100];
        int errors[100], fds[300];
        CHECK_EQ_INT(pspawn_nx(pids, errors, fds, &ctx, 100, argv, NULL, attr), 100);
        for (int i = 0; i < 100; i++) {
            close(fds[3 * i + 1]);
            close(fds[3 * i + 2]);
            CHECK(waitpid(pids[i], NULL, 0) == pids[i]);
        }
        if (round == 9)
            rss_before = proc_status_field(getpid(), "VmRSS:"); /* after warm-up */
    }
    CHECK_EQ_INT(count_open_fds(), fds_before);
    CHECK_EQ_INT(count_zombie_children(), 0);
    long growth = proc_status_field(getpid(), "VmRSS:") - rss_before;
#ifdef __SANITIZE_ADDRESS__
    growth = 0; /* ASan's quarantine keeps freed memory resident: RSS says nothing there */
#endif
    if (growth > 1024) {
        fprintf(stderr, "RSS grew by %ld kB over 9000 spawns\n", growth);
        exit(1);
    }
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

static void fallback_supports_stdio_not_umask(void)
{
    pspawn_context_attr_t cattr;
    pspawn_context_attr_init(&cattr);
    cattr.flags = PSPAWN_CTX_FALLBACK;
    pspawn_context_t ctx;
    CHECK(pspawn_context_create_ex(&ctx, fixture("noop_static"), &cattr) == 0);
    CHECK_EQ_INT(pspawn_context_mode(&ctx), PSPAWN_MODE_FALLBACK);
    pspawn_attr_t *attr = new_attr();
    CHECK(pspawn_attr_stdio_pipe(attr, 1) == 0);
    CHECK(pspawn_attr_set_cwd(attr, temp_dir()) == 0);
    char *argv[] = {"noop_static", NULL};
    int fds[3];
    pid_t pid = pspawn_x(&ctx, argv, NULL, attr, fds);
    CHECK(pid > 0 && fds[1] >= 0);
    size_t len;
    free(read_all(fds[1], &len));
    close(fds[1]);
    CHECK(WIFEXITED(wait_child(pid, 10000)));
    CHECK(pspawn_attr_set_umask(attr, 022) == 0);
    errno = 0;
    CHECK(pspawn_x(&ctx, argv, NULL, attr, fds) == -1 && errno == ENOTSUP);
    pspawn_attr_destroy(attr);
    pspawn_context_destroy(&ctx);
}

int main(int argc, char **argv)
{
    static const struct test_case cases[] = {
        {"stdout_pipe_and_no_extra_fds", stdout_pipe_and_no_extra_fds},
        {"stdout_to_file_and_caller_fd", stdout_to_file_and_caller_fd},
        {"capture_10mb_stdout_and_stderr", capture_10mb_stdout_and_stderr},
        {"capture_200_children_at_once", capture_200_children_at_once},
        {"stdin_echo", stdin_echo},
        {"working_directory", working_directory},
        {"cpu_placement", cpu_placement},
        {"process_group_kill_takes_grandchild", process_group_kill_takes_grandchild},
        {"no_pipe_means_minus_one", no_pipe_means_minus_one},
        {"limits_and_umask", limits_and_umask},
        {"parent_death_signal", parent_death_signal},
        {"ten_thousand_piped_spawns_flat", ten_thousand_piped_spawns_flat},
        {"fallback_supports_stdio_not_umask", fallback_supports_stdio_not_umask},
    };
    return run_tests(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
