/* The exec family: a child armed by the fork handoff (fork.c) is offered to its launcher
 * first (handoff.c); otherwise, and when that is refused, the real call, with this
 * library removed from LD_PRELOAD (unless PSPAWN_INTERCEPT_INHERIT=1) so that children
 * do not load us. These may also run in a vfork child (never armed), which shares the
 * parent's memory: on that path no malloc, no lock, no logging; the edited environment
 * lives on this stack. */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "intercept/intercept.h"

#define API __attribute__((visibility("default")))
#define MAX_ENV 4096
#define MAX_PRELOAD 8192

extern char **environ;

struct stripped {
    char *env[MAX_ENV + 1];
    char preload[MAX_PRELOAD];
};

/* envp without this library in LD_PRELOAD, in *s; envp itself when nothing changes or
 * it does not fit. */
static char *const *strip(char *const envp[], struct stripped *s)
{
    if (envp == NULL || psi_config.inherit)
        return envp;
    size_t n = 0;
    long at = -1;
    for (; envp[n] != NULL; n++)
        if (strncmp(envp[n], "LD_PRELOAD=", 11) == 0)
            at = (long)n;
    if (at < 0 || n > MAX_ENV || strlen(envp[at]) >= MAX_PRELOAD)
        return envp;
    if (!psi_strip_self_into(envp[at], s->preload, sizeof(s->preload)))
        return envp;
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if ((long)i != at)
            s->env[out++] = envp[i];
        else if (s->preload[sizeof("LD_PRELOAD=") - 1] != '\0')
            s->env[out++] = s->preload;
    }
    s->env[out] = NULL;
    return s->env;
}

/* The launcher's own exec: its zygotes end first, as at its exit (else their processes
 * would be children of the next program, which would see them exit). */
static bool end_zygotes(const char *file)
{
    if (!psi_own_end_before_exec())
        return false;
    psi_log("exec of %s: every zygote ended before exec", file);
    return true;
}

static int after_exec(bool ended, int rc)
{
    if (ended) {
        int saved = errno;
        psi_contexts_after_failed_exec();
        errno = saved;
    }
    return rc;
}

API int execve(const char *path, char *const argv[], char *const envp[])
{
    psi_handoff_exec(path, argv, envp, false);
    struct stripped s;
    char *const *env = strip(envp, &s);
    bool ended = end_zygotes(path);
    return after_exec(ended, psi_real.execve(path, argv, env));
}

API int execv(const char *path, char *const argv[])
{
    return execve(path, argv, environ);
}

API int execvpe(const char *file, char *const argv[], char *const envp[])
{
    psi_handoff_exec(file, argv, envp, true);
    struct stripped s;
    char *const *env = strip(envp, &s);
    bool ended = end_zygotes(file);
    return after_exec(ended, psi_real.execvpe(file, argv, env));
}

API int execvp(const char *file, char *const argv[])
{
    return execvpe(file, argv, environ);
}

/* execl, execlp, execle: the arguments collected on the stack. */
#define MAX_ARGS 4096

/* argv[0] = first, then the variadic arguments up to their NULL; false (E2BIG) if more
 * than MAX_ARGS. */
static bool collect(char **argv, const char *first, va_list *ap)
{
    argv[0] = (char *)first;
    for (int argc = 1; argv[argc - 1] != NULL; argc++) {
        if (argc == MAX_ARGS) {
            errno = E2BIG;
            return false;
        }
        argv[argc] = va_arg(*ap, char *);
    }
    return true;
}

enum list_kind { LIST_PATH, LIST_SEARCH, LIST_ENV };

static int exec_list(enum list_kind kind, const char *file, char **argv, bool ok, char *const *envp)
{
    if (!ok)
        return -1;
    return kind == LIST_SEARCH ? execvpe(file, argv, environ) : execve(file, argv, envp);
}

API int execl(const char *path, const char *arg, ...)
{
    char *argv[MAX_ARGS + 1];
    va_list ap;
    va_start(ap, arg);
    bool ok = collect(argv, arg, &ap);
    va_end(ap);
    return exec_list(LIST_PATH, path, argv, ok, environ);
}

API int execlp(const char *file, const char *arg, ...)
{
    char *argv[MAX_ARGS + 1];
    va_list ap;
    va_start(ap, arg);
    bool ok = collect(argv, arg, &ap);
    va_end(ap);
    return exec_list(LIST_SEARCH, file, argv, ok, environ);
}

API int execle(const char *path, const char *arg, ...)
{
    char *argv[MAX_ARGS + 1];
    va_list ap;
    va_start(ap, arg);
    bool ok = collect(argv, arg, &ap);
    char *const *envp = ok ? va_arg(ap, char *const *) : NULL;
    va_end(ap);
    return exec_list(LIST_ENV, path, argv, ok, envp);
}
