/* What a child does between clone and main: become the program the launcher asked for. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proxy/proxy.h"

/* Remove `library` from a colon/space separated LD_PRELOAD value, in place. */
static void strip_preload(char *value, const char *library)
{
    char *out = value;
    char *cursor = value;
    while (*cursor != '\0') {
        size_t len = strcspn(cursor, ": ");
        bool ours = library != NULL && strlen(library) == len && strncmp(cursor, library, len) == 0;
        if (!ours && len > 0) {
            if (out != value)
                *out++ = ':';
            memmove(out, cursor, len);
            out += len;
        }
        cursor += len;
        if (*cursor != '\0')
            cursor++;
    }
    *out = '\0';
}

void psp_clean_environment(char **envp, const char *library_path)
{
    size_t out = 0;
    for (size_t i = 0; envp[i] != NULL; i++) {
        char *entry = envp[i];
        if (strncmp(entry, PSP_ENV_CONFIG "=", sizeof(PSP_ENV_CONFIG)) == 0)
            continue;
        if (strncmp(entry, "LD_PRELOAD=", 11) == 0) {
            strip_preload(entry + 11, library_path);
            if (entry[11] == '\0')
                continue;
        }
        envp[out++] = entry;
    }
    envp[out] = NULL;
}

/* A descriptor that must survive the dup2s onto 0-2 is first moved above them. */
static int above_stdio(int fd)
{
    if (fd < 0 || fd > 2)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return moved < 0 ? -1 : moved;
}

static int open_stdio_source(const struct psp_wire_options *o, int k, uint32_t instance, const int *fds,
                             int *source)
{
    const struct psp_wire_stdio *st = &o->stdio[k];
    switch (st->kind) {
    case PSP_STDIO_NULL:
        *source = open("/dev/null", O_RDWR | O_CLOEXEC);
        break;
    case PSP_STDIO_FILE:
        *source = open(psp_option_string(o, st->path_offset), st->oflags | O_CLOEXEC, (mode_t)st->mode);
        break;
    case PSP_STDIO_FD:
        *source = fds[st->slot];
        break;
    case PSP_STDIO_PIPE:
        *source = fds[o->shared_fds + instance * o->instance_fds + (uint32_t)st->slot];
        break;
    default:
        *source = -1;
        return 0;
    }
    if (*source < 0)
        return errno;
    *source = above_stdio(*source);
    return *source < 0 ? errno : 0;
}

/* The per-spawn options, in the order posix_spawn would apply them, then stdio. Returns
 * 0 or the errno of the first step that failed. */
static int apply_options(struct psp_proxy *p, const struct psp_wire_options *o, uint32_t instance,
                         const int *fds)
{
    if ((o->set & PSP_OPT_SETSID) && setsid() < 0)
        return errno;
    if ((o->set & PSP_OPT_PGROUP) && setpgid(0, o->pgroup) != 0)
        return errno;
    for (uint32_t i = 0; i < o->rlimit_count; i++) {
        struct rlimit rl = {.rlim_cur = o->rlimits[i].soft, .rlim_max = o->rlimits[i].hard};
        if (setrlimit((__rlimit_resource_t)o->rlimits[i].resource, &rl) != 0)
            return errno;
    }
    if (o->set & PSP_OPT_UMASK)
        umask((mode_t)o->umask);
    if ((o->set & PSP_OPT_CWD) && chdir(psp_option_string(o, o->cwd_offset)) != 0)
        return errno;
    if (o->set & PSP_OPT_CPUS) {
        const void *set = psp_option_string(o, o->cpusets_offset + (instance % o->cpuset_count) * o->cpuset_size);
        if (sched_setaffinity(0, o->cpuset_size, set) != 0)
            return errno;
    }
    int sources[3];
    for (int k = 0; k < 3; k++) {
        int err = open_stdio_source(o, k, instance, fds, &sources[k]);
        if (err != 0)
            return err;
    }
    for (int k = 0; k < 3; k++)
        if (sources[k] >= 0 && dup2(sources[k], k) < 0)
            return errno;
    if (o->set & PSP_OPT_PDEATHSIG) {
        pid_t parent = getppid();
        if (prctl(PR_SET_PDEATHSIG, o->pdeathsig) != 0)
            return errno;
        if (getppid() != parent) /* it died before the signal was armed */
            raise(o->pdeathsig);
    }
    (void)p;
    return 0;
}

/* Room for the descriptor map: the child moves every kept descriptor to free numbers at
 * or above the map's floor, below its RLIMIT_NOFILE (the proxy's: a request that sets
 * limits is reported anyway), while it still holds every descriptor the proxy has. */
static bool fdmap_fits(const struct psp_proxy *p, const struct psp_wire_options *o, const int *fds,
                       uint32_t fd_count)
{
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) != 0)
        return false;
    int highest = p->fd_ceiling;
    for (uint32_t k = 0; k < fd_count; k++)
        if (fds[k] > highest)
            highest = fds[k];
    return (uint64_t)psp_fdmap_floor(o) + o->fdmap_count + (uint64_t)highest + 1 <= (uint64_t)files.rlim_cur;
}

bool psp_setup_may_fail(const struct psp_proxy *p, const struct psp_decoded *req, const int *fds)
{
    const struct psp_wire_options *o = req->options;
    if (req->cpuset_count > 0) /* sched_setaffinity, per instance */
        return true;
    if (o == NULL)
        return false;
    if (!(o->set & PSP_OPT_REPLY_EARLY) || !p->setup_proven || p->pool.capacity > 0)
        return true;
    if (o->set & (PSP_OPT_CWD | PSP_OPT_SETSID | PSP_OPT_PDEATHSIG | PSP_OPT_CPUS))
        return true;
    if (((o->set & PSP_OPT_PGROUP) && o->pgroup != 0) || o->rlimit_count > 0)
        return true;
    for (int k = 0; k < 3; k++) {
        const struct psp_wire_stdio *st = &o->stdio[k];
        if (st->kind == PSP_STDIO_INHERIT)
            continue;
        if (st->kind == PSP_STDIO_FD && fds[st->slot] > 2)
            continue;
        if (st->kind == PSP_STDIO_PIPE) {
            bool above = true;
            for (uint32_t i = 0; i < req->count; i++)
                above &= fds[o->shared_fds + i * o->instance_fds + (uint32_t)st->slot] > 2;
            if (above)
                continue;
        }
        return true; /* opens a file, or moves a descriptor (EMFILE) */
    }
    return (o->set & PSP_OPT_FDMAP) && !fdmap_fits(p, o, fds, req->fd_count);
}

/* Without options there is no error pipe (error_fd -1): the child just exits with 127
 * before main, as a fork+exec child whose exec failed does. */
static _Noreturn void fail_child(int error_fd, uint32_t instance, int err)
{
    int32_t record[2] = {(int32_t)instance, err};
    while (error_fd >= 0 && write(error_fd, record, sizeof(record)) < 0 && errno == EINTR) {
    }
    _exit(127);
}

/* PR_SET_DUMPABLE takes only 0 and 1: a proxy started with 2 (suid_dumpable after a
 * credential change) leaves its children as the proxy is, the stricter of the two. */
static void restore_dumpable(const struct psp_proxy *p)
{
    if (p->saved_dumpable == 0 || p->saved_dumpable == 1)
        prctl(PR_SET_DUMPABLE, p->saved_dumpable, 0, 0, 0);
}

void psp_child_prepare(struct psp_proxy *p, struct psp_decoded *req, uint32_t instance, const int *fds,
                       int error_fd)
{
    if (p->robust_head != NULL)
        syscall(SYS_set_robust_list, p->robust_head, p->robust_len);
    if (req->options != NULL)
        error_fd = above_stdio(error_fd);
    /* Before the options: PR_SET_MM_MAP checks brk against RLIMIT_DATA. */
    int err = psp_child_image_install(p, req);
    const struct psp_wire_options *o = req->options;
    if (err == 0 && o != NULL)
        err = apply_options(p, o, instance, fds);
    if (err == 0 && o != NULL && (o->set & PSP_OPT_FDMAP))
        err = psp_child_place_fds(o, fds, &error_fd);
    if (err != 0)
        fail_child(req->options != NULL ? error_fd : -1, instance, err);
    munmap(p->shared, p->size);
    /* Also closes the error pipe: its EOF tells the proxy we got past set-up. */
    if (o != NULL && (o->set & PSP_OPT_FDMAP))
        psp_child_close_unmapped(o);
    else
        syscall(SYS_close_range, 3u, ~0u, 0u);
    psp_child_restore_signals(p, o);
    /* Last: while non-dumpable, other processes of the user cannot read our memory
     * or descriptors, which held the segment and other instances' pipe ends. */
    restore_dumpable(p);
}
