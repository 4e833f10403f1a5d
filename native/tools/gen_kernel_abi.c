/* The kernel ABI's half of the shared constants (see gen_shared_constants.c). */
#include <stddef.h>

#include "../kernel/uapi/pspawn_syscall.h"
#include "gen_shared_constants.h"

void emit_kernel_abi(void)
{
    open_class("KernelAbi", "The pspawn/ipspawn system calls' ABI (native/kernel/uapi/pspawn_syscall.h is its one definition).");
    INT(AbiVersion, PSPAWN_ABI_VERSION);
    emit_string("SysfsDir", PSPAWN_SYSFS_DIR);
    INT(ArgsSizeVer0, PSPAWN_ARGS_SIZE_VER0);
    SIZE(Args, struct pspawn_args);
    OFFSET(Args, Filename, struct pspawn_args, filename);
    OFFSET(Args, Argv, struct pspawn_args, argv);
    OFFSET(Args, Envp, struct pspawn_args, envp);
    OFFSET(Args, Cpumasks, struct pspawn_args, cpumasks);
    OFFSET(Args, Pids, struct pspawn_args, pids);
    OFFSET(Args, Flags, struct pspawn_args, flags);
    OFFSET(Args, Nspawns, struct pspawn_args, nspawns);
    OFFSET(Args, CpumaskSize, struct pspawn_args, cpumask_size);
    ULONG(SharedArgv, PSPAWN_SHARED_ARGV);
    ULONG(SharedEnvp, PSPAWN_SHARED_ENVP);
    ULONG(SharedCpumask, PSPAWN_SHARED_CPUMASK);
    ULONG(SessionNonblock, PSPAWN_SESSION_NONBLOCK);
    ULONG(FlagsAll, PSPAWN_FLAGS_ALL);
    INT(MaxSpawns, PSPAWN_MAX_SPAWNS);
    INT(MaxCpumaskSize, PSPAWN_MAX_CPUMASK_SIZE);
    UINT(MaxTotalBytes, PSPAWN_MAX_TOTAL_BYTES);
    UINT(MaxInstanceBytes, PSPAWN_MAX_INSTANCE_BYTES);
    INT(ResultSize, sizeof(pspawn_result_t));
    close_class();
}
