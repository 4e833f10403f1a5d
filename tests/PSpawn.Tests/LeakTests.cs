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
