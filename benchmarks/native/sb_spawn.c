/* spawnbench: how each method starts its instances and reaps them. */
#include "spawnbench.h"

extern char **environ;

pid_t spawn_fork(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        execve(opt.target, opt.argv, bench_env);
        _exit(127);
    }
    return pid;
}

static pid_t spawn_vfork(void)
{
    pid_t pid = vfork();
    if (pid == 0) {
        execve(opt.target, opt.argv, bench_env);
        _exit(127);
    }
    return pid;
}

static pid_t spawn_posix(void)
{
    pid_t pid;
    int err = posix_spawn(&pid, opt.target, NULL, NULL, opt.argv, bench_env);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return pid;
}

/* Reap one child; counts a failure unless it exited with status 0. */
void reap(struct bench_method *bm, pid_t pid)
{
    if (pid <= 0) {
        failures++;
        return;
    }
    int status = 0;
    pid_t r = bm->nctx > 0 ? pspawn_waitpid(&bm->ctx[0], pid, &status, 0) : waitpid(pid, &status, 0);
    /* In relay mode a child of the second proxy is known only to its own context. */
    for (int i = 1; r < 0 && errno == ECHILD && i < bm->nctx; i++)
        r = pspawn_waitpid(&bm->ctx[i], pid, &status, 0);
    while (r < 0 && errno == EINTR)
        r = waitpid(pid, &status, 0);
    if (r != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (failures == 0)
            fprintf(stderr, "spawnbench: %s: child %d: %s\n", method_names[bm->id], (int)pid,
                    r != pid ? strerror(errno) : "did not exit with status 0");
        failures++;
    }
}

struct half_request {
    pspawn_context_t *ctx;
    pid_t *pids;
    int count;
};

static void *spawn_half(void *arg)
{
    struct half_request *h = arg;
    pspawn_ne(h->pids, NULL, h->ctx, h->count, opt.argv, bench_env);
    return NULL;
}

/* pspawn_vector's instances: the target argv, and the bench environment plus RANK=i
 * (a distinct environment per instance). Built once. */
static pspawn_instance_t *vector_instances(int count)
{
    static pspawn_instance_t *instances;
    static int built;
    if (built >= count)
        return instances;
    size_t nenv = 0;
    while (bench_env[nenv] != NULL)
        nenv++;
    instances = realloc(instances, (size_t)count * sizeof(*instances));
    if (instances == NULL)
        die("realloc");
    for (int i = built; i < count; i++) {
        char **env = xcalloc(nenv + 2, sizeof(char *));
        memcpy(env, bench_env, nenv * sizeof(char *));
        char rank[32];
        snprintf(rank, sizeof(rank), "RANK=%d", i);
        env[nenv] = xstrdup(rank);
        instances[i] = (pspawn_instance_t){.argv = opt.argv, .envp = env};
    }
    built = count;
    return instances;
}

/* Spawn `count` instances with method `bm` into pids[] (reaping as the method says). */
void spawn_batch(struct bench_method *bm, pid_t *pids, int count)
{
    switch (bm->id) {
    case M_SFORK:
        for (int i = 0; i < count; i++) {
            pids[i] = spawn_fork();
            reap(bm, pids[i]);
            pids[i] = 0; /* already reaped */
        }
        break;
    case M_AFORK:
        for (int i = 0; i < count; i++)
            pids[i] = spawn_fork();
        break;
    case M_VFORK:
        for (int i = 0; i < count; i++)
            pids[i] = spawn_vfork();
        break;
    case M_POSIX_SPAWN:
        for (int i = 0; i < count; i++)
            pids[i] = spawn_posix();
        break;
    case M_PSPAWN:
    case M_PSPAWN_POOL:
    case M_PSPAWN_DEFERRED:
        for (int i = 0; i < count; i++)
            pids[i] = pspawn_e(&bm->ctx[0], opt.argv, bench_env);
        break;
    case M_PSPAWN_N:
    case M_PSPAWN_N_K1:
    case M_PSPAWN_N_EXEC:
    case M_PSPAWN_N_LAZY:
    case M_PSPAWN_N_PREFAULT:
    case M_PSPAWN_N_POOL:
        if (count > 0)
            pspawn_ne(pids, NULL, &bm->ctx[0], count, opt.argv, bench_env);
        break;
    case M_PSPAWN_N_NUMA_OFF:
    case M_PSPAWN_N_REPLICAS:
        if (count > 0)
            pspawn_ne(pids, NULL, &bm->ctx[0], count, opt.argv, bench_env);
        break;
    case M_PSPAWN_N_ATTR:
    case M_PSPAWN_N_CGROUP:
        if (count > 0)
            pspawn_nx(pids, NULL, NULL, &bm->ctx[0], count, opt.argv, bench_env,
                      bm->id == M_PSPAWN_N_CGROUP ? bench_cgroup_attr : bench_empty_attr);
        break;
    case M_PSPAWN_VECTOR:
    case M_PSPAWN_VECTOR_K1:
        if (count > 0)
            pspawn_vector(pids, NULL, &bm->ctx[0], vector_instances(count), count, NULL);
        break;
    case M_PSPAWN_VECTOR_ASYNC:
        if (count > 0) {
            pspawn_session_t *session;
            if (pspawn_vector_async(&session, &bm->ctx[0], vector_instances(count), count, NULL) != 0)
                die("pspawn_vector_async");
            pspawn_session_wait(session, -1);
            pspawn_session_results(session, pids, NULL);
            pspawn_session_free(session);
        }
        break;
    case M_PSPAWN_N_2P: {
        int first = count / 2 + count % 2;
        struct half_request a = {&bm->ctx[0], pids, first};
        struct half_request b = {&bm->ctx[1], pids + first, count - first};
        pthread_t thread;
        bool threaded = b.count > 0 && pthread_create(&thread, NULL, spawn_half, &b) == 0;
        spawn_half(&a);
        if (threaded)
            pthread_join(thread, NULL);
        else if (b.count > 0)
            spawn_half(&b);
        break;
    }
    case M_COUNT:
        break;
    }
}

void reap_batch(struct bench_method *bm, pid_t *pids, int count)
{
    for (int i = 0; i < count; i++)
        if (pids[i] != 0)
            reap(bm, pids[i]);
}
