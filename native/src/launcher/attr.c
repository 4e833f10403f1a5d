/* Per-spawn options: the public setters and their encoding for the proxy. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "launcher/internal.h"

static void free_instance_cgroups(pspawn_attr_t *attr);

int pspawn_attr_create(pspawn_attr_t **attr)
{
    if (attr == NULL) {
        errno = EINVAL;
        return -1;
    }
    *attr = calloc(1, sizeof(**attr));
    if (*attr == NULL) {
        errno = ENOMEM;
        return -1;
    }
    for (int k = 0; k < 3; k++)
        (*attr)->stdio[k].caller_fd = -1;
    return 0;
}

void pspawn_attr_destroy(pspawn_attr_t *attr)
{
    if (attr == NULL)
        return;
    for (int k = 0; k < 3; k++) {
        free(attr->stdio[k].path);
        if (attr->owns_fds && attr->stdio[k].kind == PSP_STDIO_FD && attr->stdio[k].caller_fd >= 0)
            close(attr->stdio[k].caller_fd);
    }
    free(attr->cwd);
    free(attr->cpusets);
    psp_attr_exact_release(attr);
    if (attr->has_cgroup)
        close(attr->cgroup_fd);
    free_instance_cgroups(attr);
    free(attr);
}

int pspawn_attr_set_cgroup(pspawn_attr_t *attr, const char *path)
{
    if (attr == NULL) {
        errno = EINVAL;
        return -1;
    }
    int fd = -1;
    if (path != NULL) {
        int err = psp_cgroup_open(path, &fd);
        if (err != 0) {
            errno = err;
            return -1;
        }
    }
    if (attr->has_cgroup)
        close(attr->cgroup_fd);
    attr->has_cgroup = fd >= 0;
    attr->cgroup_fd = fd;
    return 0;
}

static void free_instance_cgroups(pspawn_attr_t *attr)
{
    psp_cgroup_close_all(attr->cgroup_dirs, attr->cgroup_dir_count);
    free(attr->instance_cgroup);
    attr->cgroup_dirs = NULL;
    attr->instance_cgroup = NULL;
    attr->cgroup_dir_count = attr->instance_cgroup_count = 0;
}

/* The index of `path` among the recently added distinct paths (names[]), opened and
 * added if new; -1 with *err set on failure. */
static int intern_cgroup(pspawn_attr_t *attr, const char **names, const char *path, int *err)
{
    int from = attr->cgroup_dir_count > 64 ? attr->cgroup_dir_count - 64 : 0;
    for (int k = attr->cgroup_dir_count - 1; k >= from; k--)
        if (strcmp(names[k], path) == 0)
            return k;
    if ((*err = psp_cgroup_open(path, &attr->cgroup_dirs[attr->cgroup_dir_count])) != 0)
        return -1;
    names[attr->cgroup_dir_count] = path;
    return attr->cgroup_dir_count++;
}

int pspawn_attr_set_cgroup_per_instance(pspawn_attr_t *attr, const char *const *paths, int count)
{
    if (attr == NULL || count < 0 || (count > 0 && paths == NULL) || count > PSPAWN_MAX_SPAWNS) {
        errno = EINVAL;
        return -1;
    }
    pspawn_attr_t built = {.instance_cgroup_count = count};
    const char **names = NULL;
    int err = 0;
    if (count > 0) {
        built.instance_cgroup = malloc((size_t)count * sizeof(int));
        built.cgroup_dirs = malloc((size_t)count * sizeof(int));
        names = malloc((size_t)count * sizeof(char *));
        if (built.instance_cgroup == NULL || built.cgroup_dirs == NULL || names == NULL)
            err = ENOMEM;
    }
    for (int i = 0; i < count && err == 0; i++)
        built.instance_cgroup[i] = paths[i] == NULL ? -1 : intern_cgroup(&built, names, paths[i], &err);
    free(names);
    if (err != 0) {
        free_instance_cgroups(&built);
        errno = err;
        return -1;
    }
    free_instance_cgroups(attr);
    attr->instance_cgroup_count = count;
    attr->instance_cgroup = built.instance_cgroup;
    attr->cgroup_dirs = built.cgroup_dirs;
    attr->cgroup_dir_count = built.cgroup_dir_count;
    return 0;
}

static int invalid(void)
{
    errno = EINVAL;
    return -1;
}

static int set_stdio(pspawn_attr_t *attr, int fd, int kind, const char *path, int oflags, mode_t mode,
                     int caller_fd)
{
    if (attr == NULL || fd < 0 || fd > 2)
        return invalid();
    char *copy = NULL;
    if (path != NULL) {
        if (path[0] == '\0' || strlen(path) >= PSP_MAX_PATH)
            return invalid();
        if ((copy = strdup(path)) == NULL) {
            errno = ENOMEM;
            return -1;
        }
    }
    free(attr->stdio[fd].path);
    attr->stdio[fd] = (struct psp_attr_stdio){
        .kind = kind, .path = copy, .oflags = oflags, .mode = mode, .caller_fd = caller_fd};
    return 0;
}

int pspawn_attr_stdio_inherit(pspawn_attr_t *attr, int fd)
{
    return set_stdio(attr, fd, PSP_STDIO_INHERIT, NULL, 0, 0, -1);
}

int pspawn_attr_stdio_null(pspawn_attr_t *attr, int fd)
{
    return set_stdio(attr, fd, PSP_STDIO_NULL, NULL, 0, 0, -1);
}

int pspawn_attr_stdio_file(pspawn_attr_t *attr, int fd, const char *path, int oflags, mode_t mode)
{
    if (path == NULL)
        return invalid();
    return set_stdio(attr, fd, PSP_STDIO_FILE, path, oflags, mode, -1);
}

int pspawn_attr_stdio_fd(pspawn_attr_t *attr, int fd, int caller_fd)
{
    if (caller_fd < 0 || fcntl(caller_fd, F_GETFD) < 0) {
        errno = EBADF;
        return -1;
    }
    return set_stdio(attr, fd, PSP_STDIO_FD, NULL, 0, 0, caller_fd);
}

int pspawn_attr_stdio_pipe(pspawn_attr_t *attr, int fd)
{
    return set_stdio(attr, fd, PSP_STDIO_PIPE, NULL, 0, 0, -1);
}

int pspawn_attr_set_cwd(pspawn_attr_t *attr, const char *dir)
{
    if (attr == NULL || dir == NULL || dir[0] == '\0' || strlen(dir) >= PSP_MAX_PATH)
        return invalid();
    char *copy = strdup(dir);
    if (copy == NULL) {
        errno = ENOMEM;
        return -1;
    }
    free(attr->cwd);
    attr->cwd = copy;
    return 0;
}

int pspawn_attr_set_umask(pspawn_attr_t *attr, mode_t mask)
{
    if (attr == NULL || (mask & ~(mode_t)0777) != 0)
        return invalid();
    attr->set |= PSP_OPT_UMASK;
    attr->umask = mask;
    return 0;
}

int pspawn_attr_set_process_group(pspawn_attr_t *attr, pid_t pgid)
{
    if (attr == NULL || pgid < 0)
        return invalid();
    attr->set = (attr->set & ~PSP_OPT_SETSID) | PSP_OPT_PGROUP;
    attr->pgroup = pgid;
    return 0;
}

int pspawn_attr_set_new_session(pspawn_attr_t *attr)
{
    if (attr == NULL)
        return invalid();
    attr->set = (attr->set & ~PSP_OPT_PGROUP) | PSP_OPT_SETSID;
    return 0;
}

int pspawn_attr_add_rlimit(pspawn_attr_t *attr, int resource, rlim_t soft, rlim_t hard)
{
    if (attr == NULL || resource < 0 || resource >= RLIM_NLIMITS || soft > hard ||
        attr->rlimit_count == PSP_MAX_RLIMITS)
        return invalid();
    attr->rlimits[attr->rlimit_count++] =
        (struct psp_wire_rlimit){.resource = resource, .soft = soft, .hard = hard};
    return 0;
}

int pspawn_attr_set_parent_death_signal(pspawn_attr_t *attr, int sig)
{
    if (attr == NULL || sig <= 0 || sig >= 65)
        return invalid();
    attr->set |= PSP_OPT_PDEATHSIG;
    attr->pdeathsig = sig;
    return 0;
}

int pspawn_attr_set_numa_local(pspawn_attr_t *attr, int on)
{
    if (attr == NULL)
        return invalid();
    if (on)
        attr->set |= PSP_OPT_NUMA_LOCAL;
    else
        attr->set &= ~(uint32_t)PSP_OPT_NUMA_LOCAL;
    return 0;
}

int pspawn_attr_set_cpus_per_instance(pspawn_attr_t *attr, const cpu_set_t *sets, int count)
{
    if (attr == NULL || sets == NULL || count <= 0 || count > 4096)
        return invalid();
    for (int i = 0; i < count; i++)
        if (CPU_COUNT(&sets[i]) == 0)
            return invalid();
    cpu_set_t *copy = malloc((size_t)count * sizeof(cpu_set_t));
    if (copy == NULL) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(copy, sets, (size_t)count * sizeof(cpu_set_t));
    free(attr->cpusets);
    attr->cpusets = copy;
    attr->cpuset_count = count;
    attr->set |= PSP_OPT_CPUS;
    return 0;
}

int pspawn_attr_set_cpus(pspawn_attr_t *attr, const cpu_set_t *set)
{
    return pspawn_attr_set_cpus_per_instance(attr, set, 1);
}

int psp_attr_pipe_count(const pspawn_attr_t *attr)
{
    int n = 0;
    for (int k = 0; attr != NULL && k < 3; k++)
        n += attr->stdio[k].kind == PSP_STDIO_PIPE;
    return n;
}

static size_t align8(size_t v)
{
    return (v + 7) & ~(size_t)7;
}

size_t psp_attr_wire_size(const pspawn_attr_t *attr)
{
    size_t size = sizeof(struct psp_wire_options);
    if (attr->cwd != NULL)
        size += strlen(attr->cwd) + 1;
    for (int k = 0; k < 3; k++)
        if (attr->stdio[k].path != NULL)
            size += strlen(attr->stdio[k].path) + 1;
    return align8(align8(size) + psp_attr_exact_wire_size(attr));
}

static uint32_t put_string(char *blob, size_t *cursor, const char *s, uint32_t *length)
{
    size_t len = strlen(s);
    uint32_t offset = (uint32_t)*cursor;
    memcpy(blob + *cursor, s, len + 1);
    *cursor += len + 1;
    *length = (uint32_t)len;
    return offset;
}

void psp_attr_encode(const pspawn_attr_t *attr, void *dst, int *shared_fds)
{
    char *blob = dst;
    struct psp_wire_options *o = dst;
    memset(o, 0, sizeof(*o));
    size_t cursor = sizeof(*o);
    /* CPU sets are not options on the wire: the plan gives every instance its own. */
    o->set = attr->set & ~(uint32_t)PSP_OPT_CPUS;
    o->umask = attr->umask;
    o->pgroup = attr->pgroup;
    o->pdeathsig = attr->pdeathsig;
    if (attr->cwd != NULL) {
        o->set |= PSP_OPT_CWD;
        o->cwd_offset = put_string(blob, &cursor, attr->cwd, &o->cwd_length);
    }
    for (int k = 0; k < 3; k++) {
        const struct psp_attr_stdio *s = &attr->stdio[k];
        struct psp_wire_stdio *w = &o->stdio[k];
        w->kind = s->kind;
        w->oflags = s->oflags;
        w->mode = s->mode;
        if (s->path != NULL)
            w->path_offset = put_string(blob, &cursor, s->path, &w->path_length);
        if (s->kind == PSP_STDIO_FD) {
            w->slot = (int32_t)o->shared_fds;
            shared_fds[o->shared_fds++] = s->caller_fd;
        } else if (s->kind == PSP_STDIO_PIPE) {
            w->slot = (int32_t)o->instance_fds++;
        }
    }
    o->rlimit_count = attr->rlimit_count;
    memcpy(o->rlimits, attr->rlimits, sizeof(o->rlimits));
    cursor = align8(cursor);
    psp_attr_exact_encode(attr, o, &cursor, shared_fds);
}

int psp_attr_clone(const pspawn_attr_t *attr, pspawn_attr_t **out)
{
    pspawn_attr_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ENOMEM;
    *c = *attr;
    c->cwd = NULL;
    c->cpusets = NULL;
    c->owns_fds = true;
    c->has_cgroup = false;
    c->cgroup_fd = -1;
    c->fdmap_count = 0;
    c->fdmap_targets = NULL;
    c->fdmap_sources = NULL;
    c->instance_cgroup = NULL;
    c->cgroup_dirs = NULL;
    c->cgroup_dir_count = 0;
    for (int k = 0; k < 3; k++) {
        c->stdio[k].path = NULL;
        c->stdio[k].caller_fd = -1;
    }
    int err = 0;
    if (attr->cwd != NULL && (c->cwd = strdup(attr->cwd)) == NULL)
        err = ENOMEM;
    if (err == 0 && attr->cpuset_count > 0) {
        if ((c->cpusets = malloc((size_t)attr->cpuset_count * sizeof(cpu_set_t))) == NULL)
            err = ENOMEM;
        else
            memcpy(c->cpusets, attr->cpusets, (size_t)attr->cpuset_count * sizeof(cpu_set_t));
    }
    for (int k = 0; k < 3 && err == 0; k++) {
        if (attr->stdio[k].path != NULL && (c->stdio[k].path = strdup(attr->stdio[k].path)) == NULL)
            err = ENOMEM;
        if (err == 0 && attr->stdio[k].kind == PSP_STDIO_FD &&
            (c->stdio[k].caller_fd = fcntl(attr->stdio[k].caller_fd, F_DUPFD_CLOEXEC, 3)) < 0)
            err = errno;
    }
    if (err == 0)
        err = psp_attr_exact_clone(attr, c);
    if (err == 0 && attr->has_cgroup) {
        if ((c->cgroup_fd = fcntl(attr->cgroup_fd, F_DUPFD_CLOEXEC, 3)) < 0)
            err = errno;
        else
            c->has_cgroup = true;
    }
    if (err == 0 && attr->instance_cgroup_count > 0) {
        c->instance_cgroup = malloc((size_t)attr->instance_cgroup_count * sizeof(int));
        c->cgroup_dirs = malloc((size_t)attr->cgroup_dir_count * sizeof(int) + 1);
        if (c->instance_cgroup == NULL || c->cgroup_dirs == NULL)
            err = ENOMEM;
        else
            memcpy(c->instance_cgroup, attr->instance_cgroup, (size_t)attr->instance_cgroup_count * sizeof(int));
        for (int k = 0; err == 0 && k < attr->cgroup_dir_count; k++) {
            if ((c->cgroup_dirs[k] = fcntl(attr->cgroup_dirs[k], F_DUPFD_CLOEXEC, 3)) < 0)
                err = errno;
            else
                c->cgroup_dir_count = k + 1;
        }
    }
    if (err != 0) {
        pspawn_attr_destroy(c);
        return err;
    }
    *out = c;
    return 0;
}
