#include "pspawn_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Reads PSPAWN_SYSFS_DIR/name as one decimal number. */
static int read_number(const char *name, long *value)
{
    char path[256], text[32], *end;
    ssize_t n;
    int fd, saved;

    snprintf(path, sizeof path, "%s/%s", PSPAWN_SYSFS_DIR, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n = read(fd, text, sizeof text - 1);
    saved = errno;
    if (close(fd) != 0 && n >= 0)
        return -errno;
    if (n < 0)
        return -saved;
    text[n] = '\0';
    errno = 0;
    *value = strtol(text, &end, 10);
    if (errno != 0 || end == text || (*end != '\n' && *end != '\0') || *value <= 0)
        return -EINVAL;
    return 0;
}

int pspawn_sys_detect(struct pspawn_sys *sys)
{
    struct stat st;
    long abi;
    int err;

    if (stat(PSPAWN_SYSFS_DIR, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    if ((err = read_number("abi_version", &abi)) != 0 ||
        (err = read_number("pspawn_nr", &sys->pspawn_nr)) != 0 ||
        (err = read_number("ipspawn_nr", &sys->ipspawn_nr)) != 0)
        return err;
    /* A newer kernel keeps accepting version-1 blocks; an older ABI is not ours. */
    if (abi < PSPAWN_ABI_VERSION)
        return -EPROTO;
    sys->abi_version = (int)abi;
    return 1;
}

long pspawn_sys_pspawn(const struct pspawn_sys *sys, struct pspawn_args *args, size_t size)
{
    return syscall(sys->pspawn_nr, args, size);
}

long pspawn_sys_ipspawn(const struct pspawn_sys *sys, struct pspawn_args *args, size_t size)
{
    return syscall(sys->ipspawn_nr, args, size);
}
