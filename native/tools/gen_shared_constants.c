/*
 * Writes the C# side of every constant the two languages share (SharedConstants.g.cs).
 *
 * The C headers are the one place these numbers live: native/include/pspawn.h for the
 * library's own, native/kernel/uapi/pspawn_syscall.h for the kernel ABI, and the C
 * library's headers for the system's. The build compiles this program against them and
 * runs it (native/CMakeLists.txt); PSpawn.csproj compiles its output. Struct sizes and
 * field offsets are emitted too, and a .NET test compares them with the managed
 * declarations (StructLayoutTests), so a header change cannot leave a stale mirror.
 *
 * Usage: gen_shared_constants OUTPUT.cs (written through a temporary file and renamed,
 * so an interrupted build never leaves half a file).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pspawn.h"
#include "gen_shared_constants.h"

FILE *out;


void open_class(const char *name, const char *summary)
{
    fprintf(out, "    /// <summary>%s</summary>\n", summary);
    fprintf(out, "    internal static partial class %s\n    {\n", name);
}

void close_class(void)
{
    fputs("    }\n\n", out);
}

void emit_int(const char *name, long long value)
{
    fprintf(out, "        internal const int %s = %lld;\n", name, value);
}

void emit_uint(const char *name, unsigned long long value)
{
    fprintf(out, "        internal const uint %s = 0x%llxu;\n", name, value);
}

void emit_ulong(const char *name, unsigned long long value)
{
    fprintf(out, "        internal const ulong %s = 0x%llxUL;\n", name, value);
}

void emit_short(const char *name, long long value)
{
    fprintf(out, "        internal const short %s = %lld;\n", name, value);
}

void emit_string(const char *name, const char *value)
{
    fprintf(out, "        internal const string %s = \"%s\";\n", name, value);
}

static void emit_library(void)
{
    open_class("PSpawnCore", "pspawn.h's constants (native/include/pspawn.h is their one definition).");
    INT(MaxSpawns, PSPAWN_MAX_SPAWNS);
    INT(MaxProxies, PSPAWN_MAX_PROXIES);
    INT(DefaultMaxRestarts, PSPAWN_DEFAULT_MAX_RESTARTS);
    INT(MaxPipedBatch, PSPAWN_MAX_PIPED_BATCH);
    UINT(CtxFallback, PSPAWN_CTX_FALLBACK);
    UINT(CtxRelay, PSPAWN_CTX_RELAY);
    UINT(CtxNoBindNow, PSPAWN_CTX_NO_BIND_NOW);
    UINT(CtxPrefault, PSPAWN_CTX_PREFAULT);
    UINT(CtxExec, PSPAWN_CTX_EXEC);
    UINT(CtxDeferred, PSPAWN_CTX_DEFERRED);
    UINT(CtxNumaReplicas, PSPAWN_CTX_NUMA_REPLICAS);
    UINT(CtxFdsAboveLimit, PSPAWN_CTX_FDS_ABOVE_LIMIT);
    UINT(CtxWatchImage, PSPAWN_CTX_WATCH_IMAGE);
    UINT(CtxMergeText, PSPAWN_CTX_MERGE_TEXT);
    INT(PoolMax, PSPAWN_POOL_MAX);
    INT(ModeZygote, PSPAWN_MODE_ZYGOTE);
    INT(ModeRelay, PSPAWN_MODE_RELAY);
    INT(ModeFallback, PSPAWN_MODE_FALLBACK);
    INT(ModeExec, PSPAWN_MODE_EXEC);
    INT(ModeKernel, PSPAWN_MODE_KERNEL);
    INT(KernelAuto, PSPAWN_KERNEL_AUTO);
    INT(KernelRequire, PSPAWN_KERNEL_REQUIRE);
    INT(KernelForbid, PSPAWN_KERNEL_FORBID);
    INT(NumaAuto, PSPAWN_NUMA_AUTO);
    INT(NumaOff, PSPAWN_NUMA_OFF);
    INT(NumaOn, PSPAWN_NUMA_ON);
    INT(NumaMemBind, PSPAWN_NUMA_MEM_BIND);
    INT(NumaMemPreferred, PSPAWN_NUMA_MEM_PREFERRED);
    INT(NumaMemNone, PSPAWN_NUMA_MEM_NONE);
    INT(SpreadRoundRobin, PSPAWN_SPREAD_ROUND_ROBIN);
    INT(SpreadFill, PSPAWN_SPREAD_FILL);
    INT(MaxNodes, PSPAWN_MAX_NODES);
    INT(CpuSetBytes, sizeof(cpu_set_t));
    INT(CpuSetSize, CPU_SETSIZE);
    close_class();

    open_class("NativeLayout", "Sizes and field offsets of pspawn.h's structs, checked against the managed mirrors by StructLayoutTests.");
    SIZE(ContextAttr, pspawn_context_attr_t);
    OFFSET(ContextAttr, Size, pspawn_context_attr_t, size);
    OFFSET(ContextAttr, Flags, pspawn_context_attr_t, flags);
    OFFSET(ContextAttr, Core, pspawn_context_attr_t, core);
    OFFSET(ContextAttr, StartupTimeoutMs, pspawn_context_attr_t, startup_timeout_ms);
    OFFSET(ContextAttr, RequestTimeoutMs, pspawn_context_attr_t, request_timeout_ms);
    OFFSET(ContextAttr, BufferSize, pspawn_context_attr_t, buffer_size);
    OFFSET(ContextAttr, ProxyLibrary, pspawn_context_attr_t, proxy_library);
    OFFSET(ContextAttr, ProxyEnvp, pspawn_context_attr_t, proxy_envp);
    OFFSET(ContextAttr, MaxRestarts, pspawn_context_attr_t, max_restarts);
    OFFSET(ContextAttr, Proxies, pspawn_context_attr_t, proxies);
    OFFSET(ContextAttr, Numa, pspawn_context_attr_t, numa);
    OFFSET(ContextAttr, NumaMemory, pspawn_context_attr_t, numa_memory);
    OFFSET(ContextAttr, NumaSpread, pspawn_context_attr_t, numa_spread);
    OFFSET(ContextAttr, Cgroup, pspawn_context_attr_t, cgroup);
    OFFSET(ContextAttr, Kernel, pspawn_context_attr_t, kernel);
    OFFSET(ContextAttr, Pool, pspawn_context_attr_t, pool);
    OFFSET(ContextAttr, PoolIdleMs, pspawn_context_attr_t, pool_idle_ms);
    SIZE(NumaNode, pspawn_numa_node_t);
    OFFSET(NumaNode, Id, pspawn_numa_node_t, id);
    OFFSET(NumaNode, CpuCount, pspawn_numa_node_t, cpu_count);
    OFFSET(NumaNode, Cpus, pspawn_numa_node_t, cpus);
    OFFSET(NumaNode, MemoryAllowed, pspawn_numa_node_t, memory_allowed);
    OFFSET(NumaNode, Distance, pspawn_numa_node_t, distance);
    SIZE(Instance, pspawn_instance_t);
    OFFSET(Instance, Argv, pspawn_instance_t, argv);
    OFFSET(Instance, Envp, pspawn_instance_t, envp);
    OFFSET(Instance, Cpus, pspawn_instance_t, cpus);
    OFFSET(Instance, CpuSetSize, pspawn_instance_t, cpusetsize);
    close_class();
}

static void emit_system(void)
{
    open_class("Sys", "The C library's constants the managed code passes to it (from its headers, for the build's target).");
    INT(EPERM, EPERM);
    INT(ENOENT, ENOENT);
    INT(ESRCH, ESRCH);
    INT(EINTR, EINTR);
    INT(EIO, EIO);
    INT(E2BIG, E2BIG);
    INT(ENOEXEC, ENOEXEC);
    INT(ECHILD, ECHILD);
    INT(EAGAIN, EAGAIN);
    INT(ENOMEM, ENOMEM);
    INT(EACCES, EACCES);
    INT(ENOTDIR, ENOTDIR);
    INT(EISDIR, EISDIR);
    INT(EINVAL, EINVAL);
    INT(ENFILE, ENFILE);
    INT(EMFILE, EMFILE);
    INT(ENOSYS, ENOSYS);
    INT(ENOTSUP, ENOTSUP);
    INT(ECANCELED, ECANCELED);
    INT(SIGINT, SIGINT);
    INT(SIGKILL, SIGKILL);
    INT(SIGTERM, SIGTERM);
    INT(SIGCHLD, SIGCHLD);
    INT(X_OK, X_OK);
    INT(WNOHANG, WNOHANG);
    INT(WEXITED, WEXITED);
    INT(WNOWAIT, WNOWAIT);
    INT(P_ALL, P_ALL);
    INT(P_PID, P_PID);
    INT(SigInfoSize, sizeof(siginfo_t));
    INT(EPOLL_CLOEXEC, EPOLL_CLOEXEC);
    INT(EPOLL_CTL_ADD, EPOLL_CTL_ADD);
    INT(EPOLL_CTL_DEL, EPOLL_CTL_DEL);
    INT(EPOLL_CTL_MOD, EPOLL_CTL_MOD);
    UINT(EPOLLIN, EPOLLIN);
    UINT(EPOLLOUT, EPOLLOUT);
    UINT(EPOLLONESHOT, EPOLLONESHOT);
    INT(EpollEventSize, sizeof(struct epoll_event));
    INT(EpollEventDataOffset, offsetof(struct epoll_event, data));
    INT(EFD_CLOEXEC, EFD_CLOEXEC);
    INT(F_GETFL, F_GETFL);
    INT(F_SETFL, F_SETFL);
    INT(O_RDONLY, O_RDONLY);
    INT(O_WRONLY, O_WRONLY);
    INT(O_RDWR, O_RDWR);
    INT(O_CREAT, O_CREAT);
    INT(O_EXCL, O_EXCL);
    INT(O_TRUNC, O_TRUNC);
    INT(O_APPEND, O_APPEND);
    INT(O_NONBLOCK, O_NONBLOCK);
    INT(RLIMIT_NOFILE, RLIMIT_NOFILE);
    UINT(S_IFMT, S_IFMT);
    UINT(S_IFDIR, S_IFDIR);
    UINT(S_IFREG, S_IFREG);
    UINT(S_IXUSR, S_IXUSR);
    UINT(S_IXGRP, S_IXGRP);
    UINT(S_IXOTH, S_IXOTH);
    /* struct stat: Interop.Sys.FileStatus places its fields at these offsets. */
    INT(StatSize, sizeof(struct stat));
    INT(Stat_Device, offsetof(struct stat, st_dev));
    INT(Stat_Inode, offsetof(struct stat, st_ino));
    INT(Stat_Mode, offsetof(struct stat, st_mode));
    INT(Stat_Uid, offsetof(struct stat, st_uid));
    INT(Stat_Gid, offsetof(struct stat, st_gid));
    INT(Stat_Size, offsetof(struct stat, st_size));
    INT(Stat_ModifiedSeconds, offsetof(struct stat, st_mtim.tv_sec));
    INT(Stat_ModifiedNanoseconds, offsetof(struct stat, st_mtim.tv_nsec));
    INT(Stat_ChangedSeconds, offsetof(struct stat, st_ctim.tv_sec));
    INT(Stat_ChangedNanoseconds, offsetof(struct stat, st_ctim.tv_nsec));
    emit_short("POLLIN", POLLIN);
    emit_short("POLLOUT", POLLOUT);
    /* Numbers of the calls glibc wraps only from 2.36 on (called through syscall(2)). */
    INT(SYS_pidfd_open, SYS_pidfd_open);
    INT(SYS_pidfd_send_signal, SYS_pidfd_send_signal);
    close_class();
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT.cs\n", argv[0]);
        return 2;
    }
    size_t len = strlen(argv[1]);
    char *tmp = malloc(len + 5);
    if (tmp == NULL) {
        perror("malloc");
        return 1;
    }
    memcpy(tmp, argv[1], len);
    memcpy(tmp + len, ".tmp", 5);
    out = fopen(tmp, "w");
    if (out == NULL) {
        perror(tmp);
        return 1;
    }
    fputs("// <auto-generated>\n"
          "// Written by native/tools/gen_shared_constants.c from native/include/pspawn.h,\n"
          "// native/kernel/uapi/pspawn_syscall.h and the C library's headers. Do not edit:\n"
          "// change the headers, and the build writes this file again.\n"
          "// </auto-generated>\n\n"
          "namespace PSpawn;\n\n"
          "internal static partial class Interop\n{\n",
          out);
    emit_library();
    emit_kernel_abi();
    emit_system();
    fputs("}\n", out);
    bool failed = ferror(out) != 0;
    failed |= fclose(out) != 0;
    if (failed || rename(tmp, argv[1]) != 0) {
        perror(argv[1]);
        remove(tmp);
        return 1;
    }
    free(tmp);
    return 0;
}
