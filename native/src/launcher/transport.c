/* Descriptors that travel to the proxy with SCM_RIGHTS (the segment, stdio), and the
 * pipes a part creates for its children. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "launcher/internal.h"

int psp_send_fds(int socket_fd, const int *fds, int count)
{
    for (int sent = 0; sent < count;) {
        int n = count - sent < PSP_MAX_FDS_PER_MESSAGE ? count - sent : PSP_MAX_FDS_PER_MESSAGE;
        char byte = 0;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        union {
            char buf[CMSG_SPACE(PSP_MAX_FDS_PER_MESSAGE * sizeof(int))];
            struct cmsghdr align;
        } control;
        memset(&control, 0, sizeof(control));
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = CMSG_SPACE((size_t)n * sizeof(int))};
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
        memcpy(CMSG_DATA(cmsg), fds + sent, (size_t)n * sizeof(int));
        ssize_t r;
        while ((r = sendmsg(socket_fd, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
        }
        if (r < 0)
            return errno == ECONNREFUSED || errno == EPIPE ? EPIPE : errno;
        sent += n;
    }
    return 0;
}

/* Creates the part's pipes: the caller's ends go to the plan's stdio_fds, the child
 * ends (in instance order, stdin/stdout/stderr order within one) to child_fds. */
int psp_make_pipes(const pspawn_attr_t *attr, const int *index, int count, int *plan_fds, int *child_fds)
{
    int n = 0;
    for (int j = 0; j < count; j++) {
        int *stdio_fds = plan_fds + 3 * index[j];
        for (int k = 0; k < 3; k++) {
            stdio_fds[k] = -1;
            if (attr->stdio[k].kind != PSP_STDIO_PIPE)
                continue;
            int p[2];
            if (pipe2(p, O_CLOEXEC) != 0)
                return errno;
            /* stdin: the child reads; stdout/stderr: the child writes. */
            stdio_fds[k] = k == 0 ? p[1] : p[0];
            child_fds[n++] = k == 0 ? p[0] : p[1];
        }
    }
    return 0;
}

void psp_close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}
