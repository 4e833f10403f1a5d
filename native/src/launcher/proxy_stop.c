/* Stopping a proxy within a bounded time, also one we may no longer signal, and reaping
 * the ones that outlive the bound later. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/internal.h"

bool psp_channel_terminate(struct psp_channel *ch)
{
    if (ch->proxy_pidfd < 0)
        return true;
    /* EPERM after the caller changed its credentials: the hang-up below still stops it
     * (the proxy watches the socket, also between two forks), so that wait is short. A
     * delivered SIGKILL always completes, only late on a loaded machine: wait longer. */
    bool killed = syscall(SYS_pidfd_send_signal, ch->proxy_pidfd, SIGKILL, NULL, 0) == 0;
    if (ch->socket_fd >= 0)
        shutdown(ch->socket_fd, SHUT_RDWR);
    struct pollfd p = {.fd = ch->proxy_pidfd, .events = POLLIN};
    int64_t deadline = psp_now_ms() + (killed ? PSP_KILLED_TIMEOUT_MS : PSP_TERMINATE_TIMEOUT_MS);
    for (;;) {
        int64_t left = deadline - psp_now_ms();
        if (left <= 0)
            return false;
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return true;
        if (n < 0 && errno != EINTR)
            return false;
    }
}

/* Proxies that outlived their stop: their pidfds, reaped (WNOHANG) whenever a proxy is
 * started or stopped later, so that none stays a zombie for long. */
static pthread_mutex_t g_late_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_late[64];
static int g_late_count;

static bool reaped(int pidfd)
{
    siginfo_t info = {0};
    int r;
    while ((r = waitid(P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG)) != 0 && errno == EINTR) {
    }
    return r != 0 || info.si_pid != 0; /* ECHILD: somebody else reaped it */
}

static void reap_late_proxies(void)
{
    pthread_mutex_lock(&g_late_lock);
    for (int i = 0; i < g_late_count;) {
        if (reaped(g_late[i])) {
            close(g_late[i]);
            g_late[i] = g_late[--g_late_count];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&g_late_lock);
}

static void reap_later(int pidfd)
{
    pthread_mutex_lock(&g_late_lock);
    if (g_late_count == (int)(sizeof(g_late) / sizeof(g_late[0])))
        close(g_late[--g_late_count]); /* give the oldest up rather than grow */
    g_late[g_late_count++] = pidfd;
    pthread_mutex_unlock(&g_late_lock);
}

/* Stops and reaps the proxy, bounded. One that outlives the bound (stopped by a ptracer,
 * unkillable after a credential change and stuck in the kernel, or just late) is reaped
 * by a later start or stop. */
void psp_kill_and_reap_proxy(struct psp_channel *ch)
{
    reap_late_proxies();
    if (ch->proxy_pid <= 0)
        return;
    bool gone = psp_channel_terminate(ch);
    if (ch->proxy_pidfd >= 0) {
        if (gone) {
            (void)reaped(ch->proxy_pidfd); /* ECHILD is fine: a runtime that reaps every child (pid 1) may have */
        } else if (!reaped(ch->proxy_pidfd)) {
            reap_later(ch->proxy_pidfd);
            ch->proxy_pidfd = -1;
        }
    }
    ch->proxy_pid = -1;
}

/* Kills and reaps one child of ours through a pidfd, so that a pid somebody else reaped
 * (and the kernel reused) is never signalled. */
void psp_kill_and_reap_pid(pid_t pid)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0)
        return;
    siginfo_t info = {0};
    if (waitid(P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG | WNOWAIT) == 0) { /* ours */
        (void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        while (waitid(P_PIDFD, (id_t)pidfd, &info, WEXITED) != 0 && errno == EINTR) {
        }
    }
    close(pidfd);
}

/* The caller took our descriptors (closed or reused their numbers): the proxy is stopped
 * through a pidfd of its own, and every descriptor field forgotten, never closed. */
void psp_channel_forget_fds(struct psp_channel *ch)
{
    if (ch->proxy_pid > 0)
        psp_kill_and_reap_pid(ch->proxy_pid);
    ch->proxy_pid = -1;
    ch->proxy_pidfd = ch->reply_fd = ch->doorbell_fd = ch->socket_fd = -1;
    for (unsigned k = 0; k < PSP_RING_SLOTS; k++)
        ch->slot_fds[k] = -1;
    for (int k = 0; k < ch->pool_fd_count; k++)
        ch->pool_fds[k] = -1;
}

/* Before the caller's exec: the proxy and its parked children would otherwise become
 * children of the next program, which would see them exit. Through fresh pidfds, not the
 * channel's descriptors (the caller may have taken their numbers). The channel is left as
 * it is but for proxy_pid (so that pspawn_context_owns no longer names a pid the kernel
 * may reuse, and a later stop does not signal it): if the exec fails, the next call finds
 * the proxy dead, and stopping the channel closes what it holds. */
void psp_channel_end_before_exec(struct psp_channel *ch)
{
    pid_t pid = __atomic_exchange_n(&ch->proxy_pid, -1, __ATOMIC_RELAXED);
    if (pid > 0)
        psp_kill_and_reap_pid(pid);
    psp_pool_end_parked(ch);
}
