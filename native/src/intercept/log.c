/* PSPAWN_DEBUG=1: one line per decision, appended to PSPAWN_DEBUG_FILE. The file is
 * opened for each line (O_APPEND): no descriptor of ours lives in the launcher, so none
 * can be inherited, closed under us or collide with the launcher's numbers. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "intercept/intercept.h"

static char log_path[4096];
static bool log_on;

void psi_log_init(void)
{
    const char *debug = getenv("PSPAWN_DEBUG");
    if (debug == NULL || strcmp(debug, "1") != 0)
        return;
    const char *file = getenv("PSPAWN_DEBUG_FILE");
    int n = file != NULL && file[0] != '\0'
                ? snprintf(log_path, sizeof(log_path), "%s", file)
                : snprintf(log_path, sizeof(log_path), "/tmp/pspawn-intercept.%d.log", (int)getpid());
    log_on = n > 0 && (size_t)n < sizeof(log_path);
}

void psi_log(const char *fmt, ...)
{
    if (!log_on)
        return;
    int saved = errno;
    char line[8192];
    int head = snprintf(line, sizeof(line), "pspawn-intercept[%d]: ", (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int body = vsnprintf(line + head, sizeof(line) - (size_t)head - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)head + (body < 0 ? 0 : (size_t)body);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        ssize_t w = write(fd, line, len);
        (void)w;
        close(fd);
    }
    errno = saved;
}
