/* kbench's methods through libpspawn (kbench_lib.c). */
#ifndef KBENCH_LIB_H
#define KBENCH_LIB_H

#include <sched.h>
#include <stdbool.h>
#include <sys/types.h>

#define KBENCH_LIB_KERNEL 0 /* pspawn_vector, PSPAWN_CTX_EXEC + PSPAWN_KERNEL_AUTO: the kernel backend */
#define KBENCH_LIB_ZYGOTE 1 /* pspawn_vector, a default context: the proxies */
#define KBENCH_LIB_EXEC 2   /* pspawn_vector, PSPAWN_CTX_EXEC + PSPAWN_KERNEL_FORBID: the exec backend */

/* Creates the context of a method; -1 with errno if it cannot serve as that method. */
int kbench_lib_init(int which, const char *target);
/* n instances of target (empty environment; masks NULL or one per instance): how many
 * started (pids[i] > 0 for those). */
int kbench_lib_spawn(int which, const char *target, unsigned int n, const cpu_set_t *masks, pid_t *pids);
void kbench_lib_fini(void);

#endif
