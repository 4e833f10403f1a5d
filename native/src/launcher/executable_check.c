/* Refuse, with a precise errno, executables a zygote cannot serve. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launcher/internal.h"

static int read_fully_at(int fd, void *buf, size_t len, off_t offset)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, offset + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

/* ENOEXEC unless this is an ELF executable for our machine; ENOTSUP if it has no
 * PT_INTERP (static: the loader never runs, so LD_PRELOAD is ignored). */
static int check_elf(int fd)
{
    Elf64_Ehdr eh;
    if (read_fully_at(fd, &eh, sizeof(eh), 0) != 0)
        return ENOEXEC;
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64 ||
        (eh.e_type != ET_EXEC && eh.e_type != ET_DYN) || eh.e_phentsize != sizeof(Elf64_Phdr))
        return ENOEXEC;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        if (read_fully_at(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + (uint64_t)i * sizeof(ph))) != 0)
            return ENOEXEC;
        if (ph.p_type == PT_INTERP)
            return 0;
    }
    return ENOTSUP;
}

int psp_check_executable(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOTDIR ? ENOENT : errno;
    if (!S_ISREG(st.st_mode) || access(path, X_OK) != 0)
        return EACCES;
    if (st.st_mode & (S_ISUID | S_ISGID))
        return EPERM;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = check_elf(fd);
    close(fd);
    return err;
}
