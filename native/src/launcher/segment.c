/* The shared segment: created, sealed, mapped and handed to the proxy over the socket,
 * with no descriptor of it left in any process afterwards. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "launcher/internal.h"

/* While we hold a descriptor of a fresh segment, processes of our user could reopen it
 * through /proc/<us>/fd. For those few system calls we are not dumpable, which makes
 * our /proc files root's. Nested and concurrent creations share one window. */
static pthread_mutex_t g_window_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_window_depth;
static bool g_window_restore;

static void private_window_enter(void)
{
    pthread_mutex_lock(&g_window_lock);
    if (g_window_depth++ == 0) {
        g_window_restore = prctl(PR_GET_DUMPABLE) == 1;
        if (g_window_restore)
            prctl(PR_SET_DUMPABLE, 0);
    }
    pthread_mutex_unlock(&g_window_lock);
}

static void private_window_leave(void)
{
    pthread_mutex_lock(&g_window_lock);
    if (--g_window_depth == 0 && g_window_restore)
        prctl(PR_SET_DUMPABLE, 1);
    pthread_mutex_unlock(&g_window_lock);
}

static void init_segment(struct psp_shared *sh, size_t size, const struct psp_proxy_config *cfg)
{
    bool relay = cfg->relay;
    sh->magic = PSP_MAGIC;
    sh->version = PSP_PROTOCOL_VERSION;
    sh->size = size;
    sh->launcher_pid = getpid();
    sh->relay = relay;
    sh->slot_count = PSP_RING_SLOTS;
    sh->relay_offset = (sizeof(*sh) + 63) & ~(uint64_t)63;
    sh->relay_capacity = relay ? PSP_RELAY_CAPACITY : 0;
    sh->data_offset = sh->relay_offset + (uint64_t)sh->relay_capacity * sizeof(struct psp_relay_slot);
    psp_pool_layout(sh, cfg, &sh->data_offset);
    sh->data_offset = (sh->data_offset + 63) & ~(uint64_t)63;
    atomic_store(&sh->state, PSP_STATE_STARTING);
    if (cfg->mempolicy >= 0 && cfg->node >= 0)
        sh->child_flags |= PSP_CHILD_RESET_MEMPOLICY;
    if (cfg->reset_children) {
        _Static_assert(sizeof(sh->child_cpus) == sizeof(cpu_set_t), "a cpu_set_t in the header");
        memcpy(sh->child_cpus, &cfg->child_cpus, sizeof(sh->child_cpus));
        sh->child_cpus_set = 1;
    }
}

/* Creates, seals and maps the segment, and queues it on the socket for the proxy (its
 * first message); no descriptor of it remains with us. */
int psp_create_segment(struct psp_channel *ch, size_t size)
{
    private_window_enter();
    int err = 0;
    int fd = memfd_create("pspawn", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    void *map = MAP_FAILED;
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0 ||
        /* A fixed size: neither side can make the other's accesses fault with SIGBUS. */
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0 ||
        (map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED)
        err = errno;
    if (err == 0) {
        init_segment(map, size, &ch->config);
        err = psp_send_fds(ch->socket_fd, &fd, 1);
    }
    /* The second message: the reply eventfd of each ring slot. */
    if (err == 0)
        err = psp_send_fds(ch->socket_fd, ch->slot_fds, PSP_RING_SLOTS);
    /* The third, with a warm pool: the claim eventfd of each pool slot. */
    if (err == 0)
        err = psp_pool_send_fds(ch, map);
    if (fd >= 0)
        close(fd);
    private_window_leave();
    if (err != 0) {
        if (map != MAP_FAILED)
            munmap(map, size);
        return err;
    }
    ch->size = size;
    __atomic_store_n(&ch->shared, (struct psp_shared *)map, __ATOMIC_RELEASE);
    return 0;
}
