/* glibc's posix_spawn_file_actions_t is opaque: every posix_spawn_file_actions_* call is
 * interposed, passed on to glibc (so the object stays valid for the real call) and
 * recorded in a side table keyed by the object's address. A record is trusted only while
 * it matches the object (its count and action array as glibc left them after our last
 * call): an object copied by value, or changed by calls we did not see, is "unknown" and
 * its spawn is the real call. init starts a fresh record (a stale one after destroy or
 * reuse of the address is dropped), destroy removes it. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "intercept/intercept.h"

#define API __attribute__((visibility("default")))
#define TABLE_SIZE 1024 /* open addressing; more live objects than this: unknown */

struct record {
    const posix_spawn_file_actions_t *key; /* NULL: free */
    int used;                               /* fa->__used after our last call */
    const void *actions;                    /* fa->__actions after our last call */
    bool broken;                            /* a call we could not record */
    struct psi_actions list;
};

static struct record table[TABLE_SIZE];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

void psi_actions_lock(void)
{
    pthread_mutex_lock(&table_lock);
}

void psi_actions_unlock(void)
{
    pthread_mutex_unlock(&table_lock);
}

void psi_actions_after_fork(void)
{
    pthread_mutex_init(&table_lock, NULL); /* the records are the child's copies: kept */
}

static size_t slot_of(const void *key)
{
    return ((uintptr_t)key >> 4) % TABLE_SIZE;
}

static struct record *find(const posix_spawn_file_actions_t *fa, bool create)
{
    size_t start = slot_of(fa);
    struct record *free_slot = NULL;
    for (size_t i = 0; i < TABLE_SIZE; i++) {
        struct record *r = &table[(start + i) % TABLE_SIZE];
        if (r->key == fa)
            return r;
        if (r->key == NULL) {
            free_slot = r;
            break;
        }
    }
    if (!create || free_slot == NULL)
        return NULL;
    memset(free_slot, 0, sizeof(*free_slot));
    free_slot->key = fa;
    return free_slot;
}

static void clear(struct record *r)
{
    psi_actions_free(&r->list);
    r->broken = false;
}

/* Removing from open addressing: re-insert the rest of the cluster. */
static void remove_record(struct record *r)
{
    clear(r);
    r->key = NULL;
    size_t i = (size_t)(r - table);
    for (size_t j = (i + 1) % TABLE_SIZE; table[j].key != NULL; j = (j + 1) % TABLE_SIZE) {
        struct record moved = table[j];
        table[j].key = NULL;
        struct record *to = find(moved.key, true);
        *to = moved;
    }
}

static void sync_record(struct record *r, const posix_spawn_file_actions_t *fa)
{
    r->used = fa->__used;
    r->actions = fa->__actions;
}

static void *next(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

#define REAL(type, name) ((type)real_of(&real_##name, #name))
static void *real_of(void **cache, const char *name)
{
    void *f = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (f == NULL) {
        f = next(name);
        __atomic_store_n(cache, f, __ATOMIC_RELEASE);
    }
    return f;
}

/* Appends an action to fa's record after glibc accepted it (rc 0). */
static int record(posix_spawn_file_actions_t *fa, int rc, struct psi_action action)
{
    if (rc != 0) {
        free(action.path);
        return rc;
    }
    pthread_mutex_lock(&table_lock);
    struct record *r = find(fa, false);
    if (r != NULL && !r->broken) {
        struct psi_action *grown = realloc(r->list.items, ((size_t)r->list.count + 1) * sizeof(*grown));
        if (grown == NULL) {
            r->broken = true;
            free(action.path);
        } else {
            r->list.items = grown;
            r->list.items[r->list.count++] = action;
            action.path = NULL;
        }
        sync_record(r, fa);
    } else {
        free(action.path);
    }
    pthread_mutex_unlock(&table_lock);
    return rc;
}

static char *copy_path(const char *path)
{
    return path != NULL ? strdup(path) : NULL;
}

static void *real_posix_spawn_file_actions_init, *real_posix_spawn_file_actions_destroy,
    *real_posix_spawn_file_actions_addopen, *real_posix_spawn_file_actions_addclose,
    *real_posix_spawn_file_actions_adddup2, *real_posix_spawn_file_actions_addchdir_np,
    *real_posix_spawn_file_actions_addfchdir_np, *real_posix_spawn_file_actions_addclosefrom_np,
    *real_posix_spawn_file_actions_addtcsetpgrp_np;

API int posix_spawn_file_actions_init(posix_spawn_file_actions_t *fa)
{
    int rc = REAL(int (*)(posix_spawn_file_actions_t *), posix_spawn_file_actions_init)(fa);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&table_lock);
    struct record *r = find(fa, true);
    if (r != NULL) {
        clear(r);
        sync_record(r, fa);
    }
    pthread_mutex_unlock(&table_lock);
    return rc;
}

API int posix_spawn_file_actions_destroy(posix_spawn_file_actions_t *fa)
{
    pthread_mutex_lock(&table_lock);
    struct record *r = find(fa, false);
    if (r != NULL)
        remove_record(r);
    pthread_mutex_unlock(&table_lock);
    return REAL(int (*)(posix_spawn_file_actions_t *), posix_spawn_file_actions_destroy)(fa);
}

API int posix_spawn_file_actions_addopen(posix_spawn_file_actions_t *restrict fa, int fd,
                                         const char *restrict path, int oflag, mode_t mode)
{
    int rc = REAL(int (*)(posix_spawn_file_actions_t *, int, const char *, int, mode_t),
                  posix_spawn_file_actions_addopen)(fa, fd, path, oflag, mode);
    return record(fa, rc, (struct psi_action){.kind = PSI_OPEN, .fd = fd, .oflag = oflag, .mode = mode,
                                               .path = rc == 0 ? copy_path(path) : NULL});
}

API int posix_spawn_file_actions_addclose(posix_spawn_file_actions_t *fa, int fd)
{
    int rc = REAL(int (*)(posix_spawn_file_actions_t *, int), posix_spawn_file_actions_addclose)(fa, fd);
    return record(fa, rc, (struct psi_action){.kind = PSI_CLOSE, .fd = fd});
}

API int posix_spawn_file_actions_adddup2(posix_spawn_file_actions_t *fa, int fd, int newfd)
{
    int rc = REAL(int (*)(posix_spawn_file_actions_t *, int, int), posix_spawn_file_actions_adddup2)(fa, fd, newfd);
    return record(fa, rc, (struct psi_action){.kind = PSI_DUP2, .fd = fd, .newfd = newfd});
}

API int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *restrict fa, const char *restrict path)
{
    int rc = REAL(int (*)(posix_spawn_file_actions_t *, const char *), posix_spawn_file_actions_addchdir_np)(fa, path);
    return record(fa, rc, (struct psi_action){.kind = PSI_CHDIR, .path = rc == 0 ? copy_path(path) : NULL});
}

API int posix_spawn_file_actions_addfchdir_np(posix_spawn_file_actions_t *fa, int fd)
{
    int rc = REAL(int (*)(posix_spawn_file_actions_t *, int), posix_spawn_file_actions_addfchdir_np)(fa, fd);
    return record(fa, rc, (struct psi_action){.kind = PSI_FCHDIR, .fd = fd});
}

API int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *fa, int from)
{
    int rc = REAL(int (*)(posix_spawn_file_actions_t *, int), posix_spawn_file_actions_addclosefrom_np)(fa, from);
    return record(fa, rc, (struct psi_action){.kind = PSI_CLOSEFROM, .fd = from});
}

API int posix_spawn_file_actions_addtcsetpgrp_np(posix_spawn_file_actions_t *fa, int fd)
{
    int rc = REAL(int (*)(posix_spawn_file_actions_t *, int), posix_spawn_file_actions_addtcsetpgrp_np)(fa, fd);
    return record(fa, rc, (struct psi_action){.kind = PSI_TCSETPGRP, .fd = fd});
}

bool psi_actions_copy(const posix_spawn_file_actions_t *fa, struct psi_actions *out)
{
    *out = (struct psi_actions){0};
    if (fa == NULL)
        return true;
    pthread_mutex_lock(&table_lock);
    struct record *r = find(fa, false);
    bool ok = r != NULL && !r->broken && r->used == fa->__used && r->actions == fa->__actions &&
              r->list.count == fa->__used;
    if (ok && r->list.count > 0) {
        out->items = calloc((size_t)r->list.count, sizeof(*out->items));
        ok = out->items != NULL;
        for (int i = 0; ok && i < r->list.count; i++) {
            out->items[i] = r->list.items[i];
            out->items[i].path = NULL;
            out->count = i + 1;
            if (r->list.items[i].path != NULL && (out->items[i].path = strdup(r->list.items[i].path)) == NULL)
                ok = false;
        }
    }
    pthread_mutex_unlock(&table_lock);
    if (!ok)
        psi_actions_free(out);
    return ok;
}

void psi_actions_free(struct psi_actions *a)
{
    for (int i = 0; i < a->count; i++)
        free(a->items[i].path);
    free(a->items);
    *a = (struct psi_actions){0};
}
