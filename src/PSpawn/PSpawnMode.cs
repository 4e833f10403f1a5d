namespace PSpawn;

/// <summary>How a <see cref="PSpawnContext"/> spawns its processes.</summary>
public enum PSpawnMode
{
    /// <summary>The proxy forks each child so that it is a child of this process (CLONE_PARENT), as after fork and exec.</summary>
    Zygote = 1,

    /// <summary>
    /// The proxy forks each child and stays its parent, relaying its exit status. Used when this process is
    /// PID 1 or ignores SIGCHLD (where zygote children could be reaped by others), or when
    /// <see cref="PSpawnContextOptions.ForceRelayMode"/> asks for it.
    /// </summary>
    Relay = 2,

    /// <summary>No zygote: each child is started with posix_spawn (see <see cref="FallbackPolicy.PosixSpawn"/>).</summary>
    Fallback = 3,

    /// <summary>
    /// The kernel's pspawn/ipspawn system calls serve every request they can express (<see cref="PSpawnContextOptions.KernelPath"/>);
    /// no proxy runs until a request needs one (then <see cref="SpawnBatchResult.Backend"/> names the zygote's mode).
    /// </summary>
    Kernel = 4,
}
