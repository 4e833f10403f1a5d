namespace PSpawn;

/// <summary>Whether a <see cref="PSpawnContext"/> uses the kernel's pspawn/ipspawn system calls (<see cref="PSpawnKernel"/>).</summary>
public enum KernelPath
{
    /// <summary>
    /// Use the system calls when <see cref="PSpawnKernel.IsAvailable"/> for every request they can express (no per-spawn
    /// option beyond arguments, environment and CPUs); everything else goes to a zygote, created on first need. When the
    /// kernel has no system calls, the context is what it would be without them.
    /// </summary>
    Auto = 0,

    /// <summary>
    /// Always use the system calls: <see cref="PSpawnContext.Create"/> throws <see cref="PSpawnKernelPathException"/>
    /// (<c>ENOSYS</c>) when they are not available, and a request they cannot express throws it (<c>EOPNOTSUPP</c>).
    /// </summary>
    Require = 1,

    /// <summary>Never use them (the zygote and the other native backends only).</summary>
    Forbid = 2,
}
