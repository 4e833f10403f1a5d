/* What a child does between clone and main: become the program the launcher asked for. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proxy/proxy.h"

extern char **environ;

/* Remove `library` from a colon/space separated LD_PRELOAD value, in place. */
static void strip_preload(char *value, const char *library)
{
    char *out = value;
    char *cursor = value;
    while (*cursor != '\0') {
        size_t len = strcspn(cursor, ": ");
        bool ours = library != NULL && strlen(library) == len && strncmp(cursor, library, len) == 0;
        if (!ours && len > 0) {
            if (out != value)
                *out++ = ':';
            memmove(out, cursor, len);
            out += len;
        }
        cursor += len;
        if (*cursor != '\0')
            cursor++;
    }
    *out = '\0';
}

void psp_clean_environment(char **envp, const char *library_path)
{
    size_t out = 0;
    for (size_t i = 0; envp[i] != NULL; i++) {
        char *entry = envp[i];
        if (strncmp(entry, PSP_ENV_CONFIG "=", sizeof(PSP_ENV_CONFIG)) == 0)
            continue;
        if (strncmp(entry, "LD_PRELOAD=", 11) == 0) {
            strip_preload(entry + 11, library_path);
            if (entry[11] == '\0')
                continue;
        }
        envp[out++] = entry;
    }
    envp[out] = NULL;
}

/* /proc/<pid>/cmdline shows the proxy's argv unless we point the kernel at the new
 * strings; that needs CAP_SYS_RESOURCE, so it is best effort. argv strings are packed
 * contiguously by the decoder, exactly the cmdline format. */
static void set_cmdline(struct psp_decoded *req)
{
    unsigned long start = (unsigned long)req->argv[0];
    unsigned long end = (unsigned long)(req->argv[req->argc - 1] + strlen(req->argv[req->argc - 1]) + 1);
    if (prctl(PR_SET_MM, PR_SET_MM_ARG_START, start, 0, 0) != 0) {
        /* The kernel keeps start <= end at every step: move the end first. */
        if (prctl(PR_SET_MM, PR_SET_MM_ARG_END, end, 0, 0) == 0)
            prctl(PR_SET_MM, PR_SET_MM_ARG_START, start, 0, 0);
        return;
    }
    prctl(PR_SET_MM, PR_SET_MM_ARG_END, end, 0, 0);
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

void psp_child_prepare(struct psp_proxy *p, struct psp_decoded *req)
{
    if (p->robust_head != NULL)
        syscall(SYS_set_robust_list, p->robust_head, p->robust_len);
    environ = req->envp;
    program_invocation_name = req->argv[0];
    program_invocation_short_name = (char *)base_name(req->argv[0]);
    set_cmdline(req);
    munmap(p->shared, p->size);
    syscall(SYS_close_range, 3u, ~0u, 0u);
    sigprocmask(SIG_SETMASK, &p->saved_mask, NULL);
}
