using Mono.Unix.Native;
using PSpawn.Tests.Infrastructure;
using Xunit.Abstractions;

namespace PSpawn.Tests;

/// <summary>NUMA placement and cgroup v2 placement (issue 12): topology, proxy nodes, options, cgroup errors and children born in a cgroup.</summary>
public sealed class NumaCgroupTests : IDisposable
{
    private const string Cgroup2Root = "/sys/fs/cgroup/unified";

    private readonly TempDirectory _temp = new();
    private readonly ITestOutputHelper _output;

    public NumaCgroupTests(ITestOutputHelper output) => _output = output;

    public void Dispose() => _temp.Dispose();

    private static async Task<ReportOutput> Report(PSpawnContext context, SpawnOptions options, params string[] arguments)
    {
        using SpawnedProcess process = context.Spawn(arguments, options with { StandardOutput = StdioTarget.Pipe });
        string json = await process.StandardOutputReader.ReadToEndAsync().Within();
        await process.WaitForExitAsync().Within();
        Assert.Equal(0, process.ExitCode);
        return ReportOutput.Parse(json);
    }

    /// <summary>"0-3,5,7-8" as a set.</summary>
    private static HashSet<int> ParseCpuList(string list)
    {
        var cpus = new HashSet<int>();
        foreach (string part in list.Trim().Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] range = part.Split('-');
            int first = int.Parse(range[0], System.Globalization.CultureInfo.InvariantCulture);
            int last = range.Length > 1 ? int.Parse(range[1], System.Globalization.CultureInfo.InvariantCulture) : first;
            for (int cpu = first; cpu <= last; cpu++)
            {
                cpus.Add(cpu);
            }
        }

        return cpus;
    }

    /// <summary>This process's affinity mask within the online CPUs.</summary>
    private static HashSet<int> UsableCpus()
    {
        string allowed = File.ReadLines("/proc/self/status").First(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal))["Cpus_allowed_list:".Length..];
        HashSet<int> cpus = ParseCpuList(allowed);
        cpus.IntersectWith(ParseCpuList(File.ReadAllText("/sys/devices/system/cpu/online")));
        return cpus;
    }

    private static int SysfsNodeCount() =>
        Directory.Exists("/sys/devices/system/node")
            ? Directory.GetDirectories("/sys/devices/system/node", "node*").Count(d => int.TryParse(Path.GetFileName(d)[4..], out _))
            : 1;

    /// <summary>A fresh cgroup v2 directory under the unified mount, or null (with the reason logged) where it cannot be made.</summary>
    private string? MakeTestCgroup()
    {
        if (!File.Exists(Path.Combine(Cgroup2Root, "cgroup.procs")))
        {
            _output.WriteLine($"skipped: no cgroup v2 hierarchy at {Cgroup2Root}");
            return null;
        }

        string path = Path.Combine(Cgroup2Root, $"pspawn-test-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(path);
            return path;
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            _output.WriteLine($"skipped: cgroup v2 at {Cgroup2Root} is not writable here ({e.Message})");
            return null;
        }
    }

    /// <summary>Removes a test cgroup once its processes have left it (exited children are gone from cgroup.procs).</summary>
    private static async Task RemoveTestCgroup(string path)
    {
        await Bounded.Until(() => File.ReadAllText(Path.Combine(path, "cgroup.procs")).Trim().Length == 0, $"{path} to be empty");
        Directory.Delete(path);
    }

    /// <summary>The cgroup v2 path of a process: the "0::" line of /proc/PID/cgroup.</summary>
    private static string Cgroup2Of(int pid) =>
        File.ReadLines($"/proc/{pid}/cgroup").First(l => l.StartsWith("0::", StringComparison.Ordinal))[3..];

    [Fact]
    public void Topology_lists_this_hosts_nodes_with_the_usable_cpus()
    {
        IReadOnlyList<PSpawnNumaNode> nodes = PSpawnTopology.Read();
        _output.WriteLine(string.Join(Environment.NewLine, nodes));

        Assert.Equal(SysfsNodeCount(), nodes.Count);
        Assert.Equal(nodes.Select(n => n.Id).Order(), nodes.Select(n => n.Id));
        HashSet<int> usable = UsableCpus();
        Assert.Equal(usable.Order(), nodes.SelectMany(n => n.Cpus).Order());
        for (int i = 0; i < nodes.Count; i++)
        {
            Assert.Equal(nodes.Count, nodes[i].Distances.Count);
            Assert.Equal(10, nodes[i].Distances[i]);
        }

        if (nodes.Count == 1)
        {
            Assert.Equal(0, nodes[0].Id);
            Assert.True(nodes[0].MemoryAllowed);
        }
    }

    [Fact]
    public void Numa_off_proxies_are_bound_to_no_node()
    {
        using var context = PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { Numa = NumaPlacement.Off, ProxyCount = 2 });
        Assert.Equal(NumaPlacement.Off, context.Options.Numa);
        Assert.Equal(context.ProxyCount, context.ProxyNodes.Count);
        Assert.All(context.ProxyNodes, node => Assert.Equal(-1, node));
    }

    [Fact]
    public async Task Numa_on_binds_every_proxy_to_a_node_and_children_run_on_its_cpus()
    {
        IReadOnlyList<PSpawnNumaNode> nodes = PSpawnTopology.Read();
        var options = new PSpawnContextOptions { Numa = NumaPlacement.On, NumaMemory = NumaMemoryPolicy.Preferred, NumaSpread = NumaSpread.Fill };
        using var context = PSpawnContext.Create(Fixtures.Report, options: options);
        Assert.Equal(options, context.Options);
        IReadOnlyList<int> proxyNodes = context.ProxyNodes;
        Assert.Equal(context.ProxyCount, proxyNodes.Count);
        Assert.True(proxyNodes.Count >= nodes.Count(n => n.Cpus.Count > 0));
        Assert.All(proxyNodes, node => Assert.Contains(node, nodes.Select(n => n.Id)));
        if (nodes.Count == 1)
        {
            Assert.All(proxyNodes, node => Assert.Equal(0, node));
        }

        ReportOutput report = await Report(context, new SpawnOptions { NumaLocalMemory = true });
        HashSet<int> nodeCpus = nodes.SelectMany(n => n.Cpus).ToHashSet();
        Assert.All(report.Numbers("affinity"), cpu => Assert.Contains(cpu, nodeCpus));
    }

    [Fact]
    public void Numa_auto_on_one_node_is_the_plain_layout()
    {
        if (PSpawnTopology.Read().Count(n => n.Cpus.Count > 0) != 1)
        {
            _output.WriteLine("skipped: this host has more than one usable NUMA node");
            return;
        }

        using var context = PSpawnContext.Create(Fixtures.Report);
        Assert.Equal(NumaPlacement.Auto, context.Options.Numa);
        Assert.All(context.ProxyNodes, node => Assert.Equal(-1, node));
    }

    [Fact]
    public void Unknown_enum_values_and_an_empty_cgroup_path_are_argument_errors()
    {
        Assert.Throws<ArgumentException>(() => PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { Numa = (NumaPlacement)7 }));
        Assert.Throws<ArgumentException>(() => PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { NumaMemory = (NumaMemoryPolicy)7 }));
        Assert.Throws<ArgumentException>(() => PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { NumaSpread = (NumaSpread)(-1) }));
        Assert.Throws<ArgumentException>(() => PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { Cgroup = string.Empty }));

        using var context = PSpawnContext.Create(Fixtures.Report);
        Assert.Throws<ArgumentException>(() => context.Spawn([], new SpawnOptions { Cgroup = string.Empty }));
        Assert.Throws<ArgumentException>(() => context.Spawn([], new SpawnOptions { Cgroup = "/sys/fs/cgroup/a\0b" }));
    }

    [Fact]
    public void Cgroup_and_numa_local_memory_leave_the_fast_path()
    {
        Assert.True(new SpawnOptions { Cgroup = "/sys/fs/cgroup/x" }.HasNativeOptions);
        Assert.True(new SpawnOptions { NumaLocalMemory = true }.HasNativeOptions);
    }

    [Fact]
    public async Task A_missing_cgroup_is_a_file_not_found_error_naming_it()
    {
        string missing = Path.Combine(Cgroup2Root, "pspawn-no-such-cgroup-" + Guid.NewGuid().ToString("N"));

        var create = Assert.Throws<PSpawnFileNotFoundException>(() => PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { Cgroup = missing }));
        Assert.Equal(Errno.ENOENT, create.Errno);
        Assert.Equal(missing, create.Path);
        Assert.Contains("cgroup", create.Message, StringComparison.Ordinal);

        using var context = PSpawnContext.Create(Fixtures.Report);
        var spawn = await Assert.ThrowsAsync<PSpawnFileNotFoundException>(() => Bounded.Run(() => context.Spawn([], new SpawnOptions { Cgroup = missing })));
        Assert.Equal(Errno.ENOENT, spawn.Errno);
        Assert.Contains(missing, spawn.Message, StringComparison.Ordinal);
        // Tests of other classes run in parallel and reap their children a moment later: none may stay a zombie.
        await Bounded.Until(() => !LinuxProcesses.Children(Environment.ProcessId).Any(c => c.State == 'Z'), "no zombie children");
    }

    [Fact]
    public void A_cgroup_that_is_a_file_is_not_a_directory()
    {
        string file = _temp.File("not-a-cgroup");
        File.WriteAllText(file, "x");
        var e = Assert.Throws<PSpawnException>(() => PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { Cgroup = file }));
        Assert.Equal(Errno.ENOTDIR, e.Errno);
    }

    [Fact]
    public void A_cgroup_v1_directory_is_not_supported()
    {
        string? v1 = File.ReadLines("/proc/self/mounts").Select(l => l.Split(' ')).Where(f => f.Length > 2 && f[2] == "cgroup").Select(f => f[1]).FirstOrDefault();
        if (v1 is null)
        {
            _output.WriteLine("skipped: no cgroup v1 hierarchy is mounted");
            return;
        }

        var e = Assert.Throws<PSpawnException>(() => PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { Cgroup = v1 }));
        Assert.Equal(Errno.EOPNOTSUPP, e.Errno);
        Assert.Contains("cgroup v2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_child_is_born_in_the_spawns_cgroup()
    {
        string? cgroup = MakeTestCgroup();
        if (cgroup is null)
        {
            return;
        }

        try
        {
            string relative = cgroup[Cgroup2Root.Length..];
            string own = Cgroup2Of(Environment.ProcessId);
            using var context = PSpawnContext.Create(Fixtures.Report);
            using (SpawnedProcess child = context.Spawn(["--report-sleep-ms=5000"], new SpawnOptions { Cgroup = cgroup, StandardOutput = StdioTarget.Null }))
            {
                Assert.Equal(relative, Cgroup2Of(child.Id));
                child.Kill(9);
                await child.WaitForExitAsync().Within();
            }

            // Without the option: this process's cgroup, not the test one.
            using (SpawnedProcess child = context.Spawn(["--report-sleep-ms=5000"], new SpawnOptions { StandardOutput = StdioTarget.Null }))
            {
                Assert.Equal(own, Cgroup2Of(child.Id));
                child.Kill(9);
                await child.WaitForExitAsync().Within();
            }
        }
        finally
        {
            await RemoveTestCgroup(cgroup);
        }
    }

    [Fact]
    public async Task Every_instance_of_a_batch_is_born_in_its_cgroup()
    {
        string? cgroup = MakeTestCgroup();
        if (cgroup is null)
        {
            return;
        }

        try
        {
            string relative = cgroup[Cgroup2Root.Length..];
            using var context = PSpawnContext.Create(Fixtures.Report);
            SpawnInstance[] instances = Enumerable.Range(0, 4).Select(_ => new SpawnInstance(["--report-sleep-ms=5000"])).ToArray();
            SpawnBatchResult result = context.SpawnBatch(instances, new SpawnOptions { Cgroup = cgroup, StandardOutput = StdioTarget.Null });
            try
            {
                Assert.True(result.AllStarted);
                Assert.All(result.Started, child => Assert.Equal(relative, Cgroup2Of(child.Id)));
            }
            finally
            {
                foreach (SpawnedProcess child in result.Started)
                {
                    child.Kill(9);
                }

                await result.Started.ExitAll();
                foreach (SpawnedProcess child in result.Started)
                {
                    child.Dispose();
                }
            }
        }
        finally
        {
            await RemoveTestCgroup(cgroup);
        }
    }

    [Fact]
    public async Task Every_child_of_a_context_with_a_cgroup_is_born_there()
    {
        string? cgroup = MakeTestCgroup();
        if (cgroup is null)
        {
            return;
        }

        try
        {
            string relative = cgroup[Cgroup2Root.Length..];
            using (var context = PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { Cgroup = cgroup }))
            {
                Assert.Equal(cgroup, context.Options.Cgroup);
                IReadOnlyList<SpawnedProcess> children = context.SpawnN(3, ["--report-sleep-ms=5000"], new SpawnOptions { StandardOutput = StdioTarget.Null });
                try
                {
                    Assert.All(children, child => Assert.Equal(relative, Cgroup2Of(child.Id)));
                }
                finally
                {
                    foreach (SpawnedProcess child in children)
                    {
                        child.Kill(9);
                    }

                    await children.ExitAll();
                    foreach (SpawnedProcess child in children)
                    {
                        child.Dispose();
                    }
                }
            }
        }
        finally
        {
            await RemoveTestCgroup(cgroup);
        }
    }

    [Fact]
    public async Task Each_instance_is_born_in_its_own_cgroup_in_a_batch_and_a_session()
    {
        string? a = MakeTestCgroup();
        string? b = a is null ? null : MakeTestCgroup();
        if (a is null || b is null)
        {
            return;
        }

        var started = new List<SpawnedProcess>();
        try
        {
            string own = Cgroup2Of(Environment.ProcessId);
            using var context = PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { ProxyCount = 2 });
            string?[] wanted = [a, null, b, b, a, null];
            SpawnInstance[] instances = wanted.Select(c => new SpawnInstance(["--report-sleep-ms=5000"]) { Cgroup = c }).ToArray();
            var options = new SpawnOptions { StandardOutput = StdioTarget.Null };
            SpawnBatchResult batch = context.SpawnBatch(instances, options);
            started.AddRange(batch.Started);
            SpawnBatchResult session = await context.StartBatch(instances, options).Completion.Within();
            started.AddRange(session.Started);
            foreach (SpawnBatchResult result in new[] { batch, session })
            {
                Assert.True(result.AllStarted);
                for (int i = 0; i < wanted.Length; i++)
                {
                    string expected = wanted[i] is string cgroup ? cgroup[Cgroup2Root.Length..] : own;
                    Assert.Equal(expected, Cgroup2Of(result.Started[i].Id));
                }
            }

            // A missing instance cgroup fails the batch before anything is spawned, naming that cgroup.
            string missing = a + "-absent";
            var e = Assert.Throws<PSpawnFileNotFoundException>(() => context.SpawnBatch([instances[0], new SpawnInstance { Cgroup = missing }], options));
            Assert.Equal(missing, e.Path);
            Assert.Throws<ArgumentException>(() => context.SpawnBatch([new SpawnInstance { Cgroup = string.Empty }], options));
        }
        finally
        {
            foreach (SpawnedProcess child in started)
            {
                child.Kill(9);
            }

            await started.ExitAll();
            foreach (SpawnedProcess child in started)
            {
                child.Dispose();
            }

            await RemoveTestCgroup(a);
            await RemoveTestCgroup(b);
        }
    }

    [Fact]
    public async Task Numa_replicas_are_reported_used_and_removed_on_dispose()
    {
        string root;
        using (var context = PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { Numa = NumaPlacement.On, NumaReplicas = true }))
        {
            Assert.True(context.Options.NumaReplicas);
            Assert.All(context.ProxyNodes, node => Assert.True(node >= 0));
            Assert.True(context.ReplicaBytes > new FileInfo(Fixtures.Report).Length);
            using SpawnedProcess child = context.Spawn(["--report-sleep-ms=5000"], new SpawnOptions { StandardOutput = StdioTarget.Null });
            string exe = new FileInfo($"/proc/{child.Id}/exe").LinkTarget!;
            Assert.Contains("/pspawn-replicas-", exe, StringComparison.Ordinal);
            Assert.Equal(Path.GetFileName(Fixtures.Report), Path.GetFileName(exe));
            root = Path.GetDirectoryName(Path.GetDirectoryName(exe))!;
            Assert.True(Directory.Exists(root));
            child.Kill(9);
            await child.WaitForExitAsync().Within();
        }

        Assert.False(Directory.Exists(root));
        using var plain = PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { Numa = NumaPlacement.Off, NumaReplicas = true });
        Assert.Equal(0, plain.ReplicaBytes);
    }
}
