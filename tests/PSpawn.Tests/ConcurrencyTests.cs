using System.Collections.Concurrent;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

public sealed class ConcurrencyTests
{
    [Fact]
    public async Task Eight_threads_spawn_concurrently_on_one_context()
    {
        const int Threads = 8;
        const int PerThread = 25;
        using var temp = new TempDirectory();
        using var context = PSpawnContext.Create(Fixtures.Report);
        var spawned = new ConcurrentBag<(int Thread, int Index, SpawnedProcess Process)>();
        using var start = new Barrier(Threads);

        Task[] workers = Enumerable.Range(0, Threads).Select(t => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            for (int i = 0; i < PerThread; i++)
            {
                int code = ((t * PerThread) + i) % 200;
                SpawnedProcess process = i % 5 == 0
                    ? context.SpawnN(1, [$"--report-exit={code}", $"--report-out={temp.File($"{t}-{i}.json")}", $"thread={t}"])[0]
                    : context.Spawn([$"--report-exit={code}", $"--report-out={temp.File($"{t}-{i}.json")}", $"thread={t}"]);
                spawned.Add((t, i, process));
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();

        await Task.WhenAll(workers).Within();
        Assert.Equal(Threads * PerThread, spawned.Count);
        Assert.Equal(Threads * PerThread, spawned.Select(s => s.Process.Id).Distinct().Count());
        await spawned.Select(s => s.Process).ExitAll();

        foreach (var (t, i, process) in spawned)
        {
            Assert.Equal(((t * PerThread) + i) % 200, process.ExitCode);
            ReportOutput report = ReportOutput.Read(temp.File($"{t}-{i}.json"));
            Assert.Equal(process.Id, report.Pid);
            Assert.Equal($"thread={t}", report.Argv[3]);
        }
    }

    [Fact]
    public async Task Dispose_while_other_threads_spawn_is_safe()
    {
        var context = PSpawnContext.Create(Fixtures.Noop);
        var spawned = new ConcurrentBag<SpawnedProcess>();
        using var stop = new CancellationTokenSource();
        Task[] workers = Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
        {
            while (true)
            {
                try
                {
                    spawned.Add(context.Spawn([]));
                }
                catch (ObjectDisposedException)
                {
                    return;
                }
            }
        })).ToArray();

        await Bounded.Until(() => spawned.Count >= 20, "some spawns happened");
        context.Dispose();
        await Task.WhenAll(workers).Within();
        await spawned.ExitAll();
        Assert.All(spawned, p => Assert.Equal(0, p.ExitCode));
    }
}
