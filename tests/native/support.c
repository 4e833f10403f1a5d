#include "support.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int run_tests(int argc, char **argv, const struct test_case *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
            continue;
        /* Made here, by the process that removes it at exit: a test's forked child that asks
         * for it first would own it, and it exits with _exit (or as another user). */
        (void)temp_dir();
        cases[i].fn();
        if (argc > 1)
            return 0;
        printf("ok %s\n", cases[i].name);
    }
    if (argc > 1) {
        fprintf(stderr, "no test named %s\n", argv[1]);
        return 2;
    }
    return 0;
}

const char *fixture(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/%s", PSPAWN_FIXTURE_DIR, name);
    return path;
}

static char g_temp_dir[64];
static pid_t g_temp_owner;

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

/* Only the process that made it removes it (forked children exit through here too). */
static void remove_temp_dir(void)
{
    if (g_temp_dir[0] != '\0' && getpid() == g_temp_owner)
        nftw(g_temp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *temp_dir(void)
{
    if (g_temp_dir[0] == '\0') {
        snprintf(g_temp_dir, sizeof(g_temp_dir), "/tmp/pspawn-test-XXXXXX");
        CHECK(mkdtemp(g_temp_dir) != NULL);
        g_temp_owner = getpid();
        atexit(remove_temp_dir);
    }
    return g_temp_dir;
}

void write_tree_file(const char *root, const char *rel, const char *content)
{
    char path[4096];
    (void)mkdir(root, 0755);
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        (void)mkdir(path, 0755);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(content, f);
    CHECK(fclose(f) == 0);
}

const char *make_file(const char *name, const char *content, unsigned mode)
{
    static char path[4][4096];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 4096, "%s/%s", temp_dir(), name);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    fputs(content, f);
    CHECK(fclose(f) == 0);
    CHECK(chmod(p, mode) == 0);
    return p;
}

void copy_file(const char *from, const char *to, mode_t mode)
{
    int in_fd = open(from, O_RDONLY | O_CLOEXEC);
    int out_fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    CHECK(in_fd >= 0 && out_fd >= 0 && fchmod(out_fd, mode) == 0);
    char buf[65536];
    ssize_t r;
    while ((r = read(in_fd, buf, sizeof(buf))) > 0)
        CHECK(write(out_fd, buf, (size_t)r) == r);
    CHECK(r == 0 && close(in_fd) == 0 && close(out_fd) == 0);
}

const char *copy_fixture(const char *fixture_name, const char *name, unsigned mode)
{
    const char *path = make_file(name, "", mode);
    copy_file(fixture(fixture_name), path, (mode_t)mode);
    return path;
}

pid_t fork_launcher(const char *target, int (*body)(pspawn_context_t *ctx), pid_t *proxy)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t parent = getpid();
    pid_t launcher = fork();
    CHECK(launcher >= 0);
    if (launcher == 0) {
        close(fds[0]);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(1);
        pspawn_context_t ctx;
        if (pspawn_context_create(&ctx, target, -1) != 0)
            _exit(1);
        pid_t pid = pspawn_context_proxy_pid(&ctx);
        if (write(fds[1], &pid, sizeof(pid)) != sizeof(pid))
            _exit(1);
        close(fds[1]);
        _exit(body(&ctx));
    }
    close(fds[1]);
    CHECK(read(fds[0], proxy, sizeof(*proxy)) == sizeof(*proxy) && *proxy > 0);
    close(fds[0]);
    return launcher;
}

int wait_child(pid_t pid, int timeout_ms)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    CHECK(fd >= 0);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms);
    close(fd);
    if (n != 1) {
        fprintf(stderr, "child %d did not exit within %d ms\n", (int)pid, timeout_ms);
        kill(pid, SIGKILL);
        exit(1);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    return status;
}

char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf != NULL && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    CHECK(buf != NULL);
    buf[len] = '\0';
    return buf;
}

char *await_file(const char *path, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 5) {
        char *s = read_file(path);
        if (s != NULL)
            return s;
        usleep(5000);
    }
    fprintf(stderr, "%s did not appear within %d ms\n", path, timeout_ms);
    exit(1);
}

static const char *find_value(const char *json, const char *key)
{
    char pattern[128];
    snprintf(pattern, sizeof(pattern), "\"%s\":", key);
    const char *p = strstr(json, pattern);
    CHECK(p != NULL);
    p += strlen(pattern);
    while (*p == ' ')
        p++;
    return p;
}

/* Parses a JSON string at *p (which points at the opening quote). */
static char *parse_string(const char **p)
{
    CHECK(**p == '"');
    const char *s = *p + 1;
    char *out = malloc(strlen(s) + 1);
    size_t n = 0;
    CHECK(out != NULL);
    while (*s != '"') {
        CHECK(*s != '\0');
        if (*s != '\\') {
            out[n++] = *s++;
            continue;
        }
        s++;
        switch (*s) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'u': {
            unsigned v;
            CHECK(sscanf(s + 1, "%4x", &v) == 1 && v < 0x100);
            out[n++] = (char)v;
            s += 4;
            break;
        }
        default: out[n++] = *s; break;
        }
        s++;
    }
    out[n] = '\0';
    *p = s + 1;
    return out;
}

char **json_strings(const char *json, const char *key, size_t *count)
{
    const char *p = find_value(json, key);
    CHECK(*p == '[');
    p++;
    size_t cap = 16;
    char **list = malloc(cap * sizeof(char *));
    *count = 0;
    while (*p != ']') {
        if (*p == ',' || *p == ' ') {
            p++;
            continue;
        }
        if (*count == cap)
            list = realloc(list, (cap *= 2) * sizeof(char *));
        list[(*count)++] = parse_string(&p);
    }
    return list;
}

long long *json_ints(const char *json, const char *key, size_t *count)
{
    const char *p = find_value(json, key);
    CHECK(*p == '[');
    p++;
    long long *list = malloc(1024 * sizeof(long long));
    *count = 0;
    while (*p != ']') {
        if (*p == ',' || *p == ' ') {
            p++;
            continue;
        }
        char *end;
        CHECK(*count < 1024);
        list[(*count)++] = strtoll(p, &end, 10);
        CHECK(end != p);
        p = end;
    }
    return list;
}

long long json_int(const char *json, const char *key)
{
    return strtoll(find_value(json, key), NULL, 10);
}

char *json_string_value(const char *json, const char *key)
{
    const char *p = find_value(json, key);
    return parse_string(&p);
}

void free_strings(char **list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(list[i]);
    free(list);
}

int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static char proc_state(pid_t pid, pid_t *ppid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *s = read_file(path);
    if (s == NULL)
        return 0;
    const char *close_paren = strrchr(s, ')');
    char state = 0;
    int parent = 0;
    if (close_paren != NULL)
        sscanf(close_paren + 2, "%c %d", &state, &parent);
    free(s);
    if (ppid != NULL)
        *ppid = parent;
    return state;
}

int count_zombie_children(void)
{
    DIR *d = opendir("/proc");
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atoi(e->d_name);
        pid_t ppid;
        if (pid > 0 && proc_state(pid, &ppid) == 'Z' && ppid == getpid()) {
            n++;
            /* Say who, so that a failed zombie check in CI can be traced. */
            char path[64];
            snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
            char *comm = read_file(path);
            fprintf(stderr, "zombie child %d (%s)\n", (int)pid, comm != NULL ? strtok(comm, "\n") : "?");
            free(comm);
        }
    }
    closedir(d);
    return n;
}

long proc_status_field(pid_t pid, const char *field)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    char *status = read_file(path);
    const char *line = status ? strstr(status, field) : NULL;
    long value = line ? strtol(line + strlen(field), NULL, 10) : -1;
    free(status);
    return value;
}

bool process_alive(pid_t pid)
{
    char state = proc_state(pid, NULL);
    return state != 0 && state != 'Z' && state != 'X';
}
