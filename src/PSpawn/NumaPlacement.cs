namespace PSpawn;

/// <summary>Whether a context places its proxies per NUMA node (<see cref="PSpawnContextOptions.Numa"/>).</summary>
public enum NumaPlacement
{
    /// <summary>
    /// Per-node proxies when this process may use CPUs of two or more nodes (its affinity mask, the online CPUs and its
    /// cgroup's cpuset); otherwise the plain layout (<see cref="Off"/>). The default.
    /// </summary>
    Auto = 0,

    /// <summary>Per-node proxies even on a machine (or a cpuset) with one node.</summary>
    On = 1,

    /// <summary>
    /// The plain layout: <see cref="PSpawnContextOptions.ProxyCount"/> proxies over the usable CPUs, bound to no node
    /// (<see cref="PSpawnContext.ProxyNodes"/> reports -1 for each).
    /// </summary>
    Off = 2,
}

/// <summary>The memory policy of per-node proxies (<see cref="PSpawnContextOptions.NumaMemory"/>).</summary>
public enum NumaMemoryPolicy
{
    /// <summary>Bind the proxy's memory to its node (MPOL_BIND). The default.</summary>
    Bind = 0,

    /// <summary>Prefer the proxy's node, falling back to others when it is full (MPOL_PREFERRED).</summary>
    Preferred = 1,

    /// <summary>Set no memory policy; proxies are only pinned to their node's CPUs.</summary>
    None = 2,
}

/// <summary>How instances without a CPU set are spread over the nodes of per-node proxies (<see cref="PSpawnContextOptions.NumaSpread"/>).</summary>
public enum NumaSpread
{
    /// <summary>Instance k of a call on node k % nodes, each call continuing where the last one stopped. The default.</summary>
    RoundRobin = 0,

    /// <summary>A node takes as many consecutive instances as it has usable CPUs, then the next node.</summary>
    Fill = 1,
}
