using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

/// <summary>Counts fds and zombies of the whole test process, so nothing else may run meanwhile.</summary>
[CollectionDefinition(nameof(LeakTests), DisableParallelization = true)]
public sealed class LeakTestsCollection
{
}

[Collection(nameof(LeakTests))]
public sealed class LeakTests
{
    private static async Task WarmUp()
    {
        // First use opens the exit watcher's epoll fd and loads the native libraries.
        using var context = PSpawnContext.Create(Fixtures.Noop);
        await context.SpawnN(2, []).ExitAll();
    }

    [Fact]
    public async Task No_leaked_fds_and_no_zombies_after_1000_spawns()
    {
        await WarmUp();
        int fdsBefore = LinuxProcesses.OpenFdCount();

        using (var context = PSpawnContext.Create(Fixtures.Noop))
        {
            var processes = new List<SpawnedProcess>();
            for (int i = 0; i < 500; i++)
            {
                processes.Add(context.Spawn([i.ToString(System.Globalization.CultureInfo.InvariantCulture)]));
            }

            for (int i = 0; i < 5; i++)
            {
                processes.AddRange(context.SpawnN(100, ["batch"]));
            }

            Assert.Equal(1000, processes.Count);
            await processes.ExitAll(TimeSpan.FromMinutes(3));
            Assert.All(processes, p => Assert.Equal(0, p.ExitCode));
            foreach (SpawnedProcess process in processes)
            {
                process.Dispose();
            }

            Assert.Empty(LinuxProcesses.Zombies());
        }

        int fdsAfter = LinuxProcesses.OpenFdCount();
        Assert.True(fdsAfter <= fdsBefore + 2, $"fds before: {fdsBefore}, after 1000 spawns: {fdsAfter}");
        Assert.Empty(LinuxProcesses.Zombies());
    }

    /// <summary>
    /// PSpawn's own threads: the managed ones ("PSpawn exit watcher", ...; the kernel keeps 15 characters) and the
    /// native core's ("pspawn session", "pspawn exec"). Other tests run in parallel in this process, so only these
    /// say whether sessions cost threads.
    /// </summary>
    internal static int PSpawnThreadCount() => Directory.GetDirectories("/proc/self/task").Count(task =>
    {
        try
        {
            return File.ReadAllText(Path.Combine(task, "comm")).StartsWith("pspawn", StringComparison.OrdinalIgnoreCase);
        }
        catch (IOException)
        {
            return false; // the thread ended while we looked
        }
    });

    [Fact]
    public async Task No_descriptor_thread_or_zombie_left_after_5000_batch_instances()
    {
        await WarmUp();
        using (var warm = PSpawnContext.Create(Fixtures.Noop))
        {
            await (await warm.StartBatch([new SpawnInstance(), new SpawnInstance()])).Started.ExitAll();
        }

        int fdsBefore = LinuxProcesses.OpenFdCount();
        int threadsBefore = PSpawnThreadCount();
        int threadsAfter10 = 0;
        int maxThreads = 0;
        using (var context = PSpawnContext.Create(Fixtures.Noop))
        {
            // 50 rounds of 100 instances: 25 synchronous batches and 25 async sessions (each several native sessions).
            for (int round = 0; round < 50; round++)
            {
                SpawnInstance[] instances = Enumerable.Range(0, 100)
                    .Select(i => new SpawnInstance([round.ToString(System.Globalization.CultureInfo.InvariantCulture)])
                    {
                        Environment = new Dictionary<string, string?> { ["RANK"] = i.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                    })
                    .ToArray();
                SpawnBatchResult result = round % 2 == 0 ? context.SpawnBatch(instances) : await context.StartBatch(instances);
                Assert.True(result.AllStarted, result.ToString());
                maxThreads = Math.Max(maxThreads, PSpawnThreadCount());
                await result.Started.ExitAll(TimeSpan.FromMinutes(2));
                Assert.All(result.Started, p => Assert.Equal(0, p.ExitCode));
                foreach (SpawnedProcess process in result.Started)
                {
                    process.Dispose();
                }

                if (round == 9)
                {
                    threadsAfter10 = PSpawnThreadCount();
                }
            }

            Assert.Empty(LinuxProcesses.Zombies());
        }

        int fdsAfter = LinuxProcesses.OpenFdCount();
        int threadsAfter = PSpawnThreadCount();
        Assert.True(fdsAfter <= fdsBefore + 2, $"fds before: {fdsBefore}, after 5000 batch instances: {fdsAfter}");
        // A thread per session would add 25 or more. Native session threads live only while their part is in flight
        // (two parts per proxy), so PSpawn's threads do not grow from round 10 to round 50.
        Assert.True(threadsAfter <= threadsAfter10, $"PSpawn threads after 10 rounds: {threadsAfter10}, after 50: {threadsAfter}");
        Assert.True(maxThreads <= threadsBefore + 8, $"PSpawn threads before: {threadsBefore}, at most {maxThreads} during 50 rounds");
        Assert.Empty(LinuxProcesses.Zombies());
    }

    [Fact]
    public async Task No_leaked_fds_over_10000_spawns_with_pipes()
    {
        await WarmUp();
        var options = new SpawnOptions { StandardInput = StdioTarget.Pipe, StandardOutput = StdioTarget.Pipe, StandardError = StdioTarget.Pipe };
        using (var context = PSpawnContext.Create(Fixtures.Noop))
        {
            // One warm-up batch with pipes, then measure.
            foreach (SpawnedProcess process in context.SpawnN(10, [], options))
            {
                using (process)
                {
                    await process.ReadOutputToEndAsync().Within();
                }
            }

            int fdsBefore = LinuxProcesses.OpenFdCount();
            long memoryBefore = GC.GetTotalMemory(forceFullCollection: true);
            for (int batch = 0; batch < 100; batch++)
            {
                IReadOnlyList<SpawnedProcess> processes = context.SpawnN(100, [], options);
                foreach (SpawnedProcess process in processes)
                {
                    process.StandardInput.Dispose();
                }

                await Task.WhenAll(processes.Select(p => p.ReadOutputToEndAsync())).Within();
                await processes.ExitAll();
                foreach (SpawnedProcess process in processes)
                {
                    Assert.Equal(0, process.ExitCode);
                    process.Dispose();
                }
            }

            int fdsAfter = LinuxProcesses.OpenFdCount();
            long memoryAfter = GC.GetTotalMemory(forceFullCollection: true);
            Assert.True(fdsAfter <= fdsBefore + 2, $"fds before: {fdsBefore}, after 10,000 spawns with pipes: {fdsAfter}");
            Assert.True(memoryAfter < memoryBefore + (16 << 20), $"managed memory before: {memoryBefore}, after: {memoryAfter}");
            Assert.Empty(LinuxProcesses.Zombies());
        }
    }

    [Fact]
    public async Task No_zombies_when_nobody_waits()
    {
        await WarmUp();
        using var context = PSpawnContext.Create(Fixtures.Noop);
        IReadOnlyList<SpawnedProcess> processes = context.SpawnN(200, []);
        var pids = processes.Select(p => p.Id).ToHashSet();

        // Nobody waits: the exit watcher reaps them anyway.
        await Bounded.Until(
            () => !LinuxProcesses.Children(Environment.ProcessId).Any(c => pids.Contains(c.Pid)),
            "every child has been reaped");
        Assert.Empty(LinuxProcesses.Zombies());
    }
}
