using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Mono.Unix.Native;
using Spectre.Console;

namespace PSpawn.Cli;

/// <summary>Runs <c>pspawn run</c>: starts the instances, relays their output, waits, and aggregates their status.</summary>
internal sealed partial class Launcher : IDisposable
{
    private const int SIGINT = 2;
    private const int SIGKILL = 9;
    private const int SIGTERM = 15;

    private readonly RunSettings _settings;
    private readonly RankLayout _layout;
    private readonly string _path;
    private readonly InstanceRecord[] _records;
    private readonly CancellationTokenSource _stopLaunching = new();
    private readonly Lock _gate = new();
    private readonly Lock _outputGate = new();
    private readonly TextWriter _stdout;
    private readonly TextWriter _stderr;
    private int _launched;
    private int _exited;
    private int _stopSignal; // what was forwarded to the instances (SIGINT on interrupt, SIGTERM on timeout); 0: none
    private int _interruptedBy;
    private bool _timedOut;
    private bool _killed;

    public Launcher(RunSettings settings, RankLayout layout, string path)
    {
        _settings = settings;
        _layout = layout;
        _path = path;
        _records = Enumerable.Range(0, settings.Count).Select(i => new InstanceRecord(layout.Rank(i), i)).ToArray();
        _stdout = Console.Out;
        _stderr = Console.Error;
    }

    public void Dispose() => _stopLaunching.Dispose();

    public async Task<int> RunAsync()
    {
        using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);

        PSpawnContext context;
        try
        {
            context = PSpawnContext.Create(_path, -1, new PSpawnContextOptions
            {
                // With --deferred the program's main already ran in the proxies: an exec fallback would run it again
                // per instance, so a program that cannot be frozen at pspawn_ready() is an error instead.
                FallbackPolicy = _settings.Deferred ? FallbackPolicy.Throw : FallbackPolicy.PosixSpawn,
                DeferredForkPoint = _settings.Deferred,
                StartupTimeout = _settings.StartupTimeout ?? PSpawnContextOptions.DefaultStartupTimeout,
                ProxyCount = _settings.Proxies,
                WarmPool = _settings.Pool is int size ? new WarmPoolOptions { Size = size } : null,
            });
        }
        catch (Exception ex) when (ex is PSpawnException or IPSpawnError or DllNotFoundException or ArgumentException)
        {
            int code = ex switch
            {
                PSpawnFileNotFoundException => ExitCodes.NotFound,
                PSpawnAccessDeniedException or PSpawnUnsupportedExecutableException => ExitCodes.CannotExecute,
                _ => ExitCodes.SpawnFailed,
            };
            await _stderr.WriteLineAsync($"pspawn: {_path}: {ex.Message}{DeferredHint(ex)}");
            return code;
        }

        await using (context)
        {
            bool progress = !_settings.Quiet && !Console.IsErrorRedirected && AnsiConsole.Profile.Capabilities.Interactive;
            var stopwatch = Stopwatch.StartNew();
            using var timeout = _settings.Timeout is TimeSpan limit ? new Timer(_ => OnTimeout(), null, limit, Timeout.InfiniteTimeSpan) : null;

            Task run = RunInstancesAsync(context);
            try
            {
                if (progress)
                {
                    await ShowProgressAsync(run);
                }
                else
                {
                    await run;
                }
            }
            catch (Exception ex) when (ex is PSpawnException or IPSpawnError or ArgumentException or IOException or UnauthorizedAccessException)
            {
                // The launch as a whole failed (e.g. the --output files directory cannot be created): stop what did start.
                await _stderr.WriteLineAsync($"pspawn: {ex.Message}");
                KillAll();
                return ExitCodes.SpawnFailed;
            }

            stopwatch.Stop();
            int status = Aggregate();
            Report(context, stopwatch.Elapsed, status);
            if (_settings.JsonPath is string json)
            {
                WriteJson(json, context, status);
            }

            return status;
        }
    }

    /// <summary>What a failed --deferred start-up most likely means, for the error line.</summary>
    private string DeferredHint(Exception ex) => !_settings.Deferred || ex is not IPSpawnError error ? string.Empty : error.Errno switch
    {
        Errno.EPIPE => " (--deferred: the program must call pspawn_ready() from native/include/pspawn_ready.h; it returned or exited without it)",
        Errno.EDEADLK => " (--deferred: a thread was running when the program called pspawn_ready(); it must be single-threaded there)",
        Errno.ETIMEDOUT => " (--deferred: the program did not reach pspawn_ready() within the start-up timeout)",
        _ => " (--deferred: no exec fallback)",
    };

    private async Task RunInstancesAsync(PSpawnContext context)
    {
        var waits = new List<Task>(_records.Length);
        if (_settings.Output is OutputMode.Inherit or OutputMode.None)
        {
            // One batch (a launch session) for all instances: per-instance arguments, environment and CPUs.
            var options = new SpawnOptions
            {
                StandardInput = StdioTarget.Null,
                StandardOutput = _settings.Output == OutputMode.None ? StdioTarget.Null : StdioTarget.Inherit,
                StandardError = _settings.Output == OutputMode.None ? StdioTarget.Null : StdioTarget.Inherit,
            };
            SpawnInstance[] instances = Enumerable.Range(0, _records.Length).Select(i => new SpawnInstance(Arguments(i))
            {
                Environment = Environment(i),
                Cpus = Cpus(i),
            }).ToArray();
            SpawnSession session = context.StartBatch(instances, options, _stopLaunching.Token);
            await foreach (SpawnOutcome outcome in session)
            {
                waits.Add(Started(outcome.Index, outcome.Process, outcome.Exception));
            }

            await session;
        }
        else
        {
            // Per-instance standard output (pipes or files) is not something a batch can give (SpawnInstance has no
            // stdio of its own), so each instance is one Spawn request, several in flight at once.
            if (_settings.Output == OutputMode.Files)
            {
                Directory.CreateDirectory(_settings.OutputDirectory!);
            }

            int next = -1;
            var starters = Enumerable.Range(0, Math.Clamp(context.ProxyCount, 1, _records.Length)).Select(_ => Task.Run(() =>
            {
                var mine = new List<Task>();
                for (int i = Interlocked.Increment(ref next); i < _records.Length; i = Interlocked.Increment(ref next))
                {
                    if (_stopLaunching.IsCancellationRequested)
                    {
                        mine.Add(Started(i, null, new OperationCanceledException("not started: pspawn was stopping")));
                        continue;
                    }

                    SpawnedProcess? process = null;
                    Exception? error = null;
                    try
                    {
                        process = context.Spawn(Arguments(i), InstanceOptions(i));
                    }
                    catch (Exception ex) when (ex is PSpawnException or IPSpawnError or ArgumentException or IOException or UnauthorizedAccessException)
                    {
                        error = ex;
                    }

                    mine.Add(Started(i, process, error));
                }

                return mine;
            })).ToArray();
            foreach (List<Task> started in await Task.WhenAll(starters))
            {
                waits.AddRange(started);
            }
        }

        await Task.WhenAll(waits);
    }

    private SpawnOptions InstanceOptions(int i)
    {
        int rank = _records[i].Rank;
        string prefix = $"[{rank.ToString(CultureInfo.InvariantCulture)}] ";
        var options = new SpawnOptions
        {
            StandardInput = StdioTarget.Null,
            Environment = Environment(i),
            Cpus = Cpus(i),
        };
        if (_settings.Output == OutputMode.Files)
        {
            string directory = _settings.OutputDirectory!;
            return options with
            {
                StandardOutput = StdioTarget.File(Path.Combine(directory, $"{rank.ToString(CultureInfo.InvariantCulture)}.out")),
                StandardError = StdioTarget.File(Path.Combine(directory, $"{rank.ToString(CultureInfo.InvariantCulture)}.err")),
            };
        }

        return options with
        {
            OnOutputLine = line => WriteLine(_stdout, prefix, line),
            OnErrorLine = line => WriteLine(_stderr, prefix, line),
        };
    }

    private List<string> Arguments(int i) => _settings.Arguments.Select(a => _layout.Substitute(a, i)).ToList();

    private Dictionary<string, string?> Environment(int i)
    {
        Dictionary<string, string?> variables = _layout.Variables(i);
        foreach (var (name, value) in _settings.Environment)
        {
            variables[name] = _layout.Substitute(value, i);
        }

        return variables;
    }

    private HashSet<int>? Cpus(int i) => _settings.Cpus is { Count: > 0 } cpus ? [cpus[i % cpus.Count]] : null;

    /// <summary>Records a launch outcome and returns the task that waits for the instance.</summary>
    private Task Started(int i, SpawnedProcess? process, Exception? error)
    {
        InstanceRecord record = _records[i];
        record.Start = DateTimeOffset.UtcNow;
        Interlocked.Increment(ref _launched);
        if (process is null)
        {
            record.SpawnError = error switch
            {
                IPSpawnError e => $"{e.Errno}: {error.Message}",
                null => "not started",
                _ => error.Message,
            };
            record.End = record.Start;
            Interlocked.Increment(ref _exited);
            return Task.CompletedTask;
        }

        int stop;
        lock (_gate)
        {
            record.Process = process;
            stop = _killed ? SIGKILL : _stopSignal;
        }

        if (stop != 0)
        {
            Signal(process, stop); // it started while pspawn was stopping
        }

        return WaitAsync(record, process);
    }

    private async Task WaitAsync(InstanceRecord record, SpawnedProcess process)
    {
        await process.WaitForExitAsync();
        record.End = DateTimeOffset.UtcNow;
        record.Signal = process.TerminatingSignal;
        record.ExitCode = record.Signal is null ? process.ExitCode : null;
        Interlocked.Increment(ref _exited);
        process.Dispose();
    }
}
