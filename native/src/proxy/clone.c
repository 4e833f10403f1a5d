/* Child cloning: cgroup placement (probe, clone3 or move) and the child becoming its instance. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/sched.h>

#include "proxy/proxy.h"

/* Whether this kernel creates children in a cgroup: clone3 with CLONE_INTO_CGROUP and a
 * descriptor number that is not open fails with EBADF where it is supported (before any
 * process exists); ENOSYS (no clone3, or a seccomp filter), EINVAL or E2BIG (a kernel
 * before 5.7: unknown flag, larger struct) mean it is not. */
int psp_probe_cgroup_placement(void)
{
    struct clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = (uint64_t)INT32_MAX;
    long r = syscall(SYS_clone3, &args, sizeof(args));
    if (r == 0)
        _exit(127); /* cannot happen (no such descriptor); never run our code twice */
    if (r > 0) {
        (void)waitpid((pid_t)r, NULL, 0);
        return PSP_CGROUP_CLONE3;
    }
    return errno == ENOSYS || errno == EINVAL || errno == E2BIG ? PSP_CGROUP_MOVE : PSP_CGROUP_CLONE3;
}

/* The fallback's move, in the child before anything else: "0" is the writer itself. */
void psp_move_into_cgroup(int cgroup_fd, uint32_t instance, int error_fd)
{
    int fd = openat(cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) {
        ssize_t w;
        while ((w = write(fd, "0", 1)) < 0 && errno == EINTR) {
        }
        err = w == 1 ? 0 : (w < 0 ? errno : EIO);
        close(fd);
    }
    if (err == 0)
        return;
    int32_t record[2] = {(int32_t)instance, err};
    while (write(error_fd, record, sizeof(record)) < 0 && errno == EINTR) {
    }
    _exit(127);
}

/* In zygote mode the child becomes a sibling of the proxy: a child of the launcher,
 * with the proxy's exit signal (SIGCHLD, as posix_spawn started us). The kernel writes
 * the new pid into the shared results slot before clone returns (CLONE_PARENT_SETTID),
 * so a proxy killed right after a fork cannot hide a child from the launcher. */
pid_t psp_clone_child(struct psp_proxy *p, _Atomic int32_t *result_slot, int cgroup_fd)
{
    if (cgroup_fd >= 0 && p->cgroup_placement == PSP_CGROUP_CLONE3) {
        /* Born in the cgroup (no migration, no threadgroup lock; its limits apply to
         * this very fork). clone3 with CLONE_PARENT needs exit_signal 0: the child then
         * gets our own exit signal, SIGCHLD, as with clone above. */
        struct clone_args args;
        memset(&args, 0, sizeof(args));
        args.flags = CLONE_INTO_CGROUP | CLONE_PARENT_SETTID | (p->relay ? 0 : CLONE_PARENT) |
                     (p->tid_field != NULL ? CLONE_CHILD_SETTID : 0);
        args.exit_signal = p->relay ? SIGCHLD : 0;
        args.parent_tid = (uint64_t)(uintptr_t)result_slot;
        args.child_tid = (uint64_t)(uintptr_t)p->tid_field;
        args.cgroup = (uint64_t)cgroup_fd;
        return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    }
    unsigned long flags = (p->relay ? (unsigned long)SIGCHLD : (unsigned long)CLONE_PARENT) | CLONE_PARENT_SETTID;
    if (p->tid_field != NULL)
        flags |= CLONE_CHILD_SETTID;
    return (pid_t)syscall(SYS_clone, flags, NULL, (void *)result_slot, p->tid_field, NULL);
}

/* In the child, before the common set-up: become instance `i` of the request (its
 * argv/envp, its CPU set). Async-signal-safe: pointer assignments and at most one system
 * call. A CPU set the kernel refuses fails this instance alone, reported like any
 * failure before main. A child without a CPU set of a pinned proxy (one of several)
 * leaves the proxy's share of the CPUs for the launcher's whole mask (best effort: a
 * refusal leaves it where the proxy runs). */
void psp_become_instance(const struct psp_proxy *p, struct psp_decoded *req, uint32_t i, int error_fd)
{
    /* A node-bound proxy's memory policy is not the child's, unless it asks for it: one
     * system call, only in node-bound contexts (best effort, like the CPU reset). */
    if (p->reset_mempolicy && (req->options == NULL || !(req->options->set & PSP_OPT_NUMA_LOCAL)))
        (void)syscall(SYS_set_mempolicy, 0 /* MPOL_DEFAULT */, NULL, 0UL);
    const struct psp_wire_instance *in = req->instances != NULL ? &req->instances[i] : NULL;
    if (in == NULL || in->cpuset < 0) {
        if (p->reset_cpus)
            (void)sched_setaffinity(0, sizeof(p->child_cpus), &p->child_cpus);
        if (in == NULL)
            return;
    }
    const struct psp_decoded_set *set = &req->sets[in->set];
    req->argv = set->argv;
    req->envp = set->envp;
    req->argc = set->argc;
    req->envc = set->envc;
    if (in->cpuset >= 0 &&
        sched_setaffinity(0, req->cpuset_size, (const cpu_set_t *)(req->cpusets + (size_t)in->cpuset * req->cpuset_size)) != 0) {
        int32_t record[2] = {(int32_t)i, errno};
        while (write(error_fd, record, sizeof(record)) < 0 && errno == EINTR) {
        }
        _exit(127);
    }
}
