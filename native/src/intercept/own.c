/* The zygotes' own processes and descriptors. A zygote's proxy and parked children are
 * children of the launcher that its waits for any child must not see (wait.c); its
 * descriptors (socket, eventfds, pidfd) live in the launcher's table, which the launcher
 * does not know about: when it closes one of their numbers (close, close_range,
 * closefrom) or puts its own file there (dup2, dup3), the zygote must never touch that
 * number again, so the context is marked lost here and abandoned by contexts.c, not
 * destroyed (which would close whatever the launcher has opened there since).
 *
 * Async-signal-safe (close and waitpid are; launchers call them in signal handlers):
 * atomics, no lock, no allocation. Only the process that registered the contexts acts: a
 * vfork child shares this memory but not the descriptor table, and a fork child forgets
 * them. */
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "intercept/intercept.h"
#include "launcher/internal.h"

#define OWN_MAX 128
/* Descriptors of one context looked at (an interceptor context has one proxy: ~12). */
#define OWN_FDS_MAX 256

static _Atomic(const pspawn_context_t *) own[OWN_MAX];
static _Atomic bool lost[OWN_MAX];
static _Atomic int own_count;
static _Atomic pid_t own_pid; /* the process whose contexts these are */

int psi_own_context_add(const pspawn_context_t *ctx)
{
    atomic_store(&own_pid, (pid_t)syscall(SYS_getpid));
    for (int k = 0; k < OWN_MAX; k++) {
        const pspawn_context_t *none = NULL;
        if (atomic_compare_exchange_strong(&own[k], &none, ctx)) { /* lost[k] is false: see remove */
            atomic_fetch_add(&own_count, 1);
            return k;
        }
    }
    return -1; /* more zygotes than slots: their processes stay visible */
}

/* Whether it was lost is read once the slot is empty (no close can mark it then), and the
 * flag cleared for the next context registered there. */
bool psi_own_context_remove(int slot)
{
    if (slot < 0 || slot >= OWN_MAX || atomic_exchange(&own[slot], NULL) == NULL)
        return false;
    bool was_lost = atomic_exchange(&lost[slot], false);
    atomic_fetch_sub(&own_count, 1);
    return was_lost;
}

void psi_own_children_forget(void)
{
    for (int k = 0; k < OWN_MAX; k++) {
        atomic_store(&own[k], NULL);
        atomic_store(&lost[k], false);
    }
    atomic_store(&own_count, 0);
}

bool psi_own_any(void)
{
    return atomic_load_explicit(&own_count, memory_order_relaxed) > 0;
}

bool psi_own_process(pid_t pid)
{
    for (int k = 0; k < OWN_MAX; k++) {
        const pspawn_context_t *ctx = atomic_load_explicit(&own[k], memory_order_acquire);
        if (ctx != NULL && pspawn_context_owns(ctx, pid))
            return true;
    }
    return false;
}

/* Zygotes are registered, and this is the process that registered them (not a vfork child,
 * which shares this memory, nor a fork child, which forgot them). */
static bool acting_here(void)
{
    return psi_own_any() && atomic_load(&own_pid) == (pid_t)syscall(SYS_getpid);
}

void psi_own_fds_taken(unsigned first, unsigned last)
{
    if (!acting_here())
        return;
    for (int k = 0; k < OWN_MAX; k++) {
        const pspawn_context_t *ctx = atomic_load_explicit(&own[k], memory_order_acquire);
        if (ctx == NULL || atomic_load(&lost[k]))
            continue;
        int fds[OWN_FDS_MAX];
        int n = pspawn_context_fds(ctx, fds, OWN_FDS_MAX);
        bool hit = n > OWN_FDS_MAX; /* more than we looked at: assume the worst */
        for (int i = 0; i < n && i < OWN_FDS_MAX && !hit; i++)
            hit = (unsigned)fds[i] >= first && (unsigned)fds[i] <= last;
        if (hit)
            atomic_store(&lost[k], true);
    }
}

bool psi_own_context_lost(int slot)
{
    return slot >= 0 && slot < OWN_MAX && atomic_load(&lost[slot]);
}

bool psi_own_end_before_exec(void)
{
    if (!acting_here())
        return false;
    bool ended = false;
    for (int k = 0; k < OWN_MAX; k++) {
        const pspawn_context_t *ctx = atomic_load_explicit(&own[k], memory_order_acquire);
        if (ctx != NULL) {
            psp_context_end_before_exec(ctx);
            ended = true;
        }
    }
    return ended;
}
