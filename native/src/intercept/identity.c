/* The parts of a process that survive exec and that a zygote child cannot be given:
 * credentials, capabilities, security and death-signal settings, namespaces, cgroup,
 * memory policy, I/O priority. A forked child that changed any of them before exec is
 * exec'd for real (fork.c). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "intercept/intercept.h"

static const char *const namespaces[PSI_NAMESPACES] = {
    "cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "time_for_children", "user", "uts",
};

/* PIDFD_GET_<namespace>_NAMESPACE (Linux 6.11, <linux/pidfd.h>): ioctl(pidfd, _IO(0xFF, k))
 * opens the k-th namespace of namespaces[] (k from 1, in this order). Much cheaper than
 * /proc/self/ns/, whose entries a new process instantiates one by one (and its parent's
 * waitpid tears down again): the fork handoff reads these in every forked child. */
#define PIDFS_IOCTL_MAGIC 0xFF

static uint64_t inode_of(int fd)
{
    struct stat st;
    uint64_t ino = fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
    close(fd);
    return ino;
}

/* pidfd_open's PIDFD_THREAD (Linux 6.9): a pidfd of this thread, not of the process. */
#define PSI_PIDFD_THREAD O_EXCL

/* The calling thread's namespaces (they are per thread: unshare() and setns() move only
 * the caller, and posix_spawn's child gets the spawning thread's). False if this kernel
 * cannot say so through a pidfd (id->ns untouched then). */
static bool namespaces_by_pidfd(struct psi_identity *id)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int pidfd = (int)syscall(SYS_pidfd_open, tid, PSI_PIDFD_THREAD);
    if (pidfd < 0 && errno == EINVAL && tid == getpid())
        pidfd = (int)syscall(SYS_pidfd_open, tid, 0); /* before 6.9: the leader's are its own */
    if (pidfd < 0)
        return false;
    bool supported = true;
    for (int i = 0; i < PSI_NAMESPACES && supported; i++) {
        int fd = ioctl(pidfd, _IO(PIDFS_IOCTL_MAGIC, i + 1), 0);
        if (fd >= 0)
            id->ns[i] = inode_of(fd);
        else
            supported = errno != ENOTTY && errno != EINVAL; /* else: this namespace is not built in */
    }
    close(pidfd);
    return supported;
}

static void namespaces_by_proc(struct psi_identity *id)
{
    for (int i = 0; i < PSI_NAMESPACES; i++) {
        char path[64];
        struct stat st;
        snprintf(path, sizeof(path), "/proc/thread-self/ns/%s", namespaces[i]);
        id->ns[i] = stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
    }
}

/* FNV-1a of a small /proc file (0 if unreadable). */
static uint64_t hash_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    uint64_t h = 1469598103934665603ull;
    char buf[1024];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ (unsigned char)buf[i]) * 1099511628211ull;
    close(fd);
    return h;
}

/* How many seccomp filters are stacked on us: a filter added on top of one (mode 2 already)
 * leaves the mode as it was. -1 where the kernel does not say (before 5.9, or a status file
 * too long to find the line in). */
static int seccomp_filters(void)
{
    char status[8192];
    if (psi_read_text("/proc/thread-self/status", status, sizeof(status)) <= 0)
        return -1;
    const char *at = strstr(status, "\nSeccomp_filters:");
    return at != NULL ? atoi(at + sizeof("\nSeccomp_filters:") - 1) : -1;
}

static void take_all_but_namespaces(struct psi_identity *id);

/* Bumped by every unshare() and setns() of the process: the only calls that change its
 * own namespaces (clone's CLONE_NEW* make the child's). The launcher's namespaces are read
 * again (~50 µs for the ten) only when it moved since they were last read. */
static _Atomic unsigned ns_epoch;

unsigned psi_namespace_epoch(void)
{
    return atomic_load(&ns_epoch);
}

__attribute__((visibility("default"))) int unshare(int flags)
{
    if (psi_real.unshare == NULL)
        psi_real_load();
    int rc = psi_real.unshare(flags);
    atomic_fetch_add(&ns_epoch, 1);
    return rc;
}

__attribute__((visibility("default"))) int setns(int fd, int nstype)
{
    if (psi_real.setns == NULL)
        psi_real_load();
    int rc = psi_real.setns(fd, nstype);
    atomic_fetch_add(&ns_epoch, 1);
    return rc;
}

/* syscall(): libc's, but syscall(SYS_unshare) and syscall(SYS_setns) also move the epoch,
 * so that a forked child that changes its namespaces that way before exec is seen (fork.c
 * trusts the epoch instead of reading them again). A stub in assembly that jumps to libc's
 * without a frame of its own: syscall(SYS_clone, CLONE_VM | CLONE_VFORK, ...) returns
 * twice on the same stack, as vfork does. Only these, and the four that change a
 * process's scheduling (a forked child waits for the launcher's slice first: slice.c),
 * take a C frame. */
#if PSI_SEES_NAMESPACE_SYSCALLS
#define PSI_STRING(x) #x
#define PSI_NUMBER(x) PSI_STRING(x)
__asm__(".text\n"
        ".globl syscall\n"
        ".type syscall, @function\n"
        "syscall:\n"
        "    endbr64\n"
        "    cmp $" PSI_NUMBER(__NR_unshare) ", %rdi\n"
        "    je psi_syscall_counted\n"
        "    cmp $" PSI_NUMBER(__NR_setns) ", %rdi\n"
        "    je psi_syscall_counted\n"
        "    cmp $" PSI_NUMBER(__NR_setpriority) ", %rdi\n"
        "    je psi_syscall_counted\n"
        "    cmp $" PSI_NUMBER(__NR_sched_setattr) ", %rdi\n"
        "    je psi_syscall_counted\n"
        "    cmp $" PSI_NUMBER(__NR_sched_setscheduler) ", %rdi\n"
        "    je psi_syscall_counted\n"
        "    cmp $" PSI_NUMBER(__NR_sched_setparam) ", %rdi\n"
        "    je psi_syscall_counted\n"
        "    mov psi_real_syscall(%rip), %r11\n" /* r11: not an argument, %al counts vector ones */
        "    test %r11, %r11\n"
        "    jz psi_syscall_counted\n" /* called before our constructor: load, then call */
        "    jmp *%r11\n"
        ".size syscall, .-syscall\n");

long psi_syscall_counted(long number, long a1, long a2, long a3, long a4, long a5, long a6)
{
    if (psi_real_syscall == NULL)
        psi_real_load();
    if (number != __NR_unshare && number != __NR_setns)
        psi_handoff_settle(); /* scheduling: slice.c */
    long rc = psi_real_syscall(number, a1, a2, a3, a4, a5, a6);
    if (number == __NR_unshare || number == __NR_setns)
        atomic_fetch_add(&ns_epoch, 1);
    return rc;
}
#endif

/* This process's namespaces now. */
static void take_namespaces(uint64_t ns[PSI_NAMESPACES])
{
    struct psi_identity id;
    if (!namespaces_by_pidfd(&id)) {
        memset(id.ns, 0, sizeof(id.ns));
        namespaces_by_proc(&id);
    }
    memcpy(ns, id.ns, sizeof(id.ns));
}

struct psi_ns_mark psi_namespace_mark(void)
{
    return (struct psi_ns_mark){.epoch = psi_namespace_epoch(), .tid = (pid_t)syscall(SYS_gettid)};
}

/* Threads share their namespaces until one of them moves. */
static bool unmoved_since(struct psi_ns_mark mark)
{
    return psi_namespace_epoch() == mark.epoch && (mark.epoch == 0 || mark.tid == (pid_t)syscall(SYS_gettid));
}

void psi_namespaces_take_since(uint64_t ns[PSI_NAMESPACES], const struct psi_identity *then, struct psi_ns_mark mark)
{
    if (unmoved_since(mark))
        memcpy(ns, then->ns, sizeof(then->ns));
    else
        take_namespaces(ns);
}

void psi_identity_take_since(struct psi_identity *id, const struct psi_identity *then, struct psi_ns_mark mark)
{
    take_all_but_namespaces(id);
    psi_namespaces_take_since(id->ns, then, mark);
}

void psi_identity_take_but_namespaces(struct psi_identity *id)
{
    take_all_but_namespaces(id);
}

void psi_identity_take(struct psi_identity *id)
{
    take_all_but_namespaces(id);
    take_namespaces(id->ns);
}

static void take_all_but_namespaces(struct psi_identity *id)
{
    memset(id, 0, sizeof(*id));
    getresuid(&id->uid[0], &id->uid[1], &id->uid[2]);
    getresgid(&id->gid[0], &id->gid[1], &id->gid[2]);
    id->groups = getgroups(PSI_MAX_GROUPS, id->group);
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct caps[2];
    if (syscall(SYS_capget, &header, caps) == 0)
        for (int i = 0; i < 2; i++) {
            id->caps[3 * i] = caps[i].effective;
            id->caps[3 * i + 1] = caps[i].permitted;
            id->caps[3 * i + 2] = caps[i].inheritable;
        }
    id->securebits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
    id->seccomp = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
    id->seccomp_filters = id->seccomp == 2 ? seccomp_filters() : 0;
    prctl(PR_GET_PDEATHSIG, &id->pdeathsig, 0, 0, 0);
    id->personality = personality(0xffffffff);
    id->timerslack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    id->ioprio = (int)syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, 0);
    int mode = -1;
    if (syscall(SYS_get_mempolicy, &mode, NULL, 0, NULL, 0) != 0)
        mode = -1;
    id->mempolicy = mode;
    id->cgroup = hash_file("/proc/thread-self/cgroup");
    id->oom_score_adj = hash_file("/proc/self/oom_score_adj");
}

const char *psi_identity_differs(const struct psi_identity *a, const struct psi_identity *b)
{
    if (memcmp(a->uid, b->uid, sizeof(a->uid)) != 0 || memcmp(a->gid, b->gid, sizeof(a->gid)) != 0 ||
        a->groups != b->groups || a->groups < 0 ||
        memcmp(a->group, b->group, (size_t)a->groups * sizeof(gid_t)) != 0)
        return "credentials changed";
    if (memcmp(a->caps, b->caps, sizeof(a->caps)) != 0 || a->securebits != b->securebits)
        return "capabilities or securebits changed";
    if (a->seccomp != b->seccomp || a->seccomp_filters != b->seccomp_filters)
        return "a seccomp filter was installed";
    if (a->seccomp == 2 && a->seccomp_filters < 0)
        return "under a seccomp filter whose stacking the kernel does not count (before Linux 5.9)";
    if (a->pdeathsig != b->pdeathsig)
        return "a parent-death signal was set";
    if (a->personality != b->personality || a->timerslack != b->timerslack || a->ioprio != b->ioprio ||
        a->mempolicy != b->mempolicy || a->oom_score_adj != b->oom_score_adj)
        return "personality, timer slack, I/O priority, memory policy or oom_score_adj changed";
    if (memcmp(a->ns, b->ns, sizeof(a->ns)) != 0)
        return "namespaces changed";
    if (a->cgroup != b->cgroup)
        return "moved to another cgroup";
    return NULL;
}
