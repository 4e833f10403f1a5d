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

        internal const uint CtxFallback = 0x1;
        internal const uint CtxRelay = 0x2;
        internal const uint CtxNoBindNow = 0x4;

        internal const int ModeZygote = 1;
        internal const int ModeRelay = 2;
        internal const int ModeFallback = 3;

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
        }

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_attr_init")]
        internal static partial int ContextAttrInit(ContextAttr* attr);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_create_ex", SetLastError = true)]
        internal static partial int ContextCreateEx(Context* ctx, byte* path, ContextAttr* attr);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_destroy")]
        internal static partial void ContextDestroy(Context* ctx);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_mode", SetLastError = true)]
        internal static partial int ContextMode(Context* ctx);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_fallback_reason")]
        internal static partial int ContextFallbackReason(Context* ctx);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_context_proxy_pid")]
        internal static partial int ContextProxyPid(Context* ctx);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_ne", SetLastError = true)]
        internal static partial int SpawnNE(int* pids, int* errors, Context* ctx, int nspawns, byte** argv, byte** envp);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_waitpid", SetLastError = true)]
        internal static partial int WaitPid(Context* ctx, int pid, int* wstatus, int options);

        [LibraryImport(LibraryName, EntryPoint = "pspawn_version")]
        internal static partial byte* Version();
    }
}
