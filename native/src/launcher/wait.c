/* Waiting for children: waitpid, or the proxy's exit-status table in relay mode. */
#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "launcher/internal.h"

static struct psp_relay_slot *find_slot(struct psp_shared *sh, pid_t pid)
{
    struct psp_relay_slot *table = psp_relay_table(sh);
    for (uint32_t i = 0; i < sh->relay_capacity; i++) {
        int32_t state = atomic_load(&table[i].state);
        if ((state == PSP_RELAY_RUNNING || state == PSP_RELAY_EXITED) && atomic_load(&table[i].pid) == pid)
            return &table[i];
    }
    return NULL;
}

static void futex_wait_ms(_Atomic uint32_t *word, uint32_t expected, int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, NULL, 0);
}

static pid_t relay_wait(struct pspawn_impl *impl, pid_t pid, int *wstatus, int options)
{
    /* The proxy that forked it: the one whose table has it (the first, if none does:
     * then the answer is ECHILD either way). */
    struct psp_channel *ch = &impl->channels[0];
    for (int k = 0; k < impl->channel_count; k++) {
        struct psp_shared *sh = __atomic_load_n(&impl->channels[k].shared, __ATOMIC_ACQUIRE);
        if (sh != NULL && find_slot(sh, pid) != NULL) {
            ch = &impl->channels[k];
            break;
        }
    }
    for (;;) {
        /* A restart replaces the segment (the old one stays mapped until destroy); the
         * new proxy knows nothing of the old one's children. */
        struct psp_shared *sh = __atomic_load_n(&ch->shared, __ATOMIC_ACQUIRE);
        if (sh == NULL) {
            errno = ECHILD;
            return -1;
        }
        uint32_t generation = atomic_load(&sh->relay_generation);
        struct psp_relay_slot *slot = find_slot(sh, pid);
        if (slot == NULL) {
            errno = ECHILD;
            return -1;
        }
        if (atomic_load(&slot->state) == PSP_RELAY_EXITED) {
            if (wstatus != NULL)
                *wstatus = atomic_load(&slot->wstatus);
            atomic_store(&slot->state, PSP_RELAY_CONSUMED);
            psp_channel_ring(ch); /* let the proxy reap the zombie now */
            return pid;
        }
        if (options & WNOHANG)
            return 0;
        if (ch->broken) {
            /* The proxy is gone: its children were re-parented; the status is lost. */
            errno = ECHILD;
            return -1;
        }
        futex_wait_ms(&sh->relay_generation, generation, 200);
    }
}

pid_t pspawn_waitpid(pspawn_context_t *ctx, pid_t pid, int *wstatus, int options)
{
    if (ctx == NULL || ctx->impl == NULL || pid <= 0 || (options & ~WNOHANG) != 0) {
        errno = EINVAL;
        return -1;
    }
    if (ctx->impl->mode == PSPAWN_MODE_RELAY)
        return relay_wait(ctx->impl, pid, wstatus, options);
    pid_t r;
    while ((r = waitpid(pid, wstatus, options)) < 0 && errno == EINTR) {
    }
    return r;
}
