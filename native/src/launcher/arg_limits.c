/* execve's limits on argv and the environment (fs/exec.c), applied in every mode: a
 * zygote child is never exec'd, but it must accept exactly what posix_spawn would. */
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "launcher/internal.h"

#define KERNEL_MAX_ARG_STRINGS 0x7FFFFFFFu /* include/uapi/linux/binfmts.h */
#define KERNEL_ARG_MAX 131072u             /* include/uapi/linux/limits.h: 32 pages, the floor */
#define KERNEL_STK_LIM (8u << 20)          /* include/uapi/linux/resource.h: _STK_LIM */

/* MAX_ARG_STRLEN: one string, terminator included, is at most 32 pages. */
static size_t max_arg_strlen(void)
{
    long page = sysconf(_SC_PAGESIZE);
    return 32 * (size_t)(page > 0 ? page : 4096);
}

/* bprm_stack_limits: the room for strings and pointers is a quarter of the stack limit,
 * at most three quarters of _STK_LIM, and never less than ARG_MAX. */
static uint64_t stack_room(void)
{
    uint64_t room = KERNEL_STK_LIM / 4 * 3;
    struct rlimit stack;
    if (getrlimit(RLIMIT_STACK, &stack) == 0 && stack.rlim_cur / 4 < room)
        room = stack.rlim_cur / 4;
    return room < KERNEL_ARG_MAX ? KERNEL_ARG_MAX : room;
}

/* Adds the strings of `list` to *bytes and *count; false if one is too long or there
 * are too many. strnlen bounds the scan of each string by the limit itself. */
static bool add_strings(char *const list[], size_t longest, uint64_t *bytes, uint64_t *count)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        size_t len = strnlen(list[i], longest) + 1;
        if (len > longest || ++*count > KERNEL_MAX_ARG_STRINGS)
            return false;
        *bytes += len;
    }
    return true;
}

bool psp_exceeds_arg_limits(char *const argv[], char *const envp[], size_t filename_bytes)
{
    size_t longest = max_arg_strlen();
    uint64_t arg_bytes = 0, argc = 0, env_bytes = 0, envc = 0;
    if (!add_strings(argv, longest, &arg_bytes, &argc) || !add_strings(envp, longest, &env_bytes, &envc))
        return true;
    /* The kernel copies the file name too, and gives an empty argv one "" (1 byte). */
    uint64_t bytes = arg_bytes + env_bytes + filename_bytes + (argc == 0 ? 1 : 0);
    uint64_t pointers = ((argc == 0 ? 1 : argc) + envc) * sizeof(void *);
    uint64_t room = stack_room();
    return room <= pointers || bytes > room - pointers;
}
