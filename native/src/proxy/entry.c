/* Entry into the target: a __libc_start_main wrapper that keeps the target frozen
 * after its loader, relocations and constructors, right before main. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "proxy/proxy.h"

#define PSP_EXPORT __attribute__((visibility("default")))

struct psp_proxy psp_the_proxy;
static bool g_active;
static bool g_deferred;           /* freeze at pspawn_ready(), not before main */
static struct psp_decoded g_deferred_request; /* a deferred child's argv/envp */

/* Activate only in the process our launcher started: a program the target's
 * constructors start inherits LD_PRELOAD and our variable, but not our parent. */
__attribute__((constructor)) static void psp_proxy_constructor(void)
{
    const char *config = getenv(PSP_ENV_CONFIG);
    int version, launcher;
    unsigned flags;
    if (config == NULL || sscanf(config, "%d:%d:%u", &version, &launcher, &flags) != 3 ||
        version != (int)PSP_PROTOCOL_VERSION || getppid() != launcher)
        return;
    /* Until the proxy watches its launcher through a pidfd, let the kernel kill it
     * if the launcher dies while the target is still loading. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != launcher)
        _exit(127);
    psp_the_proxy.launcher_pid = launcher;
    psp_the_proxy.relay = (flags & PSP_CONFIG_RELAY) != 0;
    psp_the_proxy.prefault = (flags & PSP_CONFIG_PREFAULT) != 0;
    psp_the_proxy.watch_image = (flags & PSP_CONFIG_WATCH_IMAGE) != 0;
    psp_the_proxy.merge_text = (flags & PSP_CONFIG_MERGE_TEXT) != 0;
    g_deferred = (flags & PSP_CONFIG_DEFERRED) != 0;
    unsetenv(PSP_ENV_CONFIG);
    g_active = true;
}

/* No stack protector: the canary changes in this frame, which then returns (to
 * __libc_start_call_main, which calls exit and never returns itself). */
__attribute__((no_stack_protector)) static int psp_proxy_main(int argc, char **argv, char **envp)
{
    (void)argc;
    (void)argv;
    (void)envp;
    struct psp_decoded request;
    psp_serve(&psp_the_proxy, &request);
    /* Only children get here. Their exit runs the target's atexit handlers and
     * destructors exactly as if main had been called by __libc_start_main. */
    psp_child_renew_secrets(&psp_the_proxy); /* nothing protected may return after this */
    return psp_the_proxy.target_main(request.argc, request.argv, request.envp);
}

/* pspawn_ready() (pspawn_ready.h) finds this through dlsym. In a deferred proxy it
 * serves from here: it returns only in children, 1, with the child's argv/environ in
 * place. The stack canary is not renewed (frames of the target entered before this call
 * return after it). 0 when this process is no deferred proxy (or is a child already). */
PSP_EXPORT int pspawn_proxy_ready(void)
{
    if (!g_active || !g_deferred)
        return 0;
    g_active = false; /* once: a child calling it again gets 0 */
    psp_serve(&psp_the_proxy, &g_deferred_request);
    return 1;
}

/* The argv a deferred child got (NULL-terminated; *argc its count), or NULL. */
PSP_EXPORT char **pspawn_proxy_args(int *argc)
{
    if (g_deferred_request.argv == NULL)
        return NULL;
    if (argc != NULL)
        *argc = g_deferred_request.argc;
    return g_deferred_request.argv;
}

typedef int (*libc_start_main_fn)(psp_main_fn, int, char **, void (*)(void), void (*)(void),
                                  void (*)(void), void *);

PSP_EXPORT int __libc_start_main(psp_main_fn main, int argc, char **argv, void (*init)(void),
                                 void (*fini)(void), void (*rtld_fini)(void), void *stack_end)
{
    libc_start_main_fn real = (libc_start_main_fn)dlsym(RTLD_NEXT, "__libc_start_main");
    if (real == NULL)
        _exit(127);
    if (g_active && !g_deferred) {
        psp_the_proxy.target_main = main;
        main = psp_proxy_main;
    }
    return real(main, argc, argv, init, fini, rtld_fini, stack_end);
}
