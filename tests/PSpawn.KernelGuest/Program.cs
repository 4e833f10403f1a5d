using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Mono.Unix.Native;
using PSpawn;

// The kernel path from .NET, in the qemu guest (tests/kernel/guest.d/dotnet.sh runs it on the patched kernel).
//   checks BIN_DIR        every check, one "PASS name" or "FAIL name: why" line each; exit 0 when all passed
//   nonative BIN_DIR      the same program copied without libpspawn.so: kernel batches still work
//   bench BIN_DIR N ROUNDS  SpawnBatch through the kernel vs the zygote vs Process.Start, N no-ops, medians
string bin = args.Length > 1 ? args[1] : "artifacts/native/bin";
return args.FirstOrDefault() switch
{
    "checks" => await Checks.RunAll(bin, withNative: true),
    "nonative" => await Checks.RunAll(bin, withNative: false),
    "bench" when args.Length == 4 => await Bench.Run(bin, int.Parse(args[2], CultureInfo.InvariantCulture), int.Parse(args[3], CultureInfo.InvariantCulture)),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: PSpawn.KernelGuest checks BIN_DIR | nonative BIN_DIR | bench BIN_DIR N ROUNDS");
    return 2;
}

internal static class Checks
{
    private const string Work = "/tmp/kguest";
    private static string s_report = "";
    private static string s_prefix = "";
    private static int s_failed;

    public static async Task<int> RunAll(string bin, bool withNative)
    {
        s_report = Path.GetFullPath(Path.Combine(bin, "report"));
        s_prefix = withNative ? "dotnet_" : "dotnet_nonative_";
        Directory.CreateDirectory(Work);
        await Check("detect", Detect);
        await Check("batch_report", BatchReport);
        await Check("per_instance_errors", PerInstanceErrors);
        await Check("async_session", AsyncSession);
        await Check("spawn_n", SpawnN);
        await Check("sigchld_during_launch", SigchldDuringLaunch);
        if (withNative)
        {
            await Check("bad_files", BadFiles);
            await Check("offline_cpu", OfflineCpu);
            await Check("require_and_auto", RequireAndAuto);
            await Check("forbid", Forbid);
        }
        else
        {
            await Check("native_absent", NativeAbsent);
        }

        await Check("no_children_left", NoChildrenLeft);
        return s_failed == 0 ? 0 : 1;
    }

    private static async Task Check(string name, Func<Task> body)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            await body();
            Console.WriteLine($"PASS {s_prefix}{name} ({clock.Elapsed.TotalSeconds:0.0} s)");
        }
        catch (Exception e)
        {
            s_failed++;
            Console.WriteLine($"FAIL {s_prefix}{name}: {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}");
        }
    }

    private static void Expect(bool condition, string what)
    {
        if (!condition)
        {
            throw new InvalidOperationException(what);
        }
    }

    private static Task Detect()
    {
        Expect(PSpawnKernel.IsAvailable, $"not available: {PSpawnKernel.UnavailableReason}");
        Expect(PSpawnKernel.AbiVersion == 1, $"ABI {PSpawnKernel.AbiVersion}");
        Expect(PSpawnKernel.UnavailableReason is null, "a reason although available");
        return Task.CompletedTask;
    }

    private static PSpawnContext Kernel(string path, KernelPath kernelPath = KernelPath.Require) =>
        PSpawnContext.Create(path, options: new PSpawnContextOptions { KernelPath = kernelPath });

    /// <summary>Instance i: argv {report, inst-i, --report-out=...}, environment {PSPAWN_INSTANCE=i, KGUEST_TAG=tag}, CPU i % ncpus.</summary>
    private static SpawnInstance Instance(string tag, int i, IReadOnlySet<int>? cpus) =>
        new SpawnInstance([$"inst-{i}", $"--report-out={Work}/{tag}-{i}.json"])
        {
            Environment = new Dictionary<string, string?> { ["PSPAWN_INSTANCE"] = $"{i}" },
            Cpus = cpus,
        };

    private static readonly SpawnOptions s_exactEnvironment = SpawnOptions.WithExactEnvironment(new Dictionary<string, string> { ["KGUEST_TAG"] = "tag" });

    /// <summary>Waits for the instance, then checks its report: argv, environment, affinity, parent, credentials.</summary>
    private static async Task CheckReport(SpawnOutcome outcome, string tag, int? cpu)
    {
        int i = outcome.Index;
        Expect(outcome.IsStarted, $"instance {i} failed: {outcome.Errno}");
        SpawnedProcess process = outcome.Process!;
        Expect(await process.WaitForExitAsync(TimeSpan.FromSeconds(60)), $"instance {i} did not exit");
        Expect(process.ExitCode == 0, $"instance {i} exited {process.ExitCode}");
        using JsonDocument json = JsonDocument.Parse(File.ReadAllText($"{Work}/{tag}-{i}.json"));
        JsonElement root = json.RootElement;
        string[] argv = root.GetProperty("argv").EnumerateArray().Select(e => e.GetString()!).ToArray();
        Expect(argv.SequenceEqual([s_report, $"inst-{i}", $"--report-out={Work}/{tag}-{i}.json"]), $"instance {i}: argv {string.Join(' ', argv)}");
        string[] env = root.GetProperty("env").EnumerateArray().Select(e => e.GetString()!).Order(StringComparer.Ordinal).ToArray();
        Expect(env.SequenceEqual([$"KGUEST_TAG=tag", $"PSPAWN_INSTANCE={i}"]), $"instance {i}: env {string.Join(' ', env)}");
        if (cpu is int c)
        {
            int[] affinity = root.GetProperty("affinity").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Expect(affinity.SequenceEqual([c]), $"instance {i}: affinity {string.Join(',', affinity)}, not {c}");
        }

        Expect(root.GetProperty("pid").GetInt32() == process.Id, $"instance {i}: pid");
        Expect(root.GetProperty("ppid").GetInt32() == Environment.ProcessId, $"instance {i}: parent {root.GetProperty("ppid").GetInt32()}, not {Environment.ProcessId}");
        Expect(root.GetProperty("uid").GetInt32() == (int)Syscall.getuid(), $"instance {i}: uid");
    }

    private static async Task BatchReport()
    {
        await using PSpawnContext context = Kernel(s_report);
        Expect(context.Mode == PSpawnMode.Kernel, $"mode {context.Mode}");
        int ncpus = Environment.ProcessorCount;
        SpawnInstance[] batch = Enumerable.Range(0, 6).Select(i => Instance("sync", i, new HashSet<int> { i % ncpus })).ToArray();
        SpawnBatchResult result = context.SpawnBatch(batch, s_exactEnvironment);
        Expect(result.Backend == SpawnBackend.Kernel, $"backend {result.Backend}");
        Expect(result.AllStarted, result.ToString());
        foreach (SpawnOutcome outcome in result.Outcomes)
        {
            await CheckReport(outcome, "sync", outcome.Index % ncpus);
        }

        Expect(context.ProxyProcessId is null && context.ProxyCount == 0, "a proxy was started");
    }

    private static async Task PerInstanceErrors()
    {
        await using PSpawnContext context = Kernel(s_report);
        SpawnInstance[] batch = Enumerable.Range(0, 4).Select(i => Instance("err", i, null)).ToArray();
        batch[1] = batch[1] with { Cpus = new HashSet<int> { 7 } };            // no such CPU in a 2-vCPU guest
        batch[2] = batch[2] with { Arguments = ["inst-2", new string('x', 200_000)] }; // over MAX_ARG_STRLEN
        SpawnBatchResult result = context.SpawnBatch(batch, s_exactEnvironment);
        Expect(result.Outcomes[1].Errno == Errno.EINVAL, $"absent CPU: {result.Outcomes[1]}");
        Expect(result.Outcomes[2].Errno == Errno.E2BIG, $"huge argument: {result.Outcomes[2]}");
        Expect(result.Outcomes[2].Exception is PSpawnArgumentException, $"E2BIG as {result.Outcomes[2].Exception?.GetType().Name}");
        await CheckReport(result.Outcomes[0], "err", null);
        await CheckReport(result.Outcomes[3], "err", null);
    }

    private static async Task AsyncSession()
    {
        await using PSpawnContext context = Kernel(s_report);
        int ncpus = Environment.ProcessorCount;
        SpawnInstance[] batch = Enumerable.Range(0, 40).Select(i => Instance("async", i, new HashSet<int> { (i + 1) % ncpus })).ToArray();
        SpawnSession session = context.StartBatch(batch, s_exactEnvironment);
        var seen = new List<SpawnOutcome>();
        await foreach (SpawnOutcome outcome in session)
        {
            seen.Add(outcome);
        }

        SpawnBatchResult result = await session;
        Expect(seen.Count == 40 && seen.Select(o => o.Index).Order().SequenceEqual(Enumerable.Range(0, 40)), $"enumerated {seen.Count} outcomes");
        Expect(result.Backend == SpawnBackend.Kernel && result.AllStarted, $"{result}");
        foreach (SpawnOutcome outcome in result.Outcomes)
        {
            await CheckReport(outcome, "async", (outcome.Index + 1) % ncpus);
        }

        // SpawnBatchAsync: the same, awaited.
        SpawnBatchResult second = await context.SpawnBatchAsync(batch.Take(3).ToArray(), s_exactEnvironment);
        Expect(second.Backend == SpawnBackend.Kernel && second.AllStarted, $"{second}");
        foreach (SpawnOutcome outcome in second.Outcomes)
        {
            await CheckReport(outcome, "async", (outcome.Index + 1) % ncpus);
        }
    }

    /// <summary>
    /// 200 no-ops in one batch: the first exit while the others are launched, and their SIGCHLD (queued: the runtime
    /// handles it) makes the kernel refuse clones with ERESTARTNOINTR; the library relaunches those, so all start.
    /// </summary>
    private static async Task SigchldDuringLaunch()
    {
        await using PSpawnContext context = Kernel(Path.Combine(Path.GetDirectoryName(s_report)!, "noop"));
        SpawnBatchResult result = context.SpawnBatch(Enumerable.Repeat(new SpawnInstance(), 200).ToArray());
        string errors = string.Join(", ", result.Failed.GroupBy(f => f.Errno).Select(g => $"{g.Count()} x {g.Key}"));
        Expect(result.AllStarted && result.Backend == SpawnBackend.Kernel, $"{result}: {errors}");
        foreach (SpawnedProcess child in result.Started)
        {
            Expect(await child.WaitForExitAsync(TimeSpan.FromSeconds(60)) && child.ExitCode == 0, $"{child}");
        }
    }

    private static async Task SpawnN()
    {
        await using PSpawnContext context = Kernel(s_report);
        IReadOnlyList<SpawnedProcess> children = context.SpawnN(5, ["--report-exit=3", $"--report-out={Work}/spawn-n.json"]);
        foreach (SpawnedProcess child in children)
        {
            Expect(await child.WaitForExitAsync(TimeSpan.FromSeconds(60)), $"{child} did not exit");
            Expect(child.ExitCode == 3, $"{child}: exit code {child.ExitCode}");
        }
    }

    private static async Task BadFiles()
    {
        string missing = $"{Work}/vanishing";
        File.Copy(s_report, missing, overwrite: true);
        await using PSpawnContext context = Kernel(missing);
        File.Delete(missing);
        SpawnBatchResult gone = context.SpawnBatch([new SpawnInstance(), new SpawnInstance()]);
        Expect(gone.Outcomes.All(o => o.Errno == Errno.ENOENT), $"deleted file: {string.Join("; ", gone.Outcomes)}");
        Expect(gone.Outcomes[0].Exception is PSpawnFileNotFoundException, $"ENOENT as {gone.Outcomes[0].Exception?.GetType().Name}");

        string script = $"{Work}/not-executable";
        File.WriteAllText(script, "#!/bin/sh\n");
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        await using PSpawnContext second = Kernel(script);
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        SpawnBatchResult denied = second.SpawnBatch([new SpawnInstance()]);
        Expect(denied.Outcomes[0].Errno == Errno.EACCES, $"not executable: {denied.Outcomes[0]}");

        Expect(Throws<PSpawnFileNotFoundException>(() => Kernel("/nonexistent/program")), "Create of a missing file");
        Expect(Throws<PSpawnAccessDeniedException>(() => Kernel(script)), "Create of a file that is not executable");
    }

    private static async Task OfflineCpu()
    {
        const string online = "/sys/devices/system/cpu/cpu1/online";
        Expect(Environment.ProcessorCount >= 2, "needs 2 CPUs");
        await using PSpawnContext context = Kernel(s_report);
        File.WriteAllText(online, "0");
        SpawnBatchResult result;
        try
        {
            result = context.SpawnBatch([Instance("offline", 0, new HashSet<int> { 1 }), Instance("offline", 1, new HashSet<int> { 0, 1 })], s_exactEnvironment);
            if (result.Outcomes[1].Process is SpawnedProcess survivor)
            {
                await survivor.WaitForExitAsync(TimeSpan.FromSeconds(60)); // reports its affinity before CPU 1 is back
            }
        }
        finally
        {
            File.WriteAllText(online, "1");
        }

        Expect(result.Outcomes[0].Errno == Errno.EINVAL, $"offline CPU: {result.Outcomes[0]}");
        await CheckReport(result.Outcomes[1], "offline", 0);
    }

    private static async Task RequireAndAuto()
    {
        var withCwd = new SpawnOptions { WorkingDirectory = "/tmp" };
        await using (PSpawnContext required = Kernel(s_report))
        {
            var e = Catch<PSpawnKernelPathException>(() => required.SpawnBatch([new SpawnInstance()], withCwd));
            Expect(e?.Errno == Errno.EOPNOTSUPP && e.Message.Contains("working directory", StringComparison.Ordinal), $"Require + cwd: {e?.Message}");
            Expect(Throws<PSpawnKernelPathException>(() => required.Spawn([], new SpawnOptions { StandardOutput = StdioTarget.Null })), "Require + stdout redirection");
            Expect(required.ProxyProcessId is null, "a proxy was started under Require");
        }

        var forcedRelay = Catch<PSpawnKernelPathException>(() => PSpawnContext.Create(s_report, options: new PSpawnContextOptions { KernelPath = KernelPath.Require, ForceRelayMode = true }));
        Expect(forcedRelay?.Errno == Errno.EOPNOTSUPP, "Require + ForceRelayMode");

        // Auto with the native library: the zygote, which is faster wherever it can serve.
        await using PSpawnContext auto = Kernel(s_report, KernelPath.Auto);
        Expect(auto.Mode == PSpawnMode.Zygote, $"Auto mode {auto.Mode}");
        SpawnBatchResult zygote = auto.SpawnBatch([Instance("auto", 0, null)], s_exactEnvironment);
        Expect(zygote.Backend == SpawnBackend.Zygote, $"Auto, no options: {zygote.Backend}");
        Expect(auto.ProxyProcessId is int, "no proxy under Auto");
        await CheckReport(zygote.Outcomes[0], "auto", null);

        // Auto where a zygote cannot serve (a static executable, fallback mode): the native core's kernel backend takes
        // what it can express, the exec backend the rest.
        string statik = Path.Combine(Path.GetDirectoryName(s_report)!, "noop_static");
        await using PSpawnContext fallback = PSpawnContext.Create(statik, options: new PSpawnContextOptions { FallbackPolicy = FallbackPolicy.PosixSpawn });
        Expect(fallback.Mode == PSpawnMode.Fallback, $"static: mode {fallback.Mode}");
        SpawnBatchResult byKernel = fallback.SpawnBatch([new SpawnInstance()]);
        Expect(byKernel.Backend == SpawnBackend.Kernel && byKernel.AllStarted, $"static, no options: {byKernel}");
        SpawnBatchResult byExec = fallback.SpawnBatch([new SpawnInstance()], new SpawnOptions { WorkingDirectory = "/tmp" });
        Expect(byExec.Backend == SpawnBackend.Exec && byExec.AllStarted, $"static + cwd: {byExec}");
        foreach (SpawnedProcess process in byKernel.Started.Concat(byExec.Started))
        {
            await process.WaitForExitAsync();
        }
    }

    private static async Task Forbid()
    {
        await using PSpawnContext context = Kernel(s_report, KernelPath.Forbid);
        Expect(context.Mode == PSpawnMode.Zygote, $"mode {context.Mode}");
        SpawnBatchResult result = context.SpawnBatch([Instance("forbid", 0, null)], s_exactEnvironment);
        Expect(result.Backend == SpawnBackend.Zygote, $"backend {result.Backend}");
        await CheckReport(result.Outcomes[0], "forbid", null);
    }

    private static async Task NativeAbsent()
    {
        Expect(!File.Exists(Path.Combine(AppContext.BaseDirectory, "libpspawn.so")), "libpspawn.so is beside the program");
        await using PSpawnContext context = Kernel(s_report, KernelPath.Auto);
        Expect(context.Mode == PSpawnMode.Kernel, $"mode {context.Mode}");
        // A request only a zygote can serve needs the library: proof that the batches above did without it.
        Expect(Throws<DllNotFoundException>(() => context.SpawnBatch([new SpawnInstance()], new SpawnOptions { WorkingDirectory = "/tmp" })),
            "a zygote request found a native library");
    }

    private static Task NoChildrenLeft()
    {
        int pid = Syscall.waitpid(-1, out _, WaitOptions.WNOHANG | (WaitOptions)0x40000000); // __WALL
        Expect(pid < 0 && Stdlib.GetLastError() == Errno.ECHILD, $"a child is left over (waitpid -> {pid})");
        return Task.CompletedTask;
    }

    private static bool Throws<T>(Action action)
        where T : Exception => Catch<T>(action) is not null;

    private static T? Catch<T>(Action action)
        where T : Exception
    {
        try
        {
            action();
            return null;
        }
        catch (T e)
        {
            return e;
        }
    }
}

internal static class Bench
{
    public static async Task<int> Run(string bin, int n, int rounds)
    {
        string noop = Path.GetFullPath(Path.Combine(bin, "noop"));
        Console.WriteLine($"machine: {Environment.ProcessorCount} vCPUs, {RuntimeInformation.OSDescription}, .NET {Environment.Version}, kernel path {(PSpawnKernel.IsAvailable ? "available" : "absent")}");
        await using PSpawnContext kernel = PSpawnContext.Create(noop, options: new PSpawnContextOptions { KernelPath = KernelPath.Require });
        await using PSpawnContext zygote = PSpawnContext.Create(noop, options: new PSpawnContextOptions { KernelPath = KernelPath.Forbid });
        SpawnInstance[] batch = Enumerable.Repeat(new SpawnInstance(), n).ToArray();
        var methods = new (string Name, Func<Task> Body)[]
        {
            ("kernel SpawnBatch", () => SpawnAndWait(kernel, batch, SpawnBackend.Kernel)),
            ("zygote SpawnBatch", () => SpawnAndWait(zygote, batch, SpawnBackend.Zygote)),
            ("Process.Start", () => ProcessStart(noop, n)),
        };
        var times = methods.ToDictionary(m => m.Name, _ => new List<double>());
        foreach (var method in methods)
        {
            await method.Body(); // warm-up
        }

        for (int round = 0; round < rounds; round++)
        {
            for (int k = 0; k < methods.Length; k++)
            {
                var method = methods[(k + round) % methods.Length]; // rotated
                var clock = Stopwatch.StartNew();
                await method.Body();
                times[method.Name].Add(clock.Elapsed.TotalMilliseconds);
            }
        }

        double processStart = Median(times["Process.Start"]);
        foreach (var (name, list) in times)
        {
            double median = Median(list);
            Console.WriteLine($"bench {name}: N={n}, median {median:0.0} ms ({n * 1000 / median:0.0} spawns/s; min {list.Min():0.0}, max {list.Max():0.0}), {processStart / median:0.00}x Process.Start");
        }

        return 0;
    }

    private static async Task SpawnAndWait(PSpawnContext context, SpawnInstance[] batch, SpawnBackend expected)
    {
        SpawnBatchResult result = context.SpawnBatch(batch);
        if (!result.AllStarted || result.Backend != expected)
        {
            string errors = string.Join(", ", result.Failed.GroupBy(f => f.Errno).Select(g => $"{g.Count()} x {g.Key}"));
            throw new InvalidOperationException($"{result} ({errors}), expected {expected}");
        }

        await Task.WhenAll(result.Started.Select(p => p.WaitForExitAsync()));
    }

    private static async Task ProcessStart(string path, int n)
    {
        var processes = new Process[n];
        for (int i = 0; i < n; i++)
        {
            processes[i] = Process.Start(new ProcessStartInfo(path) { UseShellExecute = false })!;
        }

        await Task.WhenAll(processes.Select(p => p.WaitForExitAsync()));
        foreach (Process process in processes)
        {
            process.Dispose();
        }
    }

    private static double Median(List<double> values)
    {
        double[] sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
