using System.Runtime.InteropServices;

namespace PSpawn;

/// <summary>P/Invoke declarations, kept apart from the logic that uses them.</summary>
internal static partial class Interop
{
    /// <summary>libpspawn.so: the launcher side of the native core (see native/include/pspawn.h).</summary>
    internal static unsafe partial class PSpawnCore
    {
        /// <summary>The name the resolver (<see cref="NativeLibraryResolver"/>) maps to libpspawn.so.</summary>
        internal const string LibraryName = "pspawn";

        // The constants of pspawn.h are in SharedConstants.g.cs, written by the build from the header.

        /// <summary>pspawn_context_t: one pointer, treated as opaque; allocated in native memory so its address is stable.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Context
        {
            public IntPtr Impl;
        }

        /// <summary>pspawn_context_attr_t.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct ContextAttr
        {
            public nuint Size;
            public uint Flags;
            public int Core;
            public int StartupTimeoutMs;
            public int RequestTimeoutMs;
            public nuint BufferSize;
            public byte* ProxyLibrary;
            public byte** ProxyEnvp;
            public int MaxRestarts;
            public int Proxies;
            // NUMA and cgroup fields (issue 12): PSpawnContextOptions.Numa, NumaMemory, NumaSpread, Cgroup.
            public int Numa;
            public int NumaMemory;
            public int NumaSpread;
            public byte* Cgroup;
            // pspawn_context_attr_t.kernel (issue 11, PSPAWN_KERNEL_*): left at attr_init's default, AUTO. It must be
            // here: pspawn_context_attr_init writes the whole C struct.
            public int Kernel;
            // Warm pool (issue 14): PSpawnContextOptions.WarmPool.
            public int Pool;
            public int PoolIdleMs;
        }

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_pool_pids", SetLastError = true)]
        internal static partial int ContextPoolPids(Context* ctx, int* pids, int capacity);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_pool_claims", SetLastError = true)]
        internal static partial nint ContextPoolClaims(Context* ctx);

        /// <summary>pspawn_numa_node_t.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct NumaNode
        {
            public int Id;
            public int CpuCount;
            public fixed byte Cpus[CpuSetBytes];
            public int MemoryAllowed;
            public fixed byte Distance[MaxNodes];
        }

        [LibraryImport(LibraryName, EntryPoint = "pspawn_numa_topology", SetLastError = true)]
        internal static partial int NumaTopology(NumaNode* nodes, int capacity);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_proxy_nodes", SetLastError = true)]
        internal static partial int ContextProxyNodes(Context* ctx, int* nodes, int capacity);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_set_numa_local", SetLastError = true)]
        internal static partial int AttrSetNumaLocal(IntPtr attr, int on);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_set_cgroup", SetLastError = true)]
        internal static partial int AttrSetCgroup(IntPtr attr, byte* path);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_replica_bytes", SetLastError = true)]
        internal static partial long ContextReplicaBytes(Context* ctx);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_set_cgroup_per_instance", SetLastError = true)]
        internal static partial int AttrSetCgroupPerInstance(IntPtr attr, byte** paths, int count);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_attr_init")]
        internal static partial int ContextAttrInit(ContextAttr* attr);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_create_ex", SetLastError = true)]
        internal static partial int ContextCreateEx(Context* ctx, byte* path, ContextAttr* attr);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_destroy")]
        internal static partial void ContextDestroy(Context* ctx);

        /// <summary>pspawn_request_mode: the mode that serves a request with these attributes (PSPAWN_MODE_KERNEL when the kernel backend takes it).</summary>
        [LibraryImport(LibraryName, EntryPoint = "pspawn_request_mode", SetLastError = true)]
        internal static partial int RequestMode(Context* ctx, IntPtr attr);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_mode", SetLastError = true)]
        internal static partial int ContextMode(Context* ctx);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_fallback_reason")]
        internal static partial int ContextFallbackReason(Context* ctx);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_proxy_pid")]
        internal static partial int ContextProxyPid(Context* ctx);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_proxy_count")]
        internal static partial int ContextProxyCount(Context* ctx);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_restarts")]
        internal static partial int ContextRestarts(Context* ctx);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_ne", SetLastError = true)]
        internal static partial int SpawnNE(int* pids, int* errors, Context* ctx, int nspawns, byte** argv, byte** envp);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_nx", SetLastError = true)]
        internal static partial int SpawnNX(int* pids, int* errors, int* stdioFds, Context* ctx, int nspawns, byte** argv, byte** envp, IntPtr attr);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_create", SetLastError = true)]
        internal static partial int AttrCreate(IntPtr* attr);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_destroy")]
        internal static partial void AttrDestroy(IntPtr attr);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_stdio_inherit", SetLastError = true)]
        internal static partial int AttrStdioInherit(IntPtr attr, int fd);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_stdio_null", SetLastError = true)]
        internal static partial int AttrStdioNull(IntPtr attr, int fd);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_stdio_file", SetLastError = true)]
        internal static partial int AttrStdioFile(IntPtr attr, int fd, byte* path, int oflags, uint mode);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_stdio_fd", SetLastError = true)]
        internal static partial int AttrStdioFd(IntPtr attr, int fd, int callerFd);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_stdio_pipe", SetLastError = true)]
        internal static partial int AttrStdioPipe(IntPtr attr, int fd);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_set_cwd", SetLastError = true)]
        internal static partial int AttrSetCwd(IntPtr attr, byte* dir);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_set_umask", SetLastError = true)]
        internal static partial int AttrSetUmask(IntPtr attr, uint mask);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_set_process_group", SetLastError = true)]
        internal static partial int AttrSetProcessGroup(IntPtr attr, int pgid);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_set_new_session", SetLastError = true)]
        internal static partial int AttrSetNewSession(IntPtr attr);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_add_rlimit", SetLastError = true)]
        internal static partial int AttrAddRlimit(IntPtr attr, int resource, ulong soft, ulong hard);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_set_parent_death_signal", SetLastError = true)]
        internal static partial int AttrSetParentDeathSignal(IntPtr attr, int signal);

        /// <summary>pspawn_attr_set_cpus; <paramref name="set"/> is one cpu_set_t (<see cref="CpuSetBytes"/> bytes).</summary>
        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_set_cpus", SetLastError = true)]
        internal static partial int AttrSetCpus(IntPtr attr, byte* set);

        /// <summary>pspawn_attr_set_cpus_per_instance; <paramref name="sets"/> is <paramref name="count"/> cpu_set_t.</summary>
        [LibraryImport(LibraryName, EntryPoint = "pspawn_attr_set_cpus_per_instance", SetLastError = true)]
        internal static partial int AttrSetCpusPerInstance(IntPtr attr, byte* sets, int count);

        /// <summary>pspawn_instance_t: one instance of a vector spawn.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Instance
        {
            public byte** Argv;
            public byte** Envp;
            public byte* Cpus;
            public nuint CpuSetSize;
        }

        [LibraryImport(LibraryName, EntryPoint = "pspawn_vector", SetLastError = true)]
        internal static partial int Vector(int* pids, int* errors, Context* ctx, Instance* instances, int n, IntPtr attr);

        /// <summary>pspawn_vector_async; <paramref name="session"/> receives a pspawn_session_t*.</summary>
        [LibraryImport(LibraryName, EntryPoint = "pspawn_vector_async", SetLastError = true)]
        internal static partial int VectorAsync(IntPtr* session, Context* ctx, Instance* instances, int n, IntPtr attr);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_session_fd", SetLastError = true)]
        internal static partial int SessionFd(IntPtr session);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_session_wait", SetLastError = true)]
        internal static partial int SessionWait(IntPtr session, int timeoutMs);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_session_results", SetLastError = true)]
        internal static partial int SessionResults(IntPtr session, int* pids, int* errors);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_session_cancel")]
        internal static partial void SessionCancel(IntPtr session);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_session_free")]
        internal static partial void SessionFree(IntPtr session);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_waitpid", SetLastError = true)]
        internal static partial int WaitPid(Context* ctx, int pid, int* wstatus, int options);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_version")]
        internal static partial byte* Version();
    }
}
