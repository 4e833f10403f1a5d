using System.Diagnostics;
using BenchmarkDotNet.Attributes;

namespace PSpawn.Benchmarks;

/// <summary>
/// The Process.Start drop-in against Process.Start: <see cref="Starts"/> starts per invocation, each started and waited
/// for in turn, spread over <see cref="Threads"/> threads starting at once (Process.Start serialises parallel starts
/// behind a lock: dotnet/runtime#67506). OperationsPerInvoke = Starts, so the mean is the time per start. The same
/// ProcessStartInfo (an empty environment) for both; the drop-in's starter is warmed up (its context exists).
/// </summary>
[Config(typeof(SpawnJobConfig))]
[MemoryDiagnoser]
[MinColumn, MaxColumn, MedianColumn]
public class DropInBenchmarks
{
    public const int Starts = 40;

    private PSpawnProcessStarter? _starter;
    private ProcessStartInfo? _startInfo;

    [Params("noop", "pynamic100")]
    public string Target { get; set; } = "noop";

    [Params(1, 8)]
    public int Threads { get; set; } = 1;

    [GlobalSetup]
    public void Setup()
    {
        _startInfo = new ProcessStartInfo(Fixtures.Path(Target)) { UseShellExecute = false };
        _startInfo.Environment.Clear();
        _starter = new PSpawnProcessStarter(new PSpawnProcessStarterOptions { IdleTimeout = Timeout.InfiniteTimeSpan });
        using PSpawnProcess warm = _starter.Start(_startInfo);
        warm.WaitForExit();
    }

    [GlobalCleanup]
    public void Cleanup() => _starter?.Dispose();

    [Benchmark(OperationsPerInvoke = Starts, Baseline = true)]
    public void ProcessStart() => OnThreads(() =>
    {
        using Process process = Process.Start(_startInfo!)!;
        process.WaitForExit();
        Check(process.ExitCode);
    });

    [Benchmark(OperationsPerInvoke = Starts)]
    public void DropIn() => OnThreads(() =>
    {
        using PSpawnProcess process = _starter!.Start(_startInfo!);
        process.WaitForExit();
        Check(process.ExitCode);
    });

    private void OnThreads(Action start)
    {
        int perThread = Starts / Threads;
        if (Threads == 1)
        {
            for (int i = 0; i < perThread; i++)
            {
                start();
            }

            return;
        }

        using var go = new ManualResetEventSlim();
        var threads = new Thread[Threads];
        for (int t = 0; t < threads.Length; t++)
        {
            threads[t] = new Thread(() =>
            {
                go.Wait();
                for (int i = 0; i < perThread; i++)
                {
                    start();
                }
            });
            threads[t].Start();
        }

        go.Set(); // all at once
        foreach (Thread thread in threads)
        {
            thread.Join();
        }
    }

    private static void Check(int exitCode)
    {
        if (exitCode != 0)
        {
            throw new InvalidOperationException($"an instance exited with status {exitCode}");
        }
    }
}
