/* The interceptor's settings (PSPAWN_INTERCEPT_*), its own path, and the real functions. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "intercept/intercept.h"

struct psi_config psi_config = {.after = 2, .fork = true, .fork_wait_ms = 50, .slice_us = 100};
struct psi_real psi_real;
pid_t (*psi_real_vfork)(void);
#if PSI_SEES_NAMESPACE_SYSCALLS
long (*psi_real_syscall)(long, ...);
#endif
static int tracked_umask = -1;

static char **split_list(const char *value)
{
    if (value == NULL || value[0] == '\0')
        return NULL;
    size_t n = 1;
    for (const char *c = value; *c != '\0'; c++)
        n += *c == ':';
    char **list = calloc(n + 1, sizeof(char *));
    char *copy = strdup(value);
    if (list == NULL || copy == NULL) {
        free(list);
        free(copy);
        return NULL;
    }
    size_t k = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ":", &save); tok != NULL; tok = strtok_r(NULL, ":", &save))
        list[k++] = tok;
    return list;
}

static bool listed(char *const *list, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    for (size_t i = 0; list != NULL && list[i] != NULL; i++)
        if (strcmp(list[i], path) == 0 || strcmp(list[i], base) == 0)
            return true;
    return false;
}

bool psi_config_allows(const char *path)
{
    if (listed(psi_config.deny, path))
        return false;
    return psi_config.allow == NULL || listed(psi_config.allow, path);
}

ssize_t psi_read_text(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

/* The umask at load, from /proc/self/status ("Umask:\t0022"); -1 if unreadable. */
static int read_umask(void)
{
    char buf[4096];
    if (psi_read_text("/proc/self/status", buf, sizeof(buf)) <= 0)
        return -1;
    const char *line = strstr(buf, "\nUmask:");
    return line != NULL ? (int)strtol(line + 7, NULL, 8) : -1;
}

/* A whole number in [0, 1000000) from `name`, or `fallback`. */
static int number(const char *name, int fallback)
{
    const char *value = getenv(name);
    if (value == NULL || value[0] == '\0')
        return fallback;
    char *end = NULL;
    long v = strtol(value, &end, 10);
    return (*end == '\0' && v >= 0 && v < 1000000) ? (int)v : fallback;
}

void psi_config_load(void)
{
    psi_config.after = number("PSPAWN_INTERCEPT_AFTER", 2);
    psi_config.fork = number("PSPAWN_INTERCEPT_FORK", 1) != 0;
    psi_config.fork_wait_ms = number("PSPAWN_INTERCEPT_FORK_WAIT_MS", 50);
    psi_config.vfork = number("PSPAWN_INTERCEPT_VFORK", 0) == 1;
    psi_config.threads = number("PSPAWN_INTERCEPT_THREADS", 0) == 1;
    psi_config.merge_text = number("PSPAWN_INTERCEPT_MERGE_TEXT", 1) != 0;
    psi_config.pool = number("PSPAWN_INTERCEPT_POOL", 0);
    /* The kernel clamps a slice to [100 us, 100 ms]; slice.c recognises its own by value. */
    psi_config.slice_us = number("PSPAWN_INTERCEPT_SLICE_US", 100);
    if (psi_config.slice_us != 0)
        psi_config.slice_us = psi_config.slice_us < 100 ? 100 : psi_config.slice_us > 100000 ? 100000 : psi_config.slice_us;
    if (psi_config.pool < 0 || psi_config.pool > PSPAWN_POOL_MAX)
        psi_config.pool = 0;
    psi_config.allow = split_list(getenv("PSPAWN_INTERCEPT_ALLOW"));
    psi_config.deny = split_list(getenv("PSPAWN_INTERCEPT_DENY"));
    const char *inherit = getenv("PSPAWN_INTERCEPT_INHERIT");
    psi_config.inherit = inherit != NULL && strcmp(inherit, "1") == 0;
    const char *enabled = getenv("PSPAWN_INTERCEPT");
    psi_config.disabled = enabled != NULL && strcmp(enabled, "0") == 0;
    Dl_info info;
    if (dladdr((void *)&psi_config_load, &info) != 0 && info.dli_fname != NULL)
        psi_config.self_path = realpath(info.dli_fname, NULL);
    tracked_umask = read_umask();
}

void psi_real_load(void)
{
    psi_real.spawn = (__typeof__(psi_real.spawn))dlsym(RTLD_NEXT, "posix_spawn");
    psi_real.spawnp = (__typeof__(psi_real.spawnp))dlsym(RTLD_NEXT, "posix_spawnp");
    psi_real.umask = (__typeof__(psi_real.umask))dlsym(RTLD_NEXT, "umask");
    psi_real.execve = (__typeof__(psi_real.execve))dlsym(RTLD_NEXT, "execve");
    psi_real.execvpe = (__typeof__(psi_real.execvpe))dlsym(RTLD_NEXT, "execvpe");
    psi_real.fork = (__typeof__(psi_real.fork))dlsym(RTLD_NEXT, "fork");
    psi_real_vfork = (pid_t(*)(void))dlsym(RTLD_NEXT, "vfork");
    psi_real.close = (__typeof__(psi_real.close))dlsym(RTLD_NEXT, "close");
    psi_real.close_range = (__typeof__(psi_real.close_range))dlsym(RTLD_NEXT, "close_range");
    psi_real.closefrom = (__typeof__(psi_real.closefrom))dlsym(RTLD_NEXT, "closefrom");
    psi_real.dup2 = (__typeof__(psi_real.dup2))dlsym(RTLD_NEXT, "dup2");
    psi_real.unshare = (__typeof__(psi_real.unshare))dlsym(RTLD_NEXT, "unshare");
    psi_real.setns = (__typeof__(psi_real.setns))dlsym(RTLD_NEXT, "setns");
    psi_real.dup3 = (__typeof__(psi_real.dup3))dlsym(RTLD_NEXT, "dup3");
    psi_real.setpriority = (__typeof__(psi_real.setpriority))dlsym(RTLD_NEXT, "setpriority");
    psi_real.nice = (__typeof__(psi_real.nice))dlsym(RTLD_NEXT, "nice");
    psi_real.sched_setscheduler = (__typeof__(psi_real.sched_setscheduler))dlsym(RTLD_NEXT, "sched_setscheduler");
    psi_real.sched_setparam = (__typeof__(psi_real.sched_setparam))dlsym(RTLD_NEXT, "sched_setparam");
#if PSI_SEES_NAMESPACE_SYSCALLS
    psi_real_syscall = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
#endif
}

int psi_current_umask(void)
{
    return __atomic_load_n(&tracked_umask, __ATOMIC_RELAXED);
}

/* Interposed only to know the umask without the umask(umask(0)) race. */
__attribute__((visibility("default"))) mode_t umask(mode_t mask)
{
    if (psi_real.umask == NULL)
        psi_real_load();
    mode_t old = psi_real.umask(mask);
    __atomic_store_n(&tracked_umask, (int)(mask & 0777), __ATOMIC_RELAXED);
    return old;
}
