using System.Collections.ObjectModel;
using System.Runtime.InteropServices;
using Mono.Unix.Native;

namespace PSpawn;

/// <summary>One NUMA node as this process may use it (see <see cref="PSpawnTopology.Read"/>).</summary>
public sealed class PSpawnNumaNode
{
    internal PSpawnNumaNode(int id, IReadOnlySet<int> cpus, bool memoryAllowed, IReadOnlyList<int> distances)
    {
        Id = id;
        Cpus = cpus;
        MemoryAllowed = memoryAllowed;
        Distances = distances;
    }

    /// <summary>The node's number: N of <c>/sys/devices/system/node/nodeN</c>.</summary>
    public int Id { get; }

    /// <summary>The node's CPUs this process may use (its affinity mask, online CPUs, its cgroup's cpuset); may be empty.</summary>
    public IReadOnlySet<int> Cpus { get; }

    /// <summary>False when this process's cpuset excludes the node's memory.</summary>
    public bool MemoryAllowed { get; }

    /// <summary>
    /// The SLIT distance from this node to each node of the list <see cref="PSpawnTopology.Read"/> returned, by index in
    /// that list (10: local).
    /// </summary>
    public IReadOnlyList<int> Distances { get; }

    /// <inheritdoc/>
    public override string ToString() =>
        $"node {Id}: {Cpus.Count} CPUs [{string.Join(',', Cpus.Order())}], distances [{string.Join(',', Distances)}]{(MemoryAllowed ? string.Empty : ", memory excluded")}";
}

/// <summary>The machine's NUMA topology as the native core sees it (pspawn_numa_topology).</summary>
public static class PSpawnTopology
{
    /// <summary>
    /// Reads the NUMA nodes from sysfs, each limited to what this process may use: its affinity mask, the online CPUs and
    /// its cgroup's cpuset. A kernel without NUMA reports one node 0. Read anew on each call.
    /// </summary>
    /// <returns>The nodes, in id order.</returns>
    /// <exception cref="PSpawnException">sysfs could not be read or parsed (<see cref="IPSpawnError.Errno"/> says why).</exception>
    public static unsafe IReadOnlyList<PSpawnNumaNode> Read()
    {
        NativeLibraryResolver.EnsureRegistered();
        var nodes = new Interop.PSpawnCore.NumaNode[Interop.PSpawnCore.MaxNodes];
        int count;
        fixed (Interop.PSpawnCore.NumaNode* pointer = nodes)
        {
            count = Interop.PSpawnCore.NumaTopology(pointer, nodes.Length);
        }

        if (count < 0)
        {
            Errno e = ErrorMapper.ToErrno(Marshal.GetLastPInvokeError());
            throw new PSpawnException($"Cannot read the NUMA topology from sysfs: {ErrorMapper.Describe(e)}.", e, null);
        }

        count = Math.Min(count, nodes.Length);
        var result = new PSpawnNumaNode[count];
        for (int i = 0; i < count; i++)
        {
            ref Interop.PSpawnCore.NumaNode node = ref nodes[i];
            var cpus = new HashSet<int>();
            var distances = new int[count];
            fixed (byte* set = node.Cpus)
            fixed (byte* distance = node.Distance)
            {
                for (int cpu = 0; cpu < Interop.PSpawnCore.CpuSetSize; cpu++)
                {
                    if ((set[cpu / 8] & (1 << (cpu % 8))) != 0)
                    {
                        cpus.Add(cpu);
                    }
                }

                for (int j = 0; j < count; j++)
                {
                    distances[j] = distance[j];
                }
            }

            result[i] = new PSpawnNumaNode(node.Id, new ReadOnlySet<int>(cpus), node.MemoryAllowed != 0, new ReadOnlyCollection<int>(distances));
        }

        return new ReadOnlyCollection<PSpawnNumaNode>(result);
    }
}
