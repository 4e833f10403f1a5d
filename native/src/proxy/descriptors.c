/* Descriptors for per-spawn stdio arrive over a SOCK_SEQPACKET socket (SCM_RIGHTS). */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/proxy.h"

/* Receives one message; keeps up to `capacity - *got` descriptors in fds[*got...] and
 * closes any beyond that. Returns the recvmsg result, or -1 on a truncated message. */
static ssize_t receive_message(int flags, int *fds, uint32_t capacity, uint32_t *got)
{
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(PSP_MAX_FDS_PER_MESSAGE * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf)};
    ssize_t r = recvmsg(PSP_FD_SOCKET, &msg, flags | MSG_CMSG_CLOEXEC);
    if (r <= 0)
        return r;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const int *data = (const int *)CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            if (*got < capacity)
                fds[(*got)++] = data[i];
            else
                close(data[i]); /* more than announced: refuse the surplus */
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
        errno = EPROTO;
        return -1;
    }
    return r;
}

int psp_receive_fds(int *fds, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++)
        fds[i] = -1;
    uint32_t got = 0;
    while (got < count) {
        /* The launcher counts what it sends; a shortfall within a second means a broken
         * launcher, not a slow one. */
        struct pollfd pfd = {.fd = PSP_FD_SOCKET, .events = POLLIN};
        if (poll(&pfd, 1, 1000) != 1)
            return EPROTO;
        ssize_t r = receive_message(0, fds, count, &got);
        if (r <= 0)
            return r == 0 ? EPIPE : errno;
    }
    return 0;
}

void psp_drain_fds(void)
{
    uint32_t none = 0;
    while (receive_message(MSG_DONTWAIT, NULL, 0, &none) > 0) {
    }
}

void psp_close_fds(int *fds, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}
