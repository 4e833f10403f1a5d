using System.Runtime.InteropServices;

namespace PSpawn;

/// <summary>
/// The pspawn/ipspawn system-call ABI of native/kernel/uapi/pspawn_syscall.h: the one place in .NET where its
/// constants and its argument block appear (keep in step with that header; the kernel reads it verbatim).
/// </summary>
internal static class KernelAbi
{
    /// <summary>PSPAWN_ABI_VERSION: the version this code speaks; a kernel reporting less is not used.</summary>
    public const int AbiVersion = 1;

    /// <summary>PSPAWN_SYSFS_DIR: where the running kernel exports the numbers (below $PSPAWN_SYSFS_ROOT in tests).</summary>
    public const string SysfsDirectory = "/sys/kernel/pspawn";

    /// <summary>PSPAWN_ARGS_SIZE_VER0: sizeof the first published struct pspawn_args.</summary>
    public const int ArgsSizeVer0 = 56;

    public const ulong SharedArgv = 1UL << 0;
    public const ulong SharedEnvp = 1UL << 1;
    public const ulong SharedCpumask = 1UL << 2;
    public const ulong SessionNonblock = 1UL << 3;

    /// <summary>PSPAWN_MAX_SPAWNS: instances per call.</summary>
    public const int MaxSpawns = 8192;

    /// <summary>PSPAWN_MAX_CPUMASK_SIZE: bytes per CPU mask.</summary>
    public const int MaxCpumaskSize = 4096;

    /// <summary>PSPAWN_MAX_TOTAL_BYTES: strings and pointers copied per call, all instances together.</summary>
    public const long MaxTotalBytes = 32L << 20;

    /// <summary>PSPAWN_MAX_INSTANCE_BYTES: strings and pointers of one instance.</summary>
    public const long MaxInstanceBytes = 6L << 20;

    /// <summary>sizeof(pspawn_result_t): each instance's pid (&gt; 0) or -errno, as read from a session.</summary>
    public const int ResultSize = sizeof(int);

    /// <summary>struct pspawn_args (pointers as 64-bit user addresses).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Args
    {
        public ulong Filename;
        public ulong Argv;
        public ulong Envp;
        public ulong Cpumasks;
        public ulong Pids;
        public ulong Flags;
        public uint NSpawns;
        public uint CpumaskSize;
    }
}
