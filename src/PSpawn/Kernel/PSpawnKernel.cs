namespace PSpawn;

/// <summary>
/// The kernel path: Linux's <c>pspawn</c>/<c>ipspawn</c> vector system calls (native/kernel/, a patch for Linux 6.1),
/// which a <see cref="PSpawnContext"/> calls directly, without the native library, when
/// <see cref="PSpawnContextOptions.KernelPath"/> allows it.
/// </summary>
public static class PSpawnKernel
{
    /// <summary>
    /// Whether the running kernel has the system calls: <c>/sys/kernel/pspawn/</c> exists, its ABI version is one this
    /// library speaks, and both numbers it names answer as pspawn and ipspawn. Detected once per process; never throws.
    /// </summary>
    public static bool IsAvailable => KernelDetection.Current.Available;

    /// <summary>The kernel's ABI version (<c>/sys/kernel/pspawn/abi_version</c>), or 0 when <see cref="IsAvailable"/> is false.</summary>
    public static int AbiVersion => KernelDetection.Current.AbiVersion;

    /// <summary>Why the kernel path is not available (for logs and error messages), or null when it is.</summary>
    public static string? UnavailableReason => KernelDetection.Current.Reason;
}
