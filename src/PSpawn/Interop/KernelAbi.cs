using System.Runtime.InteropServices;

namespace PSpawn;

internal static partial class Interop
{
    /// <summary>
    /// The managed mirror of the kernel ABI's argument block; the constants of native/kernel/uapi/pspawn_syscall.h are
    /// generated into the other half of this class (SharedConstants.g.cs), and StructLayoutTests checks this layout
    /// against the header's.
    /// </summary>
    internal static partial class KernelAbi
    {
        /// <summary>struct pspawn_args (pointers as 64-bit user addresses).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct Args
        {
            public ulong Filename;
            public ulong Argv;
            public ulong Envp;
            public ulong Cpumasks;
            public ulong Pids;
            public ulong Flags;
            public uint Nspawns;
            public uint CpumaskSize;
        }
    }
}
