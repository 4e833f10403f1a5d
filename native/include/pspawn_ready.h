/* The deferred fork point: a program started by a PSpawn context created with
 * PSPAWN_CTX_DEFERRED calls pspawn_ready() where its expensive start-up is done; the
 * proxy freezes there and every instance is a fork from that point. Header-only: it finds
 * the proxy library (LD_PRELOADed by PSpawn) through dlsym, so a program run without
 * PSpawn links nothing extra and pspawn_ready() is a no-op there.
 *
 *   int main(int argc, char **argv) {
 *       load_the_big_model();            // once, in the proxy
 *       if (pspawn_ready())              // 1 in each instance (never returns in the proxy)
 *           argv = pspawn_args(&argc);   // this instance's argv; environ is its own too
 *       return work(argc, argv);
 *   }
 *
 * Rules (README, "Deferred fork point"): single-threaded at the call (else the context
 * fails with EDEADLK); descriptors the program opened are inherited by every instance;
 * memory, heap, caches and file offsets are the proxy's; the stack canary is the proxy's
 * (the frames below the call return after it), AT_RANDOM is fresh. */
#ifndef PSPAWN_READY_H
#define PSPAWN_READY_H

#include <dlfcn.h>
#include <stddef.h>

/* 1 in an instance spawned by PSpawn (its argv is pspawn_args(), its environ already
 * set), 0 when not run as a deferred PSpawn proxy (a no-op). Never returns in the proxy. */
static inline int pspawn_ready(void)
{
    int (*hook)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "pspawn_proxy_ready");
    return hook != NULL ? hook() : 0;
}

/* This instance's argv (NULL-terminated) and *argc after pspawn_ready() returned 1; NULL
 * (argc untouched) otherwise. */
static inline char **pspawn_args(int *argc)
{
    char **(*hook)(int *) = (char **(*)(int *))dlsym(RTLD_DEFAULT, "pspawn_proxy_args");
    return hook != NULL ? hook(argc) : NULL;
}

#endif
