namespace PSpawn;

/// <summary>Which backend served a request (<see cref="SpawnBatchResult.Backend"/>).</summary>
public enum SpawnBackend
{
    /// <summary>The zygote proxies forked the children as children of this process (<see cref="PSpawnMode.Zygote"/>).</summary>
    Zygote = 1,

    /// <summary>The zygote proxies forked the children and stay their parents (<see cref="PSpawnMode.Relay"/>).</summary>
    Relay = 2,

    /// <summary>The native exec backend started each child with a fresh exec (<see cref="PSpawnMode.Fallback"/>).</summary>
    Exec = 3,

    /// <summary>The kernel's ipspawn system call started the children (<see cref="PSpawnMode.Kernel"/>, <see cref="KernelPath"/>).</summary>
    Kernel = 4,
}
