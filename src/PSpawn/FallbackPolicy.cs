namespace PSpawn;

/// <summary>What <see cref="PSpawnContext.Create"/> does when a zygote cannot serve the executable.</summary>
public enum FallbackPolicy
{
    /// <summary>Throw (a <see cref="PSpawnUnsupportedExecutableException"/> or <see cref="PSpawnProxyException"/>).</summary>
    Throw = 0,

    /// <summary>
    /// Create the context anyway in <see cref="PSpawnMode.Fallback"/> mode, spawning each child with posix_spawn,
    /// and log why (<see cref="PSpawnContext.FallbackReason"/>). Applies to statically linked and set-user-ID or
    /// set-group-ID executables, executables whose constructors start threads or that do not start through
    /// <c>__libc_start_main</c> (their own <c>_start</c>), and proxies that die or time out
    /// during start-up; a missing, non-executable or non-ELF file still throws.
    /// </summary>
    PosixSpawn = 1,
}
