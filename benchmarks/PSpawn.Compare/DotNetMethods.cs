using System.Diagnostics;

namespace PSpawn.Compare;

/// <summary>
/// The .NET-side methods, measured in this process exactly as spawnbench measures the native ones:
/// Process.Start (start all, then wait for all), PSpawn Spawn (one request per instance, then wait
/// for all) and PSpawn SpawnN (one request, then wait for all: WaitForExit on each, or, for SpawnNAsync,
/// one Task.WhenAll of WaitForExitAsync); SpawnBatch (one batch whose instance i has RANK=i in its environment,
/// as spawnbench's pspawn_vector; the instances are built once, their encoding is measured) and SpawnBatchAsync
/// (the same batch as a launch session: await foreach over its outcomes, then one Task.WhenAll of WaitForExitAsync);
/// PSpawnProcess.Start (the Process.Start drop-in with the same ProcessStartInfo as Process.Start, start all then wait for
/// all, through its own starter whose context is created before the measurements).
/// </summary>
internal sealed class DotNetMethods : IDisposable
{
    private readonly string _path;
    private readonly string _label;
    private readonly IReadOnlyDictionary<string, string> _env;
    private readonly SpawnOptions _spawnOptions;
    private readonly Dictionary<string, PSpawnContext> _contexts = new(StringComparer.Ordinal);
    private readonly List<SpawnInstance> _instances = [];
    private readonly PSpawnProcessStarter? _starter;

    public DotNetMethods(string path, string label, IReadOnlyDictionary<string, string> env, IEnumerable<string> methods,
        List<ContextStart> contexts)
    {
        _path = path;
        _label = label;
        _env = env;
        _spawnOptions = SpawnOptions.WithExactEnvironment(env);
        foreach (string method in methods.Where(m => m is "Spawn" or "SpawnN" or "SpawnNAsync" or "SpawnBatch" or "SpawnBatchAsync"))
        {
            var options = new PSpawnContextOptions
            {
                ProxyEnvironment = env,
                FallbackPolicy = FallbackPolicy.PosixSpawn,
            };
            var sw = Stopwatch.StartNew();
            var ctx = PSpawnContext.Create(path, -1, options);
            double ms = sw.Elapsed.TotalMilliseconds;
            _contexts[method] = ctx;
            contexts.Add(new ContextStart(label, method, ".NET", ms, ProcCounters.RssKb(ctx.ProxyProcessId),
                ctx.Mode.ToString().ToLowerInvariant()));
        }

        if (methods.Contains("PSpawnProcess.Start"))
        {
            // The first start creates the starter's context; the measurements start after it.
            _starter = new PSpawnProcessStarter(new PSpawnProcessStarterOptions { IdleTimeout = Timeout.InfiniteTimeSpan });
            using PSpawnProcess first = _starter.Start(StartInfo());
            first.WaitForExit();
        }
    }

    public void Dispose()
    {
        foreach (var ctx in _contexts.Values)
        {
            ctx.Dispose();
        }

        _starter?.Dispose();
    }

    private ProcessStartInfo StartInfo()
    {
        var psi = new ProcessStartInfo(_path) { UseShellExecute = false };
        psi.Environment.Clear();
        foreach (var (k, v) in _env)
        {
            psi.Environment[k] = v;
        }

        return psi;
    }

    /// <summary>Starts `count` instances with `method` and waits for all; throws if one did not exit 0.</summary>
    private void SpawnAndWait(string method, int count)
    {
        switch (method)
        {
            case "Process.Start":
            {
                var psi = StartInfo();
                var procs = new Process[count];
                for (int i = 0; i < count; i++)
                {
                    procs[i] = Process.Start(psi) ?? throw new InvalidOperationException("Process.Start returned null");
                }

                foreach (var p in procs)
                {
                    p.WaitForExit();
                    int code = p.ExitCode;
                    p.Dispose();
                    Check(method, code);
                }

                break;
            }

            case "PSpawnProcess.Start":
            {
                var psi = StartInfo();
                var procs = new PSpawnProcess[count];
                for (int i = 0; i < count; i++)
                {
                    procs[i] = _starter!.Start(psi);
                }

                foreach (var p in procs)
                {
                    p.WaitForExit();
                    int code = p.ExitCode;
                    p.Dispose();
                    Check(method, code);
                }

                break;
            }

            case "Spawn":
            {
                var ctx = _contexts[method];
                var procs = new SpawnedProcess[count];
                for (int i = 0; i < count; i++)
                {
                    procs[i] = ctx.Spawn([], _spawnOptions);
                }

                WaitAll(method, procs);
                break;
            }

            case "SpawnN":
                WaitAll(method, _contexts[method].SpawnN(count, [], _spawnOptions));
                break;
            case "SpawnNAsync":
            {
                var procs = _contexts[method].SpawnN(count, [], _spawnOptions);
                Task.WhenAll(procs.Select(p => p.WaitForExitAsync())).GetAwaiter().GetResult();
                foreach (var p in procs)
                {
                    int code = p.ExitCode;
                    p.Dispose();
                    Check(method, code);
                }

                break;
            }

            case "SpawnBatch":
            {
                SpawnBatchResult result = _contexts[method].SpawnBatch(Instances(count), _spawnOptions).ThrowIfAnyFailed();
                WaitAll(method, result.Started);
                break;
            }

            case "SpawnBatchAsync":
                SpawnBatchAsync(method, count).GetAwaiter().GetResult();
                break;
            default:
                throw new ArgumentException($"not a .NET method: {method}", nameof(method));
        }
    }

    private async Task SpawnBatchAsync(string method, int count)
    {
        var exits = new List<Task>(count);
        var procs = new List<SpawnedProcess>(count);
        await foreach (SpawnOutcome outcome in _contexts[method].StartBatch(Instances(count), _spawnOptions).ConfigureAwait(false))
        {
            SpawnedProcess process = outcome.Process ?? throw outcome.Exception!;
            procs.Add(process);
            exits.Add(process.WaitForExitAsync());
        }

        await Task.WhenAll(exits).ConfigureAwait(false);
        foreach (var p in procs)
        {
            int code = p.ExitCode;
            p.Dispose();
            Check(method, code);
        }
    }

    /// <summary>The first `count` instances of the vector methods: no arguments, RANK=i (built once, as spawnbench does).</summary>
    private List<SpawnInstance> Instances(int count)
    {
        for (int i = _instances.Count; i < count; i++)
        {
            _instances.Add(new SpawnInstance
            {
                Environment = new Dictionary<string, string?> { ["RANK"] = i.ToString(System.Globalization.CultureInfo.InvariantCulture) },
            });
        }

        return count == _instances.Count ? _instances : _instances.GetRange(0, count);
    }

    private static void WaitAll(string method, IReadOnlyList<SpawnedProcess> procs)
    {
        foreach (var p in procs)
        {
            p.WaitForExit();
            int code = p.ExitCode;
            p.Dispose();
            Check(method, code);
        }
    }

    private static void Check(string method, int code)
    {
        if (code != 0)
        {
            throw new InvalidOperationException($"{method}: an instance exited with status {code}");
        }
    }

    private ProcCounters Proxy(string method) =>
        _contexts.TryGetValue(method, out var ctx) ? ProcCounters.Read(ctx.ProxyProcessId) : default;

    public void WarmUp(string method, int count) => SpawnAndWait(method, count);

    public Measurement Measure(string method, int n, int round, int latencySamples)
    {
        var m = new Measurement(_label, n, method, ".NET", round);
        var proxy0 = Proxy(method);
        var children0 = LibC.GetRUsage(LibC.RusageChildren);
        var self0 = LibC.GetRUsage(LibC.RusageSelf);
        long t0 = Stopwatch.GetTimestamp();
        SpawnAndWait(method, n);
        double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        var self1 = LibC.GetRUsage(LibC.RusageSelf);
        var children1 = LibC.GetRUsage(LibC.RusageChildren);
        var proxy = Proxy(method) - proxy0;

        m.Metrics[Metric.PerSec] = n / seconds;
        m.Metrics[Metric.LauncherCpu] = (self1.CpuMicroseconds - self0.CpuMicroseconds) / n;
        m.Metrics[Metric.ChildrenCpu] = (children1.CpuMicroseconds - children0.CpuMicroseconds) / n;
        m.Metrics[Metric.ChildrenFaults] = (double)(children1.MinorFaults - children0.MinorFaults) / n;
        m.Metrics[Metric.LauncherFaults] = (double)(self1.MinorFaults - self0.MinorFaults) / n;
        if (_contexts.TryGetValue(method, out var context) && context.ProxyProcessId is > 0)
        {
            m.Metrics[Metric.ProxyCpu] = proxy.CpuUs / n;
            m.Metrics[Metric.ProxyFaults] = proxy.MinorFaults / n;
        }

        if (latencySamples > 0)
        {
            var (lat, call) = Latency(method, latencySamples);
            m.Metrics[Metric.LatencyP50] = lat;
            m.Metrics[Metric.CallP50] = call;
        }

        return m;
    }

    /// <summary>p50 of: spawn call until the instance has exited and been reaped; spawn call until it returned.</summary>
    private (double Latency, double Call) Latency(string method, int samples)
    {
        var lat = new double[samples];
        var call = new double[samples];
        for (int i = 0; i < samples; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            int code;
            double callUs;
            switch (method)
            {
                case "Process.Start":
                {
                    using var p = Process.Start(StartInfo()) ?? throw new InvalidOperationException("Process.Start returned null");
                    callUs = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                    p.WaitForExit();
                    code = p.ExitCode;
                    break;
                }

                case "PSpawnProcess.Start":
                {
                    using var p = _starter!.Start(StartInfo());
                    callUs = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                    p.WaitForExit();
                    code = p.ExitCode;
                    break;
                }

                default:
                {
                    var ctx = _contexts[method];
                    using var p = method switch
                    {
                        "Spawn" => ctx.Spawn([], _spawnOptions),
                        "SpawnBatch" => ctx.SpawnBatch(Instances(1), _spawnOptions).ThrowIfAnyFailed().Started[0],
                        "SpawnBatchAsync" => ctx.SpawnBatchAsync(Instances(1), _spawnOptions).GetAwaiter().GetResult().ThrowIfAnyFailed().Started[0],
                        _ => ctx.SpawnN(1, [], _spawnOptions)[0],
                    };
                    callUs = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
                    p.WaitForExit();
                    code = p.ExitCode;
                    break;
                }
            }

            lat[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            call[i] = callUs;
            Check(method, code);
        }

        return (Stat.Of(lat).Median, Stat.Of(call).Median);
    }
}
