/* Zygote contexts, one per (executable, loader environment), created on demand after
 * psi_config.after launches. Entries are never freed while the launcher runs: a retired
 * context (its executable changed, its proxy failed for good) is destroyed by its last
 * user, and the entry may start a new one later. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "intercept/intercept.h"

#define MAX_ENTRIES 64
/* Parked children of a zygote unused this long end (refilled on its next launch). */
#define PSI_POOL_IDLE_MS 10000

enum entry_state { ENTRY_COUNTING, ENTRY_CREATING, ENTRY_READY, ENTRY_FAILED };

/* A live context with its users: the entry holds one reference while it is current. */
struct psi_zygote {
    pspawn_context_t ctx;
    struct psi_snapshot snap;
    const char *path;
    int refs;
    int own_slot; /* wait.c's slot for the context (its proxy, its parked children) */
};

struct psi_entry {
    char *path;
    char *loader;        /* psi_loader_signature of the environment */
    long launches;
    enum entry_state state;
    int failure;         /* errno of create, for the log */
    struct psi_zygote *zygote; /* ENTRY_READY */
};

static struct psi_entry entries[MAX_ENTRIES];
static int entry_count;
static atomic_bool ended_by_exec; /* psi_contexts_after_failed_exec */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void psi_contexts_lock(void)
{
    pthread_mutex_lock(&lock);
}

void psi_contexts_unlock(void)
{
    pthread_mutex_unlock(&lock);
}

static struct psi_entry *lookup(const char *path, const char *loader)
{
    for (int i = 0; i < entry_count; i++)
        if (strcmp(entries[i].path, path) == 0 && strcmp(entries[i].loader, loader) == 0)
            return &entries[i];
    if (entry_count == MAX_ENTRIES)
        return NULL;
    struct psi_entry *e = &entries[entry_count];
    memset(e, 0, sizeof(*e));
    if ((e->path = strdup(path)) == NULL || (e->loader = strdup(loader)) == NULL) {
        free(e->path);
        return NULL;
    }
    entry_count++;
    return e;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mode == b->st_mode && a->st_uid == b->st_uid && a->st_gid == b->st_gid &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Drops a reference (under the lock); true if the caller must destroy it. */
static bool unref_locked(struct psi_zygote *z)
{
    return --z->refs == 0;
}

/* Destroys the context, or abandons it if the launcher took one of its descriptors
 * (own.c): then none of those numbers, which may be the launcher's files now, is closed. */
static void end_context(struct psi_zygote *z)
{
    /* First: the context's memory goes next. */
    if (psi_own_context_remove(z->own_slot))
        pspawn_context_abandon(&z->ctx);
    else
        pspawn_context_destroy(&z->ctx);
}

static void destroy_zygote(struct psi_zygote *z)
{
    end_context(z);
    free(z);
}

/* The entry stops using its zygote (under the lock); the last user destroys it. */
static struct psi_zygote *retire_locked(struct psi_entry *e)
{
    struct psi_zygote *z = e->zygote;
    e->zygote = NULL;
    e->state = ENTRY_COUNTING;
    e->launches = 0;
    return z != NULL && unref_locked(z) ? z : NULL;
}

static void create_context(struct psi_entry *e, char *const envp[])
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.proxies = 1; /* unpinned: children keep the affinity of the proxy, the caller's */
    attr.flags |= PSPAWN_CTX_FDS_ABOVE_LIMIT; /* the launcher's descriptor budget stays its own */
    attr.flags |= PSPAWN_CTX_WATCH_IMAGE;     /* a rebuilt library: ESTALE, then a new zygote */
    if (psi_config.merge_text)                /* fewer areas per fork and exit (docs/design.md) */
        attr.flags |= PSPAWN_CTX_MERGE_TEXT;
    attr.proxy_envp = envp;
    /* PSPAWN_INTERCEPT_POOL: spawns (all carry the exact child state) are handed to parked
     * children, the proxy forking between launches instead of during one; slower on the
     * 2-core VM measured (docs/benchmarks.md), so not by default. */
    attr.pool = psi_config.pool;
    attr.pool_idle_ms = PSI_POOL_IDLE_MS;
    struct psi_zygote *z = calloc(1, sizeof(*z));
    int err = 0;
    if (z == NULL)
        err = ENOMEM;
    else if (psi_snapshot_take(&z->snap, e->path) != 0)
        err = errno;
    else if (pspawn_context_create_ex(&z->ctx, e->path, &attr) != 0)
        err = errno;
    else if (pspawn_context_mode(&z->ctx) != PSPAWN_MODE_ZYGOTE) {
        pspawn_context_destroy(&z->ctx);
        err = ECHILD; /* relay mode: the children would not be the caller's */
    }
    if (err != 0) {
        free(z);
        z = NULL;
    } else {
        z->own_slot = psi_own_context_add(&z->ctx);
    }
    pthread_mutex_lock(&lock);
    if (z != NULL) {
        z->path = e->path;
        z->refs = 1;
        e->zygote = z;
        e->state = ENTRY_READY;
    } else {
        e->state = ENTRY_FAILED;
        e->failure = err;
    }
    pthread_mutex_unlock(&lock);
    if (z != NULL)
        psi_log("zygote for %s started (proxy %d)", e->path, (int)pspawn_context_proxy_pid(&z->ctx));
    else
        psi_log("no zygote for %s: %s (errno %d); every launch is the real call", e->path,
                err == ECHILD ? "the caller is pid 1 or ignores SIGCHLD (relay mode)" : strerror(err), err);
}

/* After a failed exec whose preparation killed every proxy: each zygote is retired; those
 * nobody else uses are destroyed here (the lock is held, but destroying takes no lock of
 * ours; ended proxies take no time to stop). */
static void retire_all_locked(void)
{
    for (int i = 0; i < entry_count; i++) {
        if (entries[i].state != ENTRY_READY)
            continue;
        const char *path = entries[i].path;
        struct psi_zygote *z = retire_locked(&entries[i]);
        if (z != NULL)
            destroy_zygote(z);
        psi_log("zygote for %s retired: it was ended for an exec that failed", path);
    }
}

void psi_contexts_after_failed_exec(void)
{
    atomic_store(&ended_by_exec, true);
}

struct psi_zygote *psi_zygote_get(const char *path, char *const envp[])
{
    char *loader = psi_loader_signature(envp);
    if (loader == NULL)
        return NULL;
    struct stat now;
    bool have_now = stat(path, &now) == 0;
    pthread_mutex_lock(&lock);
    struct psi_entry *e = lookup(path, loader);
    free(loader);
    if (e == NULL) {
        pthread_mutex_unlock(&lock);
        psi_log("real call for %s: the table of %d executables is full", path, MAX_ENTRIES);
        return NULL;
    }
    struct psi_zygote *stale = NULL;
    if (atomic_exchange(&ended_by_exec, false))
        retire_all_locked();
    if (e->state == ENTRY_READY && psi_own_context_lost(e->zygote->own_slot)) {
        stale = retire_locked(e);
        psi_log("the launcher closed or reused a descriptor of the zygote for %s: it is abandoned", path);
    } else if (e->state == ENTRY_READY && (!have_now || !same_file(&now, &e->zygote->snap.exe))) {
        stale = retire_locked(e);
        psi_log("%s changed on disk (or is gone): its zygote is retired", path);
    }
    long n = ++e->launches;
    enum entry_state state = e->state;
    bool create = state == ENTRY_COUNTING && n > psi_config.after;
    if (create)
        e->state = ENTRY_CREATING;
    struct psi_zygote *z = state == ENTRY_READY ? e->zygote : NULL;
    if (z != NULL)
        z->refs++;
    int failure = e->failure;
    pthread_mutex_unlock(&lock);
    if (stale != NULL)
        destroy_zygote(stale);
    switch (state) {
    case ENTRY_READY:
        return z;
    case ENTRY_FAILED:
        psi_log("real call for %s: no zygote (errno %d)", path, failure);
        return NULL;
    case ENTRY_CREATING:
        psi_log("real call for %s: its zygote is being started by another thread", path);
        return NULL;
    case ENTRY_COUNTING:
        break;
    }
    if (!create) {
        psi_log("real call for %s: launch %ld, threshold %d", path, n, psi_config.after);
        return NULL;
    }
    create_context(e, envp);
    pthread_mutex_lock(&lock);
    z = e->state == ENTRY_READY ? e->zygote : NULL;
    if (z != NULL)
        z->refs++;
    pthread_mutex_unlock(&lock);
    return z;
}

void psi_zygote_put(struct psi_zygote *z)
{
    pthread_mutex_lock(&lock);
    bool last = unref_locked(z);
    pthread_mutex_unlock(&lock);
    if (last)
        destroy_zygote(z);
}

const struct psi_snapshot *psi_zygote_snapshot(const struct psi_zygote *z)
{
    return &z->snap;
}

pid_t psi_zygote_spawn(struct psi_zygote *z, const char *exe, char *const argv[], char *const envp[],
                       struct psi_child *child, const char **why)
{
    pid_t p = pspawn_x(&z->ctx, argv, envp, child->attr, NULL);
    int err = errno;
    psi_child_done(child);
    if (p > 0)
        return p;
    /* Nothing started (pspawn_x reaps a child that failed before main): the real call
     * decides. A dead proxy or changed credentials stop this zygote. */
    if (err == EPIPE || err == EPERM || err == ETIMEDOUT || err == ESTALE)
        psi_zygote_retire(z, err);
    psi_log("zygote spawn of %s failed: %s (errno %d)", exe, strerror(err), err);
    *why = "the zygote refused the spawn";
    return 0;
}

void psi_zygote_retire(struct psi_zygote *z, int err)
{
    pthread_mutex_lock(&lock);
    struct psi_zygote *stale = NULL;
    for (int i = 0; i < entry_count; i++)
        if (entries[i].zygote == z)
            stale = retire_locked(&entries[i]);
    pthread_mutex_unlock(&lock);
    psi_log("zygote for %s retired after a failed spawn (errno %d)", z->path, err);
    if (stale != NULL)
        destroy_zygote(stale);
}

void psi_contexts_forget(void)
{
    /* After fork: the proxies are the parent's children; never signal or wait for them. */
    pthread_mutex_init(&lock, NULL);
    entry_count = 0;
    psi_own_children_forget();
}

void psi_contexts_destroy(void)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < entry_count; i++) {
        struct psi_zygote *z = entries[i].zygote;
        entries[i].zygote = NULL;
        entries[i].state = ENTRY_FAILED;
        if (z != NULL)
            end_context(z); /* memory left to the exit */
    }
    pthread_mutex_unlock(&lock);
}
