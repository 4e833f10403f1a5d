using System.Diagnostics;
using System.Globalization;
using System.IO.Pipes;
using System.Runtime.InteropServices;

namespace PSpawn.Benchmarks;

/// <summary>
/// What PSpawn itself costs per spawned instance, apart from the runtime's background work:
/// <c>dotnet run -c Release --project benchmarks/PSpawn.Benchmarks -- cost [--n N] [--rounds R]</c>.
/// <para>
/// Each round spawns N instances of the noop fixture with one <see cref="PSpawnContext.SpawnN"/> and waits for all of
/// them (two ways: <see cref="SpawnedProcess.WaitForExit()"/> each, and Task.WhenAll of
/// <see cref="SpawnedProcess.WaitForExitAsync()"/>), and, interleaved, the same through the C API from the same
/// thread (<c>pspawn_ne</c>, then <c>waitpid</c> each). It measures the CPU time of the calling thread
/// (CLOCK_THREAD_CPUTIME_ID) and of PSpawn's own threads (/proc/self/task/TID/schedstat of the threads named
/// "PSpawn ..."), and the bytes allocated on the calling thread and in the whole process. PSpawn's own cost is
/// the .NET figure minus the C one. Medians over rounds.
/// </para>
/// <para>
/// <c>... -- poller [--n N] [--seconds S]</c>: the CPU of the shared exit poller for N live children that have no
/// pidfd (the soft RLIMIT_NOFILE is lowered so that the descriptor budget is spent).
/// </para>
/// </summary>
internal static unsafe partial class CostProbe
{
    private const int CLOCK_THREAD_CPUTIME_ID = 3;

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, TimeSpec* time);

    [LibraryImport("libc", EntryPoint = "waitpid")]
    private static partial int WaitPid(int pid, int* status, int options);

    [LibraryImport("libc", EntryPoint = "getrlimit")]
    private static partial int GetRLimit(int resource, ulong* limit);

    [LibraryImport("libc", EntryPoint = "setrlimit")]
    private static partial int SetRLimit(int resource, ulong* limit);

    private const int CLOCK_PROCESS_CPUTIME_ID = 2;

    private static long ThreadCpuNs() => CpuNs(CLOCK_THREAD_CPUTIME_ID);

    private static long ProcessCpuNs() => CpuNs(CLOCK_PROCESS_CPUTIME_ID);

    private static long CpuNs(int clock)
    {
        TimeSpec t;
        _ = ClockGetTime(clock, &t);
        return (t.Seconds * 1_000_000_000) + t.Nanoseconds;
    }

    /// <summary>Run time in ns of every thread of this process whose name starts with "PSpawn".</summary>
    private static long PSpawnThreadsNs()
    {
        long total = 0;
        foreach (string task in Directory.EnumerateDirectories("/proc/self/task"))
        {
            try
            {
                if (File.ReadAllText(Path.Combine(task, "comm")).StartsWith("PSpawn", StringComparison.Ordinal))
                {
                    total += long.Parse(File.ReadAllText(Path.Combine(task, "schedstat")).Split(' ')[0], CultureInfo.InvariantCulture);
                }
            }
            catch (IOException)
            {
                // the thread ended
            }
        }

        return total;
    }

    private sealed record Sample(double CallerUs, double PSpawnThreadsUs, double ThreadBytes, double ProcessBytes, double ProcessUs);

    public static int Run(string[] args)
    {
        int n = Option(args, "--n", 2000);
        int rounds = Option(args, "--rounds", 7);
        return args[0] == "poller" ? Poller(n, Option(args, "--seconds", 10)) : Cost(n, rounds);
    }

    private static int Option(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }

    private static int Cost(int n, int rounds)
    {
        string noop = Fixtures.Path("noop");
        var options = new SpawnOptions { InheritEnvironment = false };
        using var context = PSpawnContext.Create(noop, -1, new PSpawnContextOptions { ProxyEnvironment = new Dictionary<string, string>() });
        using var native = new NativeCore(noop);

        // Warm up: JIT (tier-1 after enough calls), thread start, pools.
        for (int i = 0; i < 3; i++)
        {
            Managed(context, options, Math.Min(n, 500), async: false);
            Managed(context, options, Math.Min(n, 500), async: true);
            native.Measure(Math.Min(n, 500));
        }

        Thread.Sleep(200);
        var sync = new List<Sample>();
        var asyncSamples = new List<Sample>();
        var c = new List<Sample>();
        for (int r = 0; r < rounds; r++)
        {
            // Rotate the order, so that no method always runs after the same one.
            for (int k = 0; k < 3; k++)
            {
                switch ((r + k) % 3)
                {
                    case 0: sync.Add(Managed(context, options, n, async: false)); break;
                    case 1: asyncSamples.Add(Managed(context, options, n, async: true)); break;
                    default: c.Add(native.Measure(n)); break;
                }
            }
        }

        Console.WriteLine($"PSpawn {typeof(PSpawnContext).Assembly.GetName().Version}, native {PSpawnContext.NativeVersion}, .NET {Environment.Version}, {Environment.ProcessorCount} CPUs, N = {n}, {rounds} rounds; medians (min-max) per instance");
        Console.WriteLine("| method | calling thread CPU µs | PSpawn threads CPU µs | total µs | bytes allocated (calling thread) | bytes allocated (process) | whole process CPU µs |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- |");
        Row("pspawn_ne + waitpid (C, same thread)", c);
        Row("SpawnN + WaitForExit each", sync);
        Row("SpawnN + WhenAll(WaitForExitAsync)", asyncSamples);
        double cTotal = Median(c.Select(s => s.CallerUs));
        Console.WriteLine();
        Console.WriteLine($"PSpawn's own CPU per instance (total minus C): WaitForExit {Median(sync.Select(s => s.CallerUs + s.PSpawnThreadsUs)) - cTotal:0.0} µs, WhenAll {Median(asyncSamples.Select(s => s.CallerUs + s.PSpawnThreadsUs)) - cTotal:0.0} µs");
        return 0;
    }

    private static void Row(string name, List<Sample> samples) =>
        Console.WriteLine($"| {name} | {Stat(samples.Select(s => s.CallerUs))} | {Stat(samples.Select(s => s.PSpawnThreadsUs))} | {Stat(samples.Select(s => s.CallerUs + s.PSpawnThreadsUs))} | {Stat(samples.Select(s => s.ThreadBytes), "0")} | {Stat(samples.Select(s => s.ProcessBytes), "0")} | {Stat(samples.Select(s => s.ProcessUs))} |");

    private static string Stat(IEnumerable<double> values, string format = "0.0")
    {
        double[] v = [.. values.Order()];
        return $"{Median(v).ToString(format, CultureInfo.InvariantCulture)} ({v[0].ToString(format, CultureInfo.InvariantCulture)}-{v[^1].ToString(format, CultureInfo.InvariantCulture)})";
    }

    private static double Median(IEnumerable<double> values)
    {
        double[] v = [.. values.Order()];
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[(v.Length / 2) - 1] + v[v.Length / 2]) / 2;
    }

    private static Sample Managed(PSpawnContext context, SpawnOptions options, int n, bool async)
    {
        long bytes0 = GC.GetAllocatedBytesForCurrentThread();
        long total0 = GC.GetTotalAllocatedBytes(precise: true);
        long threads0 = PSpawnThreadsNs();
        long process0 = ProcessCpuNs();
        long cpu0 = ThreadCpuNs();
        IReadOnlyList<SpawnedProcess> children = context.SpawnN(n, [], options);
        if (async)
        {
            Task.WhenAll(children.Select(p => p.WaitForExitAsync())).GetAwaiter().GetResult();
        }
        else
        {
            foreach (SpawnedProcess child in children)
            {
                child.WaitForExit();
            }
        }

        long cpu1 = ThreadCpuNs();
        long bytes1 = GC.GetAllocatedBytesForCurrentThread();
        Thread.Sleep(20); // let the watcher thread finish the last completions
        long threads1 = PSpawnThreadsNs();
        long process1 = ProcessCpuNs();
        long total1 = GC.GetTotalAllocatedBytes(precise: true);
        return new Sample((cpu1 - cpu0) / 1e3 / n, (threads1 - threads0) / 1e3 / n, (double)(bytes1 - bytes0) / n, (double)(total1 - total0) / n, (process1 - process0) / 1e3 / n);
    }

    /// <summary>The C API through function pointers (libpspawn.so beside this program), on the calling thread.</summary>
    private sealed class NativeCore : IDisposable
    {
        private readonly nint _library;
        private readonly delegate* unmanaged<int*, int*, nint, int, byte**, byte**, int> _spawnNE;
        private readonly delegate* unmanaged<nint, void> _destroy;
        private readonly nint _context;
        private readonly byte** _argv;
        private readonly byte** _envp;

        public NativeCore(string path)
        {
            _library = NativeLibrary.Load(Path.Combine(AppContext.BaseDirectory, "libpspawn.so"));
            var create = (delegate* unmanaged<nint, byte*, int, int>)NativeLibrary.GetExport(_library, "pspawn_context_create");
            _spawnNE = (delegate* unmanaged<int*, int*, nint, int, byte**, byte**, int>)NativeLibrary.GetExport(_library, "pspawn_ne");
            _destroy = (delegate* unmanaged<nint, void>)NativeLibrary.GetExport(_library, "pspawn_context_destroy");
            _context = (nint)NativeMemory.AllocZeroed((nuint)sizeof(nint));
            byte* nativePath = (byte*)Marshal.StringToCoTaskMemUTF8(path);
            _argv = (byte**)NativeMemory.AllocZeroed((nuint)(2 * sizeof(nint)));
            _argv[0] = nativePath;
            _envp = (byte**)NativeMemory.AllocZeroed((nuint)sizeof(nint));
            if (create(_context, nativePath, -1) != 0)
            {
                throw new InvalidOperationException("pspawn_context_create failed");
            }
        }

        public Sample Measure(int n)
        {
            int[] pids = new int[n];
            int[] errors = new int[n];
            long bytes0 = GC.GetAllocatedBytesForCurrentThread();
            long process0 = ProcessCpuNs();
            long cpu0 = ThreadCpuNs();
            fixed (int* p = pids)
            fixed (int* e = errors)
            {
                int started = _spawnNE(p, e, _context, n, _argv, _envp);
                if (started != n)
                {
                    throw new InvalidOperationException($"pspawn_ne started {started} of {n}");
                }
            }

            int status;
            foreach (int pid in pids)
            {
                _ = WaitPid(pid, &status, 0);
            }

            long cpu1 = ThreadCpuNs();
            long process1 = ProcessCpuNs();
            long bytes1 = GC.GetAllocatedBytesForCurrentThread();
            return new Sample((cpu1 - cpu0) / 1e3 / n, 0, (double)(bytes1 - bytes0) / n, 0, (process1 - process0) / 1e3 / n);
        }

        public void Dispose()
        {
            _destroy(_context);
            NativeMemory.Free((void*)_context);
        }
    }

    /// <summary>The exit poller's CPU for <paramref name="n"/> live children without a pidfd.</summary>
    private static int Poller(int n, int seconds)
    {
        string report = Fixtures.Path("report");
        using var context = PSpawnContext.Create(report);
        using var stdin = new AnonymousPipeServerStream(PipeDirection.Out, HandleInheritability.None);
        var options = new SpawnOptions
        {
            StandardInput = StdioTarget.FromHandle(stdin.ClientSafePipeHandle),
            StandardOutput = StdioTarget.Null,
        };

        // Spend the descriptor budget: with the soft limit just above the descriptors open now, no pidfd fits.
        const int RLIMIT_NOFILE = 7;
        ulong* limit = stackalloc ulong[2];
        _ = GetRLimit(RLIMIT_NOFILE, limit);
        ulong saved = limit[0];
        limit[0] = (ulong)Directory.GetFileSystemEntries("/proc/self/fd").Length + 40;
        _ = SetRLimit(RLIMIT_NOFILE, limit);
        IReadOnlyList<SpawnedProcess> children = context.SpawnN(n, ["--report-stdin-echo"], options);
        stdin.DisposeLocalCopyOfClientHandle();
        limit[0] = saved;
        _ = SetRLimit(RLIMIT_NOFILE, limit);

        Thread.Sleep(2000); // past the poller's back-off
        long threads0 = PSpawnThreadsNs();
        var clock = Stopwatch.StartNew();
        Thread.Sleep(seconds * 1000);
        long threads1 = PSpawnThreadsNs();
        double elapsed = clock.Elapsed.TotalSeconds;
        int running = children.Count(c => !c.HasExited);
        stdin.Dispose();
        Task.WhenAll(children.Select(c => c.WaitForExitAsync())).GetAwaiter().GetResult();
        double perSecond = (threads1 - threads0) / 1e3 / elapsed;
        Console.WriteLine($"{running} of {n} children running without a pidfd over {elapsed:0.0} s: PSpawn threads {perSecond:0} µs CPU per second ({perSecond / n * 1000:0} µs/s per 1000 children = {perSecond / n * 1000 / 1e4:0.00} % of a core)");
        return 0;
    }
}
