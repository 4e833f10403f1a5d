namespace PSpawn;

/// <summary>What the proxies report: their process ids and count, restarts, the warm pool, library replicas and NUMA nodes.</summary>
public sealed partial class PSpawnContext
{
    /// <summary>The proxy's process ID; null in <see cref="PSpawnMode.Fallback"/> mode, once the proxy has failed, or after <see cref="Dispose"/>.</summary>
    public unsafe int? ProxyProcessId => Volatile.Read(ref _disposed) != 0 ? null : ReadNative<int?>(
        handle =>
        {
            int pid = Interop.PSpawnCore.ContextProxyPid(handle.Pointer);
            return pid > 0 ? pid : null;
        },
        null);

    /// <summary>
    /// How many times a dead proxy has been restarted (by the spawn after its death; at most
    /// <see cref="PSpawnContextOptions.MaxRestarts"/>). Always 0 in <see cref="PSpawnMode.Fallback"/> mode; after
    /// <see cref="Dispose"/>, the last count seen.
    /// </summary>
    public unsafe int RestartCount =>
        ReadNative(handle => Math.Max(Volatile.Read(ref _restarts), Interop.PSpawnCore.ContextRestarts(handle.Pointer)), Volatile.Read(ref _restarts));

    /// <summary>
    /// How many proxies serve this context (<see cref="PSpawnContextOptions.ProxyCount"/>, or the native default); a batch is
    /// fanned out to all of them. 0 in <see cref="PSpawnMode.Fallback"/> mode and after <see cref="Dispose"/>.
    /// </summary>
    public unsafe int ProxyCount =>
        ReadNative(handle => Interop.PSpawnCore.ContextProxyCount(handle.Pointer), 0);

    /// <summary>How many instances the warm pool's parked children have served so far (the rest were forked); 0 without a pool and after <see cref="Dispose"/>.</summary>
    public unsafe long PoolClaimCount =>
        ReadNative(handle => Math.Max(0, (long)Interop.PSpawnCore.ContextPoolClaims(handle.Pointer)), 0L);

    /// <summary>
    /// The process ids of the warm pool's children parked right now, over all proxies (<see cref="PSpawnContextOptions.WarmPool"/>):
    /// children of this process that have not reached <c>main</c> and are never reported as spawned until a spawn claims them.
    /// Parked children that died are reaped by this call, as by every spawn. Empty without a pool and after <see cref="Dispose"/>.
    /// </summary>
    public unsafe IReadOnlyList<int> ParkedProcessIds => ReadNative<IReadOnlyList<int>>(
        handle =>
        {
            int[] pids = new int[Interop.PSpawnCore.PoolMax * Math.Max(1, Interop.PSpawnCore.ContextProxyCount(handle.Pointer))];
            fixed (int* p = pids)
            {
                int n = Interop.PSpawnCore.ContextPoolPids(handle.Pointer, p, pids.Length);
                return n <= 0 ? Array.Empty<int>() : pids.AsSpan(0, Math.Min(n, pids.Length)).ToArray();
            }
        },
        Array.Empty<int>());

    /// <summary>
    /// Bytes of library replicas written for this context (<see cref="PSpawnContextOptions.NumaReplicas"/>), over every node: their
    /// disk use under <c>$TMPDIR</c> (memory, where that is a tmpfs) and at most their page cache. 0 without replicas or after
    /// <see cref="Dispose"/>.
    /// </summary>
    public unsafe long ReplicaBytes =>
        ReadNative(handle => Math.Max(0, Interop.PSpawnCore.ContextReplicaBytes(handle.Pointer)), 0L);

    /// <summary>
    /// The NUMA node each proxy is bound to, in creation order (see <see cref="PSpawnContextOptions.Numa"/>); -1 for a proxy bound
    /// to no node (<see cref="NumaPlacement.Off"/>, or a single-node machine under <see cref="NumaPlacement.Auto"/>). Empty in
    /// <see cref="PSpawnMode.Fallback"/> mode and after <see cref="Dispose"/>.
    /// </summary>
    public unsafe IReadOnlyList<int> ProxyNodes => ReadNative<IReadOnlyList<int>>(
        handle =>
        {
            int count = Interop.PSpawnCore.ContextProxyNodes(handle.Pointer, null, 0);
            if (count <= 0)
            {
                return [];
            }

            int[] nodes = new int[count];
            fixed (int* pointer = nodes)
            {
                count = Interop.PSpawnCore.ContextProxyNodes(handle.Pointer, pointer, nodes.Length);
            }

            return count <= 0 ? [] : Array.AsReadOnly(nodes[..Math.Min(count, nodes.Length)]);
        },
        []);
}
