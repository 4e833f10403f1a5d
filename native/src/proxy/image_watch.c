/* PSP_CONFIG_WATCH_IMAGE: the files the image was loaded from (the executable and every
 * object the loader mapped before main) watched with inotify, so that a request made
 * after one of them changed on disk is refused with ESTALE: a child would run the old
 * code, where an exec would load the new (a build tool rebuilds a library, then runs the
 * program that links it). Two kinds of watch: each file itself (written, truncated,
 * chmod'ed or touched, deleted, renamed, through any path), and each directory the
 * loader found one in, for the names it used there (another file renamed over one, a
 * symlink re-pointed, one deleted). Once stale, always stale: the caller starts a new
 * context. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "proxy/proxy.h"

#define FILE_EVENTS (IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)
#define NAME_EVENTS (IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM)

/* A name the loader used in a directory: (directory watch, basename). */
struct watched_name {
    int wd;
    char *name;
};

static struct watched_name *names;
static size_t name_count, name_cap;
static int watch_error;

static void watch_path(int fd, const char *path)
{
    if (path == NULL || path[0] != '/' || watch_error != 0)
        return;
    if (inotify_add_watch(fd, path, FILE_EVENTS) < 0) {
        watch_error = errno;
        return;
    }
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    if (len >= sizeof(dir))
        return;
    memcpy(dir, path, len);
    dir[len] = '\0';
    int wd = inotify_add_watch(fd, dir, NAME_EVENTS | IN_MASK_ADD);
    if (wd < 0) {
        watch_error = errno;
        return;
    }
    if (name_count == name_cap) {
        size_t cap = name_cap ? 2 * name_cap : 64;
        struct watched_name *grown = realloc(names, cap * sizeof(*names));
        if (grown == NULL) {
            watch_error = ENOMEM;
            return;
        }
        names = grown;
        name_cap = cap;
    }
    if ((names[name_count].name = strdup(slash + 1)) == NULL) {
        watch_error = ENOMEM;
        return;
    }
    names[name_count++].wd = wd;
}

/* The path the loader opened, and where a symlink chain ends (the file itself). */
static void watch_object(int fd, const char *path)
{
    watch_path(fd, path);
    char *real = path != NULL && path[0] == '/' ? realpath(path, NULL) : NULL;
    if (real != NULL && strcmp(real, path) != 0)
        watch_path(fd, real);
    free(real);
}

static int each_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    watch_object(*(int *)data, info->dlpi_name); /* "" (the program) and the vDSO skipped */
    return watch_error != 0;
}

int psp_image_watch_start(struct psp_proxy *p)
{
    int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (fd < 0)
        return errno;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        close(fd);
        return n < 0 ? errno : ENOENT;
    }
    exe[n] = '\0';
    watch_object(fd, exe);
    dl_iterate_phdr(each_object, &fd);
    if (watch_error != 0) {
        close(fd);
        return watch_error;
    }
    p->image_watch_fd = fd;
    return 0;
}

static bool names_watched(int wd, const char *name)
{
    for (size_t i = 0; i < name_count; i++)
        if (names[i].wd == wd && strcmp(names[i].name, name) == 0)
            return true;
    return false;
}

bool psp_image_changed(struct psp_proxy *p)
{
    if (p->image_watch_fd < 0 || p->image_stale)
        return p->image_stale;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    while ((n = read(p->image_watch_fd, buf, sizeof(buf))) > 0) {
        for (ssize_t at = 0; at < n;) {
            const struct inotify_event *e = (const struct inotify_event *)(buf + at);
            at += (ssize_t)(sizeof(*e) + e->len);
            if ((e->mask & NAME_EVENTS) && e->len > 0) /* a directory's entry: is it one of ours? */
                p->image_stale |= names_watched(e->wd, e->name);
            else /* a watched file changed, a watch went away (IN_IGNORED), or events were lost */
                p->image_stale |= (e->mask & (FILE_EVENTS | IN_IGNORED | IN_Q_OVERFLOW)) != 0;
        }
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR)
        p->image_stale = true; /* cannot tell any more */
    return p->image_stale;
}
