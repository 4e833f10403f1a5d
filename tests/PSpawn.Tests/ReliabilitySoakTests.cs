using System.Diagnostics;
using System.Globalization;
using PSpawn.Tests.Infrastructure;
using Xunit.Abstractions;

namespace PSpawn.Tests;

/// <summary>
/// Soak (issue #6): many spawns through one context in SpawnN batches. 10,000 by default (CI); the environment
/// variable PSPAWN_SOAK sets another count, e.g. PSPAWN_SOAK=100000 for the long run of docs/reliability.md.
/// </summary>
[Collection(ReliabilityCollection.Name)]
public sealed class ReliabilitySoakTests(ITestOutputHelper output)
{
    private const int DefaultSpawns = 10_000;
    private const int BatchSize = 250;

    private static int SoakSpawns =>
        Environment.GetEnvironmentVariable("PSPAWN_SOAK") is { Length: > 0 } text
            ? int.Parse(text, NumberStyles.None, CultureInfo.InvariantCulture)
            : DefaultSpawns;

    private readonly record struct Sample(int Spawns, int Fds, int Threads, long RssKb, long ManagedBytes, long ProxyRssKb)
    {
        public override string ToString() => string.Create(
            CultureInfo.InvariantCulture,
            $"after {Spawns,7} spawns: fds {Fds}, threads {Threads}, RSS {RssKb} kB, managed heap {ManagedBytes / 1024} kB, proxy RSS {ProxyRssKb} kB");
    }

    [Fact]
    public async Task Soak_every_child_reaped_once_with_its_status_and_nothing_grows()
    {
        int total = SoakSpawns;
        Assert.True(total >= BatchSize * 4, $"PSPAWN_SOAK must be at least {BatchSize * 4}");
        int batches = total / BatchSize;
        int warmUpBatches = Math.Max(2, batches / 10);
        using var temp = new TempDirectory();
        string reportPath = temp.File("soak.json");

        // An empty environment keeps each request (and each child's JSON report) small; every child writes its
        // report to the same file (write to a temporary name, then rename), not to our stdout.
        var options = SpawnOptions.WithExactEnvironment([]);
        await using var context = PSpawnContext.Create(Fixtures.Report);
        int proxy = context.ProxyProcessId ?? throw new InvalidOperationException("no proxy");
        string proxyPid = proxy.ToString(CultureInfo.InvariantCulture);

        Sample? baseline = null;

        int baselinePoolThreads = 0;
        var samples = new List<Sample>();
        int maxThreads = 0;
        int spawned = 0;
        var clock = Stopwatch.StartNew();
        for (int batch = 0; batch < batches; batch++)
        {
            int code = batch % 256;
            IReadOnlyList<SpawnedProcess> processes = context.SpawnN(
                BatchSize, [$"--report-exit={code}", $"--report-out={reportPath}", "soak"], options);
            Assert.Equal(BatchSize, processes.Count);
            Assert.Equal(BatchSize, processes.Select(p => p.Id).Distinct().Count());
            await processes.ExitAll(TimeSpan.FromMinutes(2));
            foreach (SpawnedProcess process in processes)
            {
                Assert.True(process.ExitCode == code && process.TerminatingSignal is null, $"batch {batch}: {process}, expected exit code {code}");

                // Reaped exactly once: the library collected the status, and nothing is left for anybody else.
                Assert.True(ReliabilityProbes.AlreadyReaped(process.Id), $"batch {batch}: {process} can still be waited for");
                process.Dispose();
            }

            spawned += BatchSize;
            maxThreads = Math.Max(maxThreads, ReliabilityProbes.ThreadCount());
            if (batch == warmUpBatches - 1 || batch == batches - 1 || (batch + 1) % Math.Max(1, batches / 10) == 0)
            {
                Sample sample = Measure(spawned, proxyPid);
                samples.Add(sample);
                if (batch == warmUpBatches - 1)
                {
                    baseline = sample;
                    baselinePoolThreads = ThreadPool.ThreadCount;
                }
            }
        }

        clock.Stop();
        Assert.Equal(batches * BatchSize, spawned);
        Sample warm = baseline ?? throw new InvalidOperationException("no baseline");
        Sample end = samples[^1];

        // Let the thread pool settle (threads retire when idle), then measure the end again.
        var settle = Stopwatch.StartNew();
        while (ReliabilityProbes.ThreadCount() > warm.Threads + 2 && settle.Elapsed < TimeSpan.FromSeconds(5))
        {
            await Task.Delay(100);
        }

        // The exit watcher closes a reaped child's pidfd on its own thread: allow it a moment.
        while (LinuxProcesses.OpenFdCount() > warm.Fds && settle.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(100);
        }

        Sample settled = Measure(spawned, proxyPid);
        List<int> zombies = LinuxProcesses.Zombies();

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{spawned} spawns in {batches} SpawnN batches of {BatchSize} in {clock.Elapsed.TotalSeconds:0.0} s ({spawned / clock.Elapsed.TotalSeconds:0} spawns/s), {Environment.ProcessorCount} CPUs"));
        foreach (Sample sample in samples)
        {
            output.WriteLine(sample.ToString() + (sample == warm ? "  (baseline, after warm-up)" : string.Empty));
        }

        output.WriteLine($"settled {settled}; max threads seen {maxThreads}; zombies {zombies.Count}");

        Assert.Empty(zombies);
        Assert.True(settled.Fds <= warm.Fds, $"descriptors grew: {warm.Fds} -> {settled.Fds}");

        // A per-spawn thread leak would show thousands. The thread pool adds workers under load (its threads
        // retire only after ~20 s idle), so threads outside the pool are what must stay flat.
        int poolGrowth = Math.Max(0, ThreadPool.ThreadCount - baselinePoolThreads);
        Assert.True(settled.Threads - poolGrowth <= warm.Threads + 4,
            $"threads outside the thread pool grew: {warm.Threads} -> {settled.Threads} (the pool grew by {poolGrowth})");
        Assert.True(maxThreads <= warm.Threads + 64, $"threads peaked at {maxThreads} (baseline {warm.Threads})");

        // Generous bounds: the runtime's heaps move; a leak of ~1 kB per spawn would exceed them at 100,000.
        Assert.True(settled.ManagedBytes <= warm.ManagedBytes + (16L << 20), $"managed heap grew: {warm.ManagedBytes} -> {settled.ManagedBytes} bytes");
        Assert.True(settled.RssKb <= warm.RssKb + (64 * 1024), $"RSS grew: {warm.RssKb} -> {settled.RssKb} kB");
        Assert.True(end.ProxyRssKb <= warm.ProxyRssKb + 1024, $"proxy RSS grew: {warm.ProxyRssKb} -> {end.ProxyRssKb} kB");
        Assert.Equal(proxy, context.ProxyProcessId);
    }

    private static Sample Measure(int spawns, string proxyPid)
    {
        long managed = GC.GetTotalMemory(forceFullCollection: true);
        return new Sample(
            spawns,
            LinuxProcesses.OpenFdCount(),
            ReliabilityProbes.ThreadCount(),
            ReliabilityProbes.RssKb("self") ?? -1,
            managed,
            ReliabilityProbes.RssKb(proxyPid) ?? -1);
    }
}
