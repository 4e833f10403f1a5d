/* Relay mode: the proxy stays the parent of its children, records each exit status in
 * the shared table before reaping, and reaps only once the launcher has read it (so
 * the pid cannot be reused while the launcher may still refer to it). */
#include <errno.h>
#include <linux/futex.h>
#include <limits.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proxy/proxy.h"

struct psp_relay_slot *psp_relay_reserve(struct psp_proxy *p)
{
    struct psp_relay_slot *table = psp_relay_table(p->shared);
    for (uint32_t i = 0; i < p->shared->relay_capacity; i++) {
        if (atomic_load(&table[i].state) == PSP_RELAY_FREE) {
            atomic_store(&table[i].pid, 0);
            return &table[i];
        }
    }
    return NULL;
}

void psp_relay_commit(struct psp_relay_slot *slot, pid_t pid)
{
    atomic_store(&slot->pid, pid);
    atomic_store(&slot->state, PSP_RELAY_RUNNING);
}

static int encode_status(const siginfo_t *info)
{
    switch (info->si_code) {
    case CLD_EXITED:
        return (info->si_status & 0xff) << 8;
    case CLD_DUMPED:
        return (info->si_status & 0x7f) | 0x80;
    default:
        return info->si_status & 0x7f;
    }
}

void psp_relay_collect(struct psp_proxy *p)
{
    struct psp_relay_slot *table = psp_relay_table(p->shared);
    bool recorded = false;
    for (uint32_t i = 0; i < p->shared->relay_capacity; i++) {
        int32_t state = atomic_load(&table[i].state);
        pid_t pid = atomic_load(&table[i].pid);
        if (state == PSP_RELAY_RUNNING) {
            siginfo_t info = {0};
            if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) {
                atomic_store(&table[i].wstatus, encode_status(&info));
                atomic_store(&table[i].state, PSP_RELAY_EXITED);
                recorded = true;
            }
        } else if (state == PSP_RELAY_CONSUMED) {
            if (waitpid(pid, NULL, WNOHANG) == pid || errno == ECHILD)
                atomic_store(&table[i].state, PSP_RELAY_FREE);
        }
    }
    if (recorded) {
        atomic_fetch_add(&p->shared->relay_generation, 1);
        syscall(SYS_futex, &p->shared->relay_generation, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    }
}

void psp_relay_release_failed(struct psp_proxy *p, _Atomic int32_t *results, _Atomic int32_t *errors,
                              uint32_t count)
{
    struct psp_relay_slot *table = psp_relay_table(p->shared);
    for (uint32_t i = 0; i < count; i++) {
        pid_t pid = atomic_load_explicit(&results[i], memory_order_relaxed);
        if (pid <= 0 || atomic_load_explicit(&errors[i], memory_order_relaxed) == 0)
            continue;
        for (uint32_t k = 0; k < p->shared->relay_capacity; k++) {
            if (atomic_load(&table[k].pid) == pid && atomic_load(&table[k].state) != PSP_RELAY_FREE) {
                atomic_store(&table[k].state, PSP_RELAY_CONSUMED);
                break;
            }
        }
    }
    psp_relay_collect(p);
}
