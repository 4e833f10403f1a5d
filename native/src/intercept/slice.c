/* The forked child's scheduler slice. A child of the fork handoff (fork.c) is on the
 * launcher's critical path: fork() returns only once the child has reached exec and been
 * served. Under EEVDF (Linux 6.12+), a shorter requested slice (sched_attr.sched_runtime)
 * gives a task earlier virtual deadlines, so it is picked sooner; its CPU share (its
 * weight, from nice) does not change. The launcher sets the child's slice right after
 * the fork (shortening its own before the fork, for the child to inherit, measured
 * slower: the new child then preempts the launcher on its own vCPU). One sched_setattr
 * sets the nice value too, so a child changing its own scheduling first waits for the
 * launcher's note that it is done (psi_handoff_settle; waiting for it at the fork instead
 * lost the gain). The child goes back to the launcher's slice before
 * anything outlives it in its state: a real exec, a fork, vfork or posix_spawn; the
 * launcher does it for a child it did not serve that exec'd by a raw system call or
 * outlived the wait. Processes the child starts unseen (system(), popen(), a raw clone)
 * keep the short slice: a latency hint, not a share. Kernels before 6.12 report no slice
 * for fair tasks, and then nothing is changed. */
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "intercept/intercept.h"

#ifndef SCHED_BATCH
#define SCHED_BATCH 3
#endif

/* struct sched_attr as of Linux 3.14 (SCHED_ATTR_SIZE_VER0), the fields a fair task has. */
struct sched_attr_v0 {
    uint32_t size;
    uint32_t policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime;
    uint64_t deadline;
    uint64_t period;
};

/* In a forked child: the slice to go back to (ns); 0: nothing to undo. */
static uint64_t undo_to;

static int get_attr(pid_t pid, struct sched_attr_v0 *a)
{
    memset(a, 0, sizeof(*a));
    return syscall(SYS_sched_getattr, pid, a, sizeof(*a), 0) == 0 ? 0 : -1;
}

static int set_attr(pid_t pid, struct sched_attr_v0 *a)
{
    a->size = sizeof(*a);
    return syscall(SYS_sched_setattr, pid, a, 0) == 0 ? 0 : -1;
}

static uint64_t short_ns(void)
{
    return (uint64_t)psi_config.slice_us * 1000;
}

/* A fair task with no flags (no reset-on-fork, no clamps) whose slice is `ns`, or above
 * it if !exactly. */
static bool plain_fair(const struct sched_attr_v0 *a, uint64_t ns, bool exactly)
{
    return (a->policy == SCHED_OTHER || a->policy == SCHED_BATCH) && a->flags == 0 &&
           (exactly ? a->runtime == ns : a->runtime > ns);
}

bool psi_slice_applies(uint64_t *previous)
{
    if (psi_config.slice_us == 0)
        return false;
    int saved = errno;
    struct sched_attr_v0 a;
    bool applies = get_attr(0, &a) == 0 && plain_fair(&a, short_ns(), false);
    if (applies)
        *previous = a.runtime;
    errno = saved;
    return applies;
}

void psi_slice_shorten(pid_t child, uint64_t previous)
{
    int saved = errno;
    struct sched_attr_v0 a;
    if (get_attr(child, &a) == 0 && plain_fair(&a, short_ns(), false) && a.runtime == previous) {
        a.runtime = short_ns();
        set_attr(child, &a);
    }
    errno = saved;
}

void psi_slice_restore(pid_t pid, uint64_t previous)
{
    int saved = errno;
    struct sched_attr_v0 a;
    /* Not if it is no longer ours: the exec'd program set its own, or nice changed the policy. */
    if (get_attr(pid, &a) == 0 && plain_fair(&a, short_ns(), true)) {
        /* The default slice first (it follows the kernel's setting, as before); the
         * previous value explicitly only if it was another. */
        a.runtime = 0;
        if (set_attr(pid, &a) == 0 && get_attr(pid, &a) == 0 && plain_fair(&a, 0, false) &&
            a.runtime != previous) {
            a.runtime = previous;
            set_attr(pid, &a);
        }
    }
    errno = saved;
}

void psi_slice_inherit(uint64_t previous)
{
    undo_to = previous;
}

void psi_slice_undo(void)
{
    psi_handoff_settle(); /* the launcher's set must not land after the undo */
    if (undo_to == 0)
        return;
    uint64_t previous = undo_to;
    undo_to = 0;
    psi_slice_restore(0, previous);
}

uint64_t psi_slice_current(void)
{
    int saved = errno;
    struct sched_attr_v0 a;
    uint64_t ns = get_attr(0, &a) == 0 ? a.runtime : 0;
    if (undo_to != 0 && plain_fair(&a, short_ns(), true))
        ns = undo_to;
    errno = saved;
    return ns;
}

/* A forked child changing its own scheduling waits until the launcher has set its slice
 * (which sets the nice value too). */
__attribute__((visibility("default"))) int setpriority(__priority_which_t which, id_t who, int prio)
{
    if (psi_real.setpriority == NULL)
        psi_real_load();
    psi_handoff_settle();
    return psi_real.setpriority(which, who, prio);
}

__attribute__((visibility("default"))) int nice(int inc)
{
    if (psi_real.nice == NULL)
        psi_real_load();
    psi_handoff_settle();
    return psi_real.nice(inc);
}

__attribute__((visibility("default"))) int sched_setscheduler(pid_t pid, int policy, const struct sched_param *param)
{
    if (psi_real.sched_setscheduler == NULL)
        psi_real_load();
    psi_handoff_settle();
    return psi_real.sched_setscheduler(pid, policy, param);
}

__attribute__((visibility("default"))) int sched_setparam(pid_t pid, const struct sched_param *param)
{
    if (psi_real.sched_setparam == NULL)
        psi_real_load();
    psi_handoff_settle();
    return psi_real.sched_setparam(pid, param);
}
