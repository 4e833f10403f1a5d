using System.Globalization;

namespace PSpawn.Compare;

/// <summary>Command line of the comparison (hand-parsed: no dependency for a dozen flags).</summary>
internal sealed class Options
{
    public const string NativeMethodsDefault = "sfork,afork,vfork,posix_spawn,pspawn,pspawn_n,pspawn_vector,pspawn_vector_async";
    public const string DotNetMethodsDefault = "Process.Start,Spawn,SpawnN,SpawnBatch,SpawnBatchAsync,PSpawnProcess.Start";

    /// <summary>Every method this tool knows: the native ones run in spawnbench, the others in this process.</summary>
    public static readonly string[] NativeMethods =
        ["sfork", "afork", "vfork", "posix_spawn", "pspawn", "pspawn_n", "pspawn_n_lazy", "pspawn_n_prefault", "pspawn_n_2p",
         "pspawn_vector", "pspawn_vector_async"];

    public static readonly string[] DotNetMethods = ["Process.Start", "Spawn", "SpawnN", "SpawnNAsync", "SpawnBatch", "SpawnBatchAsync", "PSpawnProcess.Start"];

    public List<string> Targets { get; } = ["noop", "pynamic100", "pynamic400"];
    public int? N { get; set; }
    public int? Rounds { get; set; }
    public int? LatencySamples { get; set; }
    public List<string> Methods { get; } = [.. (NativeMethodsDefault + "," + DotNetMethodsDefault).Split(',')];
    public string Environment { get; set; } = "empty";
    public string? MarkdownPath { get; set; }
    public string? CsvPath { get; set; }
    public string? JsonPath { get; set; }
    public string? PlotPath { get; set; }
    public List<int>? Scaling { get; set; }
    public string? ScalingTarget { get; set; }
    public string? NativeDir { get; set; }
    public bool Quiet { get; set; }

    /// <summary>Rounds of the transparent-mode section (make -j2, xargs -P2; plain and LD_PRELOAD); 0 skips it.</summary>
    public int TransparentRounds { get; set; } = 3;

    /// <summary>Launches of the target per transparent-mode workload.</summary>
    public int TransparentN { get; set; } = 200;

    public const string TransparentTarget = "pynamic100";

    public static string Usage => """
        PSpawn.Compare - spawn throughput and latency: PSpawn against posix_spawn, vfork, fork+exec and Process.Start.

        usage: dotnet run -c Release --project benchmarks/PSpawn.Compare -- [options]

          --targets LIST      fixtures (in artifacts/native/bin) or paths, comma-separated
                              (default noop,pynamic100,pynamic400)
          --n N               instances per throughput measurement, for every target
                              (default per target: noop 100, pynamic10 60, pynamic100 30, pynamic400 10)
          --rounds R          rounds; methods are interleaved in each round (default 5; 3 for pynamic400)
          --latency K         single-spawn latency samples per method and round (default noop 10, pynamic400 3, others 5)
          --methods LIST      comma-separated (default sfork,afork,vfork,posix_spawn,pspawn,pspawn_n,
                              pspawn_vector,pspawn_vector_async,Process.Start,Spawn,SpawnN,SpawnBatch,
                              SpawnBatchAsync,PSpawnProcess.Start); also pspawn_n_lazy (proxy without bind-now),
                              pspawn_n_prefault (proxy with prefault), pspawn_n_2p (two proxies,
                              one per CPU), SpawnNAsync (SpawnN, then Task.WhenAll of WaitForExitAsync);
                              pspawn_vector/SpawnBatch: one batch, per-instance environment (RANK=i);
                              pspawn_vector_async/SpawnBatchAsync: the same as a launch session (.NET:
                              await foreach over its outcomes, then Task.WhenAll of WaitForExitAsync);
                              "all" = every method
          --env KIND          environment of the instances: empty (default) or realistic (10 LD_LIBRARY_PATH
                              entries before the real one, 50 variables)
          --scaling LIST      also measure throughput against N (e.g. 1,10,100,1000) on --scaling-target
                              (default: the first target); with --plot and no --scaling: 1,10,100,300
          --scaling-target T  the target of --scaling
          --markdown FILE     write the results as Markdown
          --csv FILE          write every measurement (per round) and the summaries as CSV
          --json FILE         write everything as JSON
          --plot FILE.png     plot throughput against target for each method, and against N
          --native-dir DIR    the CMake build holding bin/spawnbench and the fixtures (default artifacts/native;
                              also $PSPAWN_BENCH_NATIVE_DIR)
          --transparent-rounds R
                              rounds of the transparent-mode section: `make -j2` and `xargs -P2 -n1` running
                              pynamic100 --transparent-n times, plainly and with libpspawn_intercept.so in the
                              launcher's LD_PRELOAD, alternating (default 3; 0 skips the section; a launcher
                              missing from PATH is skipped with a message)
          --transparent-n N   launches per transparent-mode workload (default 200)
          --quiet             no progress on standard error
          -h, --help          this text
        """;

    public static Options Parse(string[] args)
    {
        var o = new Options();
        bool methodsGiven = false;
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            string? inline = null;
            int eq = arg.IndexOf('=', StringComparison.Ordinal);
            if (arg.StartsWith("--", StringComparison.Ordinal) && eq > 0)
            {
                inline = arg[(eq + 1)..];
                arg = arg[..eq];
            }

            string Value()
            {
                if (inline != null)
                {
                    return inline;
                }

                if (i + 1 >= args.Length)
                {
                    throw new UsageException($"{arg} needs a value");
                }

                return args[++i];
            }

            switch (arg)
            {
                case "-h":
                case "--help":
                    throw new HelpRequestedException();
                case "--targets":
                    o.Targets.Clear();
                    o.Targets.AddRange(SplitList(Value()));
                    break;
                case "--n":
                    o.N = PositiveInt(arg, Value());
                    break;
                case "--rounds":
                    o.Rounds = PositiveInt(arg, Value());
                    break;
                case "--latency":
                    o.LatencySamples = PositiveInt(arg, Value(), 0);
                    break;
                case "--methods":
                    o.Methods.Clear();
                    methodsGiven = true;
                    foreach (string m in SplitList(Value()))
                    {
                        if (m == "all")
                        {
                            o.Methods.AddRange(NativeMethods);
                            o.Methods.AddRange(DotNetMethods);
                            continue;
                        }

                        string? known = NativeMethods.Concat(DotNetMethods)
                            .FirstOrDefault(k => string.Equals(k, m, StringComparison.OrdinalIgnoreCase));
                        o.Methods.Add(known ?? throw new UsageException($"unknown method '{m}'"));
                    }

                    break;
                case "--env":
                    o.Environment = Value();
                    if (o.Environment is not ("empty" or "realistic"))
                    {
                        throw new UsageException("--env must be empty or realistic");
                    }

                    break;
                case "--scaling":
                    o.Scaling = [.. SplitList(Value()).Select(v => PositiveInt(arg, v))];
                    break;
                case "--scaling-target":
                    o.ScalingTarget = Value();
                    break;
                case "--markdown":
                    o.MarkdownPath = Value();
                    break;
                case "--csv":
                    o.CsvPath = Value();
                    break;
                case "--json":
                    o.JsonPath = Value();
                    break;
                case "--plot":
                    o.PlotPath = Value();
                    break;
                case "--native-dir":
                    o.NativeDir = Value();
                    break;
                case "--transparent-rounds":
                    o.TransparentRounds = PositiveInt(arg, Value(), 0);
                    break;
                case "--transparent-n":
                    o.TransparentN = PositiveInt(arg, Value());
                    break;
                case "--quiet":
                    o.Quiet = true;
                    break;
                default:
                    throw new UsageException($"unknown option '{args[i]}'");
            }
        }

        if (methodsGiven && o.Methods.Count == 0)
        {
            throw new UsageException("--methods selects nothing");
        }

        var distinct = o.Methods.Distinct(StringComparer.Ordinal).ToList();
        o.Methods.Clear();
        o.Methods.AddRange(distinct);
        if (o.Targets.Count == 0)
        {
            throw new UsageException("--targets selects nothing");
        }

        if (o.PlotPath != null && o.Scaling == null)
        {
            o.Scaling = [1, 10, 100, 300];
        }

        return o;
    }

    /// <summary>Instances per measurement for a target: --n, else a default that keeps the run near a minute.</summary>
    public int NFor(string target) => N ?? Path.GetFileName(target) switch
    {
        "pynamic400" => 10,
        "pynamic100" => 30,
        "pynamic10" => 60,
        "cow100m" => 5,
        _ => 100,
    };

    public int RoundsFor(string target) => Rounds ?? (Path.GetFileName(target) == "pynamic400" ? 3 : 5);

    public int LatencyFor(string target) => LatencySamples ?? Path.GetFileName(target) switch
    {
        "noop" or "noop_static" => 10,
        "pynamic400" or "cow100m" => 3,
        _ => 5,
    };

    private static string[] SplitList(string value) =>
        value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static int PositiveInt(string option, string value, int min = 1)
    {
        if (!int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) || n < min || n > 1_000_000)
        {
            throw new UsageException($"{option}: '{value}' is not an integer in [{min}, 1000000]");
        }

        return n;
    }
}

internal sealed class UsageException(string message) : Exception(message);

internal sealed class HelpRequestedException : Exception;
