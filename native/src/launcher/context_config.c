/* Context attributes: defaults, validation, and the proxy config a context derives from them. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/internal.h"

int pspawn_context_attr_init(pspawn_context_attr_t *attr)
{
    if (attr == NULL) {
        errno = EINVAL;
        return -1;
    }
    memset(attr, 0, sizeof(*attr));
    attr->size = sizeof(*attr);
    attr->core = -1;
    attr->startup_timeout_ms = PSP_DEFAULT_STARTUP_TIMEOUT_MS;
    attr->request_timeout_ms = PSP_DEFAULT_REQUEST_TIMEOUT_MS;
    attr->buffer_size = PSP_DEFAULT_BUFFER_SIZE;
    attr->max_restarts = PSP_DEFAULT_MAX_RESTARTS;
    return 0;
}

/* Children of a CLONE_PARENT fork are ours; when this process reaps every child
 * (pid 1, as a .NET runtime does, or SIGCHLD ignored: the kernel auto-reaps) their exit
 * status would be lost, so the proxy must stay the parent and relay it. */
static bool must_relay(void)
{
    if (getpid() == 1)
        return true;
    struct sigaction sa;
    if (sigaction(SIGCHLD, NULL, &sa) != 0)
        return false;
    return sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_NOCLDWAIT);
}

static bool core_allowed(int core)
{
    if (core == -1)
        return true;
    if (core < 0 || core >= CPU_SETSIZE)
        return false;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return false;
    return CPU_ISSET((size_t)core, &set);
}

/* The checks create makes of its attributes (a size from an older header already
 * brought up to this one's). */
bool psp_context_attr_valid(const pspawn_context_attr_t *attr)
{
    return !(attr->size < sizeof(*attr) ||
             attr->numa < PSPAWN_NUMA_AUTO || attr->numa > PSPAWN_NUMA_ON || attr->numa_memory < PSPAWN_NUMA_MEM_BIND ||
             attr->numa_memory > PSPAWN_NUMA_MEM_NONE || attr->numa_spread < PSPAWN_SPREAD_ROUND_ROBIN ||
             attr->numa_spread > PSPAWN_SPREAD_FILL ||
             !core_allowed(attr->core) || (attr->buffer_size != 0 && attr->buffer_size < PSP_MIN_BUFFER_SIZE) ||
             attr->max_restarts < -1 || attr->proxies < 0 || attr->proxies > PSP_MAX_PROXIES ||
             attr->pool < 0 || attr->pool > (int)PSP_POOL_MAX || attr->pool_idle_ms < 0 ||
             (attr->core >= 0 && attr->proxies > 1) ||
             attr->kernel < PSPAWN_KERNEL_AUTO || attr->kernel > PSPAWN_KERNEL_FORBID ||
             (attr->kernel == PSPAWN_KERNEL_REQUIRE && (attr->flags & PSPAWN_CTX_RELAY)) ||
             (attr->flags & ~(PSPAWN_CTX_FALLBACK | PSPAWN_CTX_RELAY | PSPAWN_CTX_NO_BIND_NOW | PSPAWN_CTX_PREFAULT |
                              PSPAWN_CTX_EXEC | PSPAWN_CTX_DEFERRED | PSPAWN_CTX_NUMA_REPLICAS |
                              PSPAWN_CTX_FDS_ABOVE_LIMIT | PSPAWN_CTX_WATCH_IMAGE | PSPAWN_CTX_MERGE_TEXT)) != 0 ||
             ((attr->flags & PSPAWN_CTX_EXEC) && (attr->flags & PSPAWN_CTX_RELAY)));
}

static char **copy_envp(char *const *envp, int *err)
{
    if (envp == NULL)
        return NULL;
    size_t n = 0;
    while (envp[n] != NULL)
        n++;
    char **copy = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; copy != NULL && i < n; i++) {
        if ((copy[i] = strdup(envp[i])) == NULL) {
            while (i > 0)
                free(copy[--i]);
            free(copy);
            copy = NULL;
        }
    }
    if (copy == NULL)
        *err = ENOMEM;
    return copy;
}

/* What the channel keeps to start its proxy again after a death. */
int psp_make_proxy_config(const struct pspawn_impl *impl, const pspawn_context_attr_t *attr,
                          struct psp_proxy_config *out)
{
    memset(out, 0, sizeof(*out));
    int err = psp_find_proxy_library(attr, &out->proxy_library);
    if (err != 0)
        return err;
    out->path = strdup(impl->path);
    out->proxy_envp = copy_envp(attr->proxy_envp, &err);
    if (out->path == NULL)
        err = ENOMEM;
    if (err != 0) {
        psp_proxy_config_free(out);
        return err;
    }
    out->flags = attr->flags;
    out->core = attr->core;
    out->startup_timeout_ms = attr->startup_timeout_ms;
    out->request_timeout_ms = attr->request_timeout_ms;
    out->buffer_size = attr->buffer_size;
    out->max_restarts = attr->max_restarts;
    out->relay = (attr->flags & PSPAWN_CTX_RELAY) || must_relay();
    out->pool = out->relay ? 0 : attr->pool;
    out->pool_idle_ms = attr->pool_idle_ms;
    out->node = -1;
    out->mempolicy = -1;
    out->domain_index = -1;
    return 0;
}
