using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace PSpawn.Benchmarks;

/// <summary>
/// Spawn methods on the fixtures. Category "Batch": launch <see cref="Batch"/> instances, then wait for all;
/// OperationsPerInvoke = Batch, so the mean is the time per instance and 1e9 / mean(ns) the throughput in
/// spawns per second. Category "One": one instance, spawn until exited and reaped (the single-spawn latency).
/// posix_spawn is the baseline of each category. Every method gives the instances an empty environment.
/// SpawnOnePool spawns from a context with a warm pool of <see cref="PoolSize"/> parked children per proxy (as
/// spawnbench's pspawn_pool with -P 8); its claims are printed at cleanup, so that a run whose spawns were forks shows.
/// Monitoring strategy: one invocation per iteration, no pilot stage (a batch takes milliseconds to seconds).
/// </summary>
[Config(typeof(SpawnJobConfig))]
[MemoryDiagnoser]
[MinColumn, MaxColumn, MedianColumn]
[GroupBenchmarksBy(BenchmarkDotNet.Configs.BenchmarkLogicalGroupRule.ByCategory, BenchmarkDotNet.Configs.BenchmarkLogicalGroupRule.ByParams)]
[CategoriesColumn]
public class SpawnBenchmarks
{
    public const int Batch = 20;
    public const int PoolSize = 8;

    private PSpawnContext? _spawnContext;
    private PSpawnContext? _spawnNContext;
    private PSpawnContext? _batchContext;
    private PSpawnContext? _poolContext;
    private long _poolSpawns;
    private SpawnInstance[] _instances = [];
    private ProcessStartInfo? _startInfo;
    private readonly SpawnOptions _spawnOptions = new() { InheritEnvironment = false };
    private IntPtr _argv;
    private IntPtr _envp;
    private IntPtr _path;
    private readonly int[] _pids = new int[Batch];

    /// <summary>Fixtures built by CMake into artifacts/native/bin.</summary>
    [Params("noop", "pynamic100")]
    public string Target { get; set; } = "noop";

    [GlobalSetup]
    public void Setup()
    {
        string targetPath = Fixtures.Path(Target);
        _startInfo = new ProcessStartInfo(targetPath) { UseShellExecute = false };
        _startInfo.Environment.Clear();
        var options = new PSpawnContextOptions { ProxyEnvironment = new Dictionary<string, string>() };
        _spawnContext = PSpawnContext.Create(targetPath, -1, options);
        _spawnNContext = PSpawnContext.Create(targetPath, -1, options);
        _batchContext = PSpawnContext.Create(targetPath, -1, options);
        _poolContext = PSpawnContext.Create(targetPath, -1, new PSpawnContextOptions
        {
            ProxyEnvironment = new Dictionary<string, string>(),
            WarmPool = new WarmPoolOptions { Size = PoolSize },
        });
        _instances = Enumerable.Range(0, Batch)
            .Select(i => new SpawnInstance { Environment = new Dictionary<string, string?> { ["RANK"] = i.ToString(System.Globalization.CultureInfo.InvariantCulture) } })
            .ToArray();
        _path = Marshal.StringToCoTaskMemUTF8(targetPath);
        _argv = Marshal.AllocHGlobal(2 * IntPtr.Size);
        Marshal.WriteIntPtr(_argv, 0, _path);
        Marshal.WriteIntPtr(_argv, IntPtr.Size, IntPtr.Zero);
        _envp = Marshal.AllocHGlobal(IntPtr.Size);
        Marshal.WriteIntPtr(_envp, 0, IntPtr.Zero);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _spawnContext?.Dispose();
        _spawnNContext?.Dispose();
        _batchContext?.Dispose();
        if (_poolSpawns > 0)
        {
            Console.WriteLine($"// SpawnOnePool ({Target}): {_poolContext!.PoolClaimCount} of {_poolSpawns} spawns were claims");
        }

        _poolContext?.Dispose();
        Marshal.FreeHGlobal(_argv);
        Marshal.FreeHGlobal(_envp);
        Marshal.FreeCoTaskMem(_path);
    }

    // ---- Batch: Batch instances, then wait for all; time per instance ----

    /// <summary>What users pick today: System.Diagnostics.Process (vfork + exec in .NET's native shim).</summary>
    [Benchmark(OperationsPerInvoke = Batch), BenchmarkCategory("Batch")]
    public void ProcessStart() => ProcessStartMany(Batch);

    /// <summary>glibc posix_spawn (clone(CLONE_VM|CLONE_VFORK) + exec) through a P/Invoke, then waitpid each.</summary>
    [Benchmark(OperationsPerInvoke = Batch, Baseline = true), BenchmarkCategory("Batch")]
    public void PosixSpawn() => PosixSpawnMany(Batch);

    /// <summary>PSpawn, one request to the proxy per instance.</summary>
    [Benchmark(OperationsPerInvoke = Batch), BenchmarkCategory("Batch")]
    public void Spawn()
    {
        var procs = new SpawnedProcess[Batch];
        for (int i = 0; i < procs.Length; i++)
        {
            procs[i] = _spawnContext!.Spawn([], _spawnOptions);
        }

        WaitAll(procs);
    }

    /// <summary>PSpawn, one request for the whole batch.</summary>
    [Benchmark(OperationsPerInvoke = Batch), BenchmarkCategory("Batch")]
    public void SpawnN() => WaitAll(_spawnNContext!.SpawnN(Batch, [], _spawnOptions));

    /// <summary>PSpawn vector: one batch, instance i with RANK=i in its environment (pspawn_vector).</summary>
    [Benchmark(OperationsPerInvoke = Batch), BenchmarkCategory("Batch")]
    public void SpawnBatch() => WaitAll(_batchContext!.SpawnBatch(_instances, _spawnOptions).ThrowIfAnyFailed().Started);

    /// <summary>The same batch as a launch session: outcomes as they complete (await foreach), then Task.WhenAll of the exits.</summary>
    [Benchmark(OperationsPerInvoke = Batch), BenchmarkCategory("Batch")]
    public async Task SpawnBatchAsync()
    {
        var exits = new List<Task>(Batch);
        await foreach (SpawnOutcome outcome in _batchContext!.StartBatch(_instances, _spawnOptions))
        {
            exits.Add((outcome.Process ?? throw outcome.Exception!).WaitForExitAsync());
        }

        await Task.WhenAll(exits);
    }

    // ---- One: a single instance, spawn until exited and reaped ----

    [Benchmark, BenchmarkCategory("One")]
    public void ProcessStartOne() => ProcessStartMany(1);

    [Benchmark(Baseline = true), BenchmarkCategory("One")]
    public void PosixSpawnOne() => PosixSpawnMany(1);

    [Benchmark, BenchmarkCategory("One")]
    public void SpawnOne()
    {
        using var p = _spawnContext!.Spawn([], _spawnOptions);
        p.WaitForExit();
        Check(p.ExitCode);
    }

    /// <summary>The same from a context with a warm pool: the spawn claims a parked child (a fork when none is parked).</summary>
    [Benchmark, BenchmarkCategory("One")]
    public void SpawnOnePool()
    {
        using var p = _poolContext!.Spawn([], _spawnOptions);
        _poolSpawns++;
        p.WaitForExit();
        Check(p.ExitCode);
    }

    private void ProcessStartMany(int count)
    {
        var procs = new Process[count];
        for (int i = 0; i < procs.Length; i++)
        {
            procs[i] = Process.Start(_startInfo!)!;
        }

        foreach (var p in procs)
        {
            p.WaitForExit();
            Check(p.ExitCode);
            p.Dispose();
        }
    }

    private void PosixSpawnMany(int count)
    {
        for (int i = 0; i < count; i++)
        {
            int err = LibC.PosixSpawn(out _pids[i], _path, IntPtr.Zero, IntPtr.Zero, _argv, _envp);
            if (err != 0)
            {
                throw new InvalidOperationException($"posix_spawn: errno {err}");
            }
        }

        for (int i = 0; i < count; i++)
        {
            int status;
            while (LibC.WaitPid(_pids[i], out status, 0) < 0)
            {
                if (Marshal.GetLastPInvokeError() != 4 /* EINTR */)
                {
                    throw new InvalidOperationException($"waitpid: errno {Marshal.GetLastPInvokeError()}");
                }
            }

            Check((status >> 8) & 0xff);
        }
    }

    private static void WaitAll(IReadOnlyList<SpawnedProcess> procs)
    {
        foreach (var p in procs)
        {
            p.WaitForExit();
            Check(p.ExitCode);
            p.Dispose();
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

/// <summary>
/// Monitoring strategy, one invocation (one batch) per iteration. PSPAWN_BENCH_INPROCESS=1 runs the job in
/// this process (no generated project to build; BenchmarkDotNet's --inProcess would add a second job instead).
/// </summary>
public sealed class SpawnJobConfig : ManualConfig
{
    public SpawnJobConfig()
    {
        var job = Job.Default
            .WithStrategy(RunStrategy.Monitoring)
            .WithLaunchCount(1)
            .WithWarmupCount(3)
            .WithIterationCount(15)
            .WithInvocationCount(1)
            .WithUnrollFactor(1);
        if (Environment.GetEnvironmentVariable("PSPAWN_BENCH_INPROCESS") == "1")
        {
            job = job.WithToolchain(InProcessEmitToolchain.Instance);
        }

        AddJob(job);
    }
}

internal static partial class LibC
{
    [LibraryImport("libc", EntryPoint = "posix_spawn")]
    public static partial int PosixSpawn(out int pid, IntPtr path, IntPtr fileActions, IntPtr attributes, IntPtr argv, IntPtr envp);

    [LibraryImport("libc", EntryPoint = "waitpid", SetLastError = true)]
    public static partial int WaitPid(int pid, out int status, int options);
}

/// <summary>Where the CMake-built fixtures are: $PSPAWN_BENCH_NATIVE_DIR/bin, else artifacts/native/bin of the repository.</summary>
internal static class Fixtures
{
    public static string Path(string name)
    {
        string? dir = Environment.GetEnvironmentVariable("PSPAWN_BENCH_NATIVE_DIR");
        if (string.IsNullOrEmpty(dir))
        {
            string? root = typeof(Fixtures).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
                .FirstOrDefault(a => a.Key == "PSpawnRepoRoot")?.Value;
            dir = System.IO.Path.Combine(root ?? ".", "artifacts", "native");
        }

        string path = System.IO.Path.Combine(dir, "bin", name);
        return File.Exists(path)
            ? path
            : throw new FileNotFoundException($"fixture {name} not found at {path}: build the repository first (dotnet build PSpawn.sln)", path);
    }
}
