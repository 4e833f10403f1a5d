/* A child's start-up image: argv, envp and the auxiliary vector laid out as execve lays
 * them out, in memory the kernel shows as /proc/<pid>/cmdline and environ; and the
 * per-process secrets (stack canary, AT_RANDOM) that every fork would otherwise share. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/prctl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proxy/proxy.h"

#if !defined(__x86_64__)
#error "psp_child_renew_secrets knows where glibc keeps the stack canary on x86_64 only"
#endif

extern char **environ;

/* Reads up to `size` bytes of a /proc file; returns the length or -1. */
static ssize_t read_small_file(const char *path, void *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len < size) {
        ssize_t r = read(fd, (char *)buf + len, size - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    return (ssize_t)len;
}

/* Words up to and including the AT_NULL pair, or 0 if there is none. */
static size_t auxv_length(const unsigned long *auxv, size_t words)
{
    for (size_t i = 0; i + 1 < words; i += 2)
        if (auxv[i] == AT_NULL)
            return i + 2;
    return 0;
}

/* Without /proc: the entries getauxval knows of, which are those glibc and the usual
 * runtimes look for. */
static size_t auxv_from_getauxval(unsigned long *auxv)
{
    static const unsigned long types[] = {
        AT_SYSINFO_EHDR, AT_MINSIGSTKSZ, AT_HWCAP, AT_PAGESZ, AT_CLKTCK, AT_PHDR, AT_PHENT,
        AT_PHNUM, AT_BASE, AT_FLAGS, AT_ENTRY, AT_UID, AT_EUID, AT_GID, AT_EGID, AT_SECURE,
        AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_PLATFORM,
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        errno = 0;
        unsigned long value = getauxval(types[i]);
        if (value == 0 && errno == ENOENT)
            continue;
        auxv[n++] = types[i];
        auxv[n++] = value;
    }
    auxv[n++] = AT_NULL;
    auxv[n++] = 0;
    return n;
}

static void read_auxv(struct psp_image_base *b)
{
    ssize_t bytes = read_small_file("/proc/self/auxv", b->auxv, sizeof(b->auxv));
    b->auxv_words = bytes > 0 ? auxv_length(b->auxv, (size_t)bytes / sizeof(b->auxv[0])) : 0;
    if (b->auxv_words == 0)
        b->auxv_words = auxv_from_getauxval(b->auxv);
    /* Linux has given AT_RANDOM since 2.6.29; the fallback only keeps the code simple. */
    static unsigned char no_at_random[PSP_RANDOM_BYTES];
    b->at_random = (unsigned char *)getauxval(AT_RANDOM);
    if (b->at_random == NULL)
        b->at_random = no_at_random;
}

/* The mm fields of /proc/self/stat (numbered from 1 as in proc(5)): 26-28 start_code,
 * end_code, start_stack; 45-51 start_data, end_data, start_brk, arg_start, arg_end,
 * env_start, env_end. fields[] gets 52 entries. */
static bool read_stat_fields(unsigned long *fields)
{
    char buf[2048];
    ssize_t n = read_small_file("/proc/self/stat", buf, sizeof(buf) - 1);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    /* The command name (field 2) may hold anything, but it ends at the last ')'. */
    char *cursor = strrchr(buf, ')');
    if (cursor == NULL || cursor[1] != ' ' || cursor[2] == '\0')
        return false;
    cursor += 3; /* past ") " and the state letter (field 3) */
    for (int k = 4; k <= 51; k++) {
        char *end;
        fields[k] = strtoul(cursor, &end, 10);
        if (end == cursor)
            return false;
        cursor = end;
    }
    return true;
}

/* PR_SET_MM_MAP needs no capability (without exe_fd) but every field: the unchanged
 * ones must be the current values. brk moves with malloc, so it is read right here. */
static int point_kernel_at(const struct psp_image_base *b, unsigned long arg_start, unsigned long arg_end,
                           unsigned long env_start, unsigned long env_end)
{
    struct prctl_mm_map map = {
        .start_code = b->start_code,
        .end_code = b->end_code,
        .start_data = b->start_data,
        .end_data = b->end_data,
        .start_brk = b->start_brk,
        .brk = (unsigned long)syscall(SYS_brk, 0),
        .start_stack = b->start_stack,
        .arg_start = arg_start,
        .arg_end = arg_end,
        .env_start = env_start,
        .env_end = env_end,
        .auxv = NULL, /* the saved auxv is the proxy's, which is the one we copy */
        .auxv_size = 0,
        .exe_fd = (uint32_t)-1,
    };
    return prctl(PR_SET_MM, PR_SET_MM_MAP, &map, sizeof(map), 0) == 0 ? 0 : errno;
}

/* The memory map, and whether the kernel takes PR_SET_MM_MAP (CONFIG_CHECKPOINT_RESTORE,
 * no seccomp or LSM refusing it): tried here with the proxy's own values, a no-op. */
static void read_memory_map(struct psp_image_base *b)
{
    unsigned long f[52] = {0};
    if (!read_stat_fields(f))
        return;
    b->start_code = f[26];
    b->end_code = f[27];
    b->start_stack = f[28];
    b->start_data = f[45];
    b->end_data = f[46];
    b->start_brk = f[47];
    b->set_mm = point_kernel_at(b, f[48], f[49], f[50], f[51]) == 0;
}

void psp_child_image_init(struct psp_proxy *p)
{
    read_auxv(&p->image);
    read_memory_map(&p->image);
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Copies n strings to `out`, one after another, pointing dst[0..n-1] at the copies and
 * dst[n] at NULL. Returns the end of the copies. */
static char *copy_strings(char **dst, char *const *src, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(src[i]) + 1;
        memcpy(out, src[i], len);
        dst[i] = out;
        out += len;
    }
    dst[n] = NULL;
    return out;
}

static int draw_random(unsigned char *out)
{
    ssize_t n;
    do
        n = getrandom(out, PSP_RANDOM_BYTES, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno;
    return n == PSP_RANDOM_BYTES ? 0 : EIO;
}

int psp_child_image_install(struct psp_proxy *p, struct psp_decoded *req)
{
    const struct psp_image_base *b = &p->image;
    size_t argc = (size_t)req->argc, envc = 0, string_bytes = 0;
    for (size_t i = 0; i < argc; i++)
        string_bytes += strlen(req->argv[i]) + 1;
    for (; req->envp[envc] != NULL; envc++)
        string_bytes += strlen(req->envp[envc]) + 1;

    /* The kernel shows cmdline and environ only from anonymous memory. */
    size_t words = 1 + (argc + 1) + (envc + 1) + b->auxv_words;
    size_t size = words * sizeof(unsigned long) + string_bytes;
    unsigned long *block = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (block == MAP_FAILED)
        return errno;
    block[0] = argc;
    char **argv = (char **)(block + 1);
    char **envp = argv + argc + 1;
    /* Right after envp's NULL, where runtimes that walk past envp look for it. */
    unsigned long *auxv = (unsigned long *)(envp + envc + 1);
    memcpy(auxv, b->auxv, b->auxv_words * sizeof(*auxv));
    char *args = (char *)(auxv + b->auxv_words);
    char *env = copy_strings(argv, req->argv, argc, args);
    char *end = copy_strings(envp, req->envp, envc, env);

    req->argv = argv;
    req->envp = envp;
    req->envc = (int)envc;
    environ = envp;
    program_invocation_name = argv[0];
    program_invocation_short_name = (char *)base_name(argv[0]);
    if (b->set_mm) {
        int err = point_kernel_at(b, (unsigned long)args, (unsigned long)env, (unsigned long)env,
                                  (unsigned long)end);
        if (err != 0)
            return err;
    }
    /* In place: glibc's getauxval and the copied auxv point there. Only the canary must
     * wait for the last moment; it is derived from these bytes then. */
    return draw_random(b->at_random);
}

/* Returns after changing the canary: built without the stack protector, and so is its
 * caller. The canary is derived as ld.so derives it from AT_RANDOM: its first word with
 * the low byte zeroed, so that string overflows cannot write it. */
__attribute__((no_stack_protector)) void psp_child_renew_secrets(struct psp_proxy *p)
{
    const volatile unsigned char *random = p->image.at_random; /* volatile: no library call */
    uintptr_t canary = 0;
    for (size_t i = 0; i < sizeof(canary); i++)
        canary |= (uintptr_t)random[i] << (8 * i);
    canary &= ~(uintptr_t)0xff;
    __asm__ volatile("movq %0, %%fs:0x28" : : "r"(canary) : "memory");
}
