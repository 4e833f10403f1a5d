/* Facts about the calling process (self.h). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/self.h"

int psp_thread_count(void)
{
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *at = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
    for (int field = 2; at != NULL && field < 20; field++)
        at = strchr(at + 1, ' ');
    return at != NULL ? atoi(at + 1) : -1;
}
