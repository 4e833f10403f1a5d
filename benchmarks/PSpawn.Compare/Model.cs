namespace PSpawn.Compare;

/// <summary>Metric names, shared with spawnbench's output (docs/benchmarks.md defines each).</summary>
internal static class Metric
{
    public const string PerSec = "per_sec";
    public const string LatencyP50 = "lat_p50_us";
    public const string CallP50 = "call_p50_us";
    public const string LauncherCpu = "launcher_cpu_us";
    public const string ChildrenCpu = "children_cpu_us";
    public const string ChildrenFaults = "children_minflt";
    public const string LauncherFaults = "launcher_minflt";
    public const string ProxyCpu = "proxy_cpu_us";
    public const string ProxyFaults = "proxy_minflt";

    public static readonly string[] All =
        [PerSec, LatencyP50, CallP50, LauncherCpu, ChildrenCpu, ChildrenFaults, LauncherFaults, ProxyCpu, ProxyFaults];
}

/// <summary>One method measured on one target in one round.</summary>
internal sealed class Measurement(string target, int n, string method, string via, int round)
{
    public string Target { get; } = target;
    public int N { get; } = n;
    public string Method { get; } = method;

    /// <summary>"C" (spawnbench, no managed code) or ".NET" (this process).</summary>
    public string Via { get; } = via;
    public int Round { get; } = round;
    public Dictionary<string, double> Metrics { get; } = new(StringComparer.Ordinal);
}

/// <summary>A proxy start (context creation), excluded from throughput.</summary>
internal sealed record ContextStart(string Target, string Method, string Via, double CreateMs, double ProxyRssKb, string Mode);

/// <summary>Median, min and max over rounds.</summary>
internal readonly record struct Stat(double Median, double Min, double Max, int Count)
{
    public static Stat Of(IEnumerable<double> values)
    {
        double[] v = [.. values.Where(x => !double.IsNaN(x)).Order()];
        if (v.Length == 0)
        {
            return new Stat(double.NaN, double.NaN, double.NaN, 0);
        }

        double median = v.Length % 2 == 1 ? v[v.Length / 2] : (v[(v.Length / 2) - 1] + v[v.Length / 2]) / 2;
        return new Stat(median, v[0], v[^1], v.Length);
    }

    public bool IsEmpty => Count == 0;
}

internal sealed class MachineInfo
{
    public string Cpu { get; init; } = "unknown";
    public int Cores { get; init; }
    public string Kernel { get; init; } = "unknown";
    public string Glibc { get; init; } = "unknown";
    public string DotNet { get; init; } = "unknown";
    public string PSpawnNative { get; init; } = "unknown";
    public string LoadAverage { get; init; } = "unknown";
    public string Numa { get; init; } = "unknown";

    public override string ToString() =>
        $"{Cpu}, {Cores} cores, {Numa}, Linux {Kernel}, glibc {Glibc}, {DotNet}, libpspawn {PSpawnNative} (load average at start {LoadAverage})";
}

/// <summary>Everything one run measured.</summary>
internal sealed class RunResults
{
    public required MachineInfo Machine { get; init; }
    public required string Environment { get; init; }
    public required IReadOnlyList<string> Methods { get; init; }
    public required IReadOnlyList<string> Targets { get; init; }
    public List<Measurement> Main { get; } = [];
    public List<Measurement> Scaling { get; } = [];
    public List<ContextStart> Contexts { get; } = [];
    public string? ScalingTarget { get; set; }

    /// <summary>The transparent-mode section (null: not run, --transparent-rounds 0).</summary>
    public TransparentResults? Transparent { get; set; }
    public TimeSpan Elapsed { get; set; }

    public static string ViaOf(string method) => Options.DotNetMethods.Contains(method) ? ".NET" : "C";

    public Stat StatOf(IEnumerable<Measurement> source, string target, string method, string metric, int? n = null) =>
        Stat.Of(source.Where(m => m.Target == target && m.Method == method && (n == null || m.N == n) && m.Metrics.ContainsKey(metric))
            .Select(m => m.Metrics[metric]));

    /// <summary>Per-round ratio numerator/denominator of one metric (rounds where both were measured).</summary>
    public Stat RatioOf(string target, string numerator, string denominator, string metric)
    {
        var ratios = new List<double>();
        foreach (var group in Main.Where(m => m.Target == target).GroupBy(m => m.Round))
        {
            var a = group.FirstOrDefault(m => m.Method == numerator);
            var b = group.FirstOrDefault(m => m.Method == denominator);
            if (a != null && b != null && a.Metrics.TryGetValue(metric, out double x) && b.Metrics.TryGetValue(metric, out double y) && y > 0)
            {
                ratios.Add(x / y);
            }
        }

        return Stat.Of(ratios);
    }
}
