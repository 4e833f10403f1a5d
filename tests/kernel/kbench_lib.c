/* kbench's library methods: pspawn_vector through libpspawn's dispatcher, with the
 * kernel backend (PSPAWN_CTX_EXEC under PSPAWN_KERNEL_AUTO, which the guest's kernel
 * serves), the exec backend (PSPAWN_CTX_EXEC, PSPAWN_KERNEL_FORBID) or the zygote (the
 * default context: K proxies). Apart from kbench.c because
 * pspawn.h and the uapi header each define PSPAWN_MAX_SPAWNS (the library's and the
 * kernel's limits). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbench_lib.h"
#include "pspawn.h"

static pspawn_context_t contexts[3];
static bool ready[3];

int kbench_lib_init(int which, const char *target)
{
    pspawn_context_attr_t attr;
    pspawn_context_attr_init(&attr);
    attr.kernel = which == KBENCH_LIB_KERNEL ? PSPAWN_KERNEL_AUTO : PSPAWN_KERNEL_FORBID;
    attr.flags = which == KBENCH_LIB_ZYGOTE ? 0 : PSPAWN_CTX_EXEC;
    if (pspawn_context_create_ex(&contexts[which], target, &attr) != 0)
        return -1;
    int want = which == KBENCH_LIB_KERNEL ? PSPAWN_MODE_KERNEL
               : which == KBENCH_LIB_EXEC ? PSPAWN_MODE_EXEC : PSPAWN_MODE_ZYGOTE;
    if (pspawn_request_mode(&contexts[which], NULL) != want) {
        fprintf(stderr, "kbench: library method %d is not served as mode %d\n", which, want);
        pspawn_context_destroy(&contexts[which]);
        errno = ENOTSUP;
        return -1;
    }
    ready[which] = true;
    return 0;
}

int kbench_lib_spawn(int which, const char *target, unsigned int n, const cpu_set_t *masks, pid_t *pids)
{
    static char *const empty_env[] = {NULL};
    char *argv[] = {(char *)target, NULL};
    pspawn_instance_t *in = calloc(n, sizeof(*in));
    if (in == NULL || !ready[which]) {
        free(in);
        return -1;
    }
    for (unsigned int i = 0; i < n; i++) {
        in[i] = (pspawn_instance_t){.argv = argv, .envp = empty_env};
        if (masks != NULL) {
            in[i].cpus = &masks[i];
            in[i].cpusetsize = sizeof(cpu_set_t);
        }
    }
    int started = pspawn_vector(pids, NULL, &contexts[which], in, (int)n, NULL);
    free(in);
    return started;
}

void kbench_lib_fini(void)
{
    for (int k = 0; k < 3; k++)
        if (ready[k])
            pspawn_context_destroy(&contexts[k]);
}
