/* Library replicas per NUMA node (opt-in, PSPAWN_CTX_NUMA_REPLICAS): copies of the
 * executable and of the shared libraries its proxy maps, written by a thread bound to
 * the node (MPOL_BIND), so that their page cache is on that node; the node's proxies
 * exec the copy with LD_LIBRARY_PATH pointing at the copies. The files a proxy maps are
 * read from a probe proxy's /proc/<pid>/maps (what the loader resolved, no ldd). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launcher/replica.h"

#define PSP_MPOL_BIND 2
#define PSP_REPLICA_MAX_FILES 4096

/* The distinct regular files mapped executable by `pid`, the executable first. */
static int mapped_files(pid_t pid, const char *exe, char ***out, int *count)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    FILE *maps = fopen(path, "re");
    if (maps == NULL)
        return errno;
    char **files = calloc(PSP_REPLICA_MAX_FILES, sizeof(char *));
    int n = 0, err = files == NULL ? ENOMEM : 0;
    if (err == 0 && (files[n++] = strdup(exe)) == NULL)
        err = ENOMEM;
    char line[PATH_MAX + 128];
    while (err == 0 && fgets(line, sizeof(line), maps) != NULL) {
        char perms[8];
        int name_at = 0;
        if (sscanf(line, "%*s %7s %*s %*s %*s %n", perms, &name_at) < 1 || perms[2] != 'x' || name_at == 0 ||
            line[name_at] != '/')
            continue;
        char *name = line + name_at;
        name[strcspn(name, "\n")] = '\0';
        bool seen = false;
        for (int k = 0; k < n && !seen; k++)
            seen = strcmp(files[k], name) == 0;
        if (seen || strstr(name, " (deleted)") != NULL)
            continue;
        if (n == PSP_REPLICA_MAX_FILES || (files[n++] = strdup(name)) == NULL)
            err = n == PSP_REPLICA_MAX_FILES ? E2BIG : ENOMEM;
    }
    fclose(maps);
    if (err != 0) {
        for (int k = 0; files != NULL && k < n; k++)
            free(files[k]);
        free(files);
        return err;
    }
    *out = files;
    *count = n;
    return 0;
}

static int copy_file(const char *from, const char *to, long long *bytes)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return errno;
    struct stat st;
    int err = fstat(in, &st) != 0 ? errno : 0;
    int out = err == 0 ? open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0755) : -1;
    if (err == 0 && out < 0)
        err = errno;
    static __thread char buf[1 << 16];
    while (err == 0) {
        ssize_t r = read(in, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            err = r < 0 ? errno : 0;
            break;
        }
        for (ssize_t done = 0; done < r && err == 0;) {
            ssize_t w = write(out, buf + done, (size_t)(r - done));
            if (w < 0 && errno != EINTR)
                err = errno;
            done += w > 0 ? w : 0;
        }
        *bytes += r;
    }
    close(in);
    if (out >= 0)
        close(out);
    return err;
}

struct copy_job {
    int node;
    const char *dir;
    char **files;
    int count;
    long long bytes;
    int error;
};

/* On its own thread: bound to the node, so the page cache the writes allocate is there. */
static void *copy_for_node(void *arg)
{
    struct copy_job *job = arg;
    unsigned long mask[PSP_MAX_NODES / (8 * sizeof(unsigned long)) + 1] = {0};
    mask[job->node / (8 * sizeof(unsigned long))] |= 1UL << (job->node % (8 * sizeof(unsigned long)));
    if (syscall(SYS_set_mempolicy, PSP_MPOL_BIND, mask, (unsigned long)(8 * sizeof(mask))) != 0) {
        job->error = errno;
        return NULL;
    }
    if (mkdir(job->dir, 0700) != 0) {
        job->error = errno;
        return NULL;
    }
    for (int k = 0; k < job->count && job->error == 0; k++) {
        const char *base = strrchr(job->files[k], '/') + 1;
        char to[PATH_MAX + 1100];
        if (snprintf(to, sizeof(to), "%s/%s", job->dir, base) >= (int)sizeof(to))
            job->error = ENAMETOOLONG;
        else
            job->error = copy_file(job->files[k], to, &job->bytes);
    }
    return NULL;
}

/* Two files with one name would collide in a replica directory. */
static bool names_unique(char **files, int count)
{
    for (int a = 0; a < count; a++)
        for (int b = a + 1; b < count; b++)
            if (strcmp(strrchr(files[a], '/'), strrchr(files[b], '/')) == 0)
                return false;
    return true;
}

/* Removes dir (a descriptor, relative to parent) with its entries, at most two levels
 * (ROOT/nodeN/file); never follows a symbolic link. */
static void remove_tree(int parent, const char *name, int depth)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (e->d_type == DT_DIR && depth > 0)
            remove_tree(dirfd(d), e->d_name, depth - 1);
        else if (e->d_type != DT_DIR)
            (void)unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
    (void)unlinkat(parent, name, AT_REMOVEDIR);
}

/* Replicas of launchers that died without destroying their context (SIGKILL): ours
 * (same owner) whose pid no longer exists. A pid reused since is left alone. */
static void remove_leftovers(const char *tmp)
{
    DIR *d = opendir(tmp);
    if (d == NULL)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        int pid;
        struct stat st;
        if (sscanf(e->d_name, "pspawn-replicas-%d-", &pid) != 1 || pid <= 0 || pid == getpid() ||
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
            st.st_uid != geteuid() || kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        remove_tree(dirfd(d), e->d_name, 1);
    }
    closedir(d);
}

int psp_replicas_make(struct psp_replicas *r, pid_t probe, const char *exe, const int *nodes, int node_count)
{
    memset(r, 0, sizeof(*r));
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] != '/')
        tmp = "/tmp";
    remove_leftovers(tmp);
    if (snprintf(r->root, sizeof(r->root), "%s/pspawn-replicas-%d-XXXXXX", tmp, (int)getpid()) >= (int)sizeof(r->root))
        return ENAMETOOLONG;
    char **files = NULL;
    int count = 0;
    int err = mapped_files(probe, exe, &files, &count);
    if (err == 0 && !names_unique(files, count))
        err = ENOTUNIQ;
    if (err == 0 && mkdtemp(r->root) == NULL)
        err = errno;
    for (int i = 0; err == 0 && i < node_count; i++) {
        char dir[1100];
        snprintf(dir, sizeof(dir), "%s/node%d", r->root, nodes[i]);
        struct copy_job job = {.node = nodes[i], .dir = dir, .files = files, .count = count};
        pthread_t thread;
        if ((err = pthread_create(&thread, NULL, copy_for_node, &job)) != 0)
            break;
        pthread_join(thread, NULL);
        err = job.error;
        r->bytes += job.bytes;
        r->node[r->count++] = nodes[i];
    }
    r->files = files;
    r->file_count = count;
    if (err != 0)
        psp_replicas_remove(r);
    return err;
}

int psp_replica_paths(const struct psp_replicas *r, int node, const char *original, char **replica, char **dir)
{
    for (int i = 0; i < r->count; i++) {
        if (r->node[i] != node)
            continue;
        const char *base = strrchr(original, '/');
        if (asprintf(dir, "%s/node%d", r->root, node) < 0)
            return ENOMEM;
        if (asprintf(replica, "%s/%s", *dir, base != NULL ? base + 1 : original) < 0) {
            free(*dir);
            return ENOMEM;
        }
        if (access(*replica, R_OK) != 0) { /* not among the mapped files */
            free(*replica);
            *replica = NULL;
        }
        return 0;
    }
    *replica = *dir = NULL;
    return 0;
}

void psp_replicas_remove(struct psp_replicas *r)
{
    for (int i = 0; i < r->count; i++) {
        for (int k = 0; k < r->file_count; k++) {
            char path[PATH_MAX + 1100];
            snprintf(path, sizeof(path), "%s/node%d/%s", r->root, r->node[i], strrchr(r->files[k], '/') + 1);
            (void)unlink(path);
        }
        char dir[1100];
        snprintf(dir, sizeof(dir), "%s/node%d", r->root, r->node[i]);
        (void)rmdir(dir);
    }
    if (r->root[0] != '\0' && strstr(r->root, "XXXXXX") == NULL)
        (void)rmdir(r->root);
    for (int k = 0; k < r->file_count; k++)
        free(r->files[k]);
    free(r->files);
    r->files = NULL;
    r->file_count = r->count = 0;
}
