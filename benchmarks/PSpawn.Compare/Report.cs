using System.Globalization;
using System.Text;
using System.Text.Json;

namespace PSpawn.Compare;

/// <summary>The console table, Markdown, CSV and JSON renderings of a run.</summary>
internal static partial class Report
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>A comparison the issue sets a goal for (or that is shown for information).</summary>
    internal sealed record Goal(string Target, string What, Stat Measured, string Unit, string? Limit, bool? Met);

    public static List<Goal> Goals(RunResults r)
    {
        var goals = new List<Goal>();
        foreach (string t in r.Targets)
        {
            void Ratio(string what, string num, string den, string metric, double? atLeast, double? atMost)
            {
                if (!r.Methods.Contains(num) || !r.Methods.Contains(den))
                {
                    return;
                }

                var s = r.RatioOf(t, num, den, metric);
                if (s.IsEmpty)
                {
                    return;
                }

                string? limit = atLeast != null ? $"≥ {atLeast.Value.ToString("0.##", Inv)}×" : atMost != null ? $"≤ {atMost.Value.ToString("0.##", Inv)}×" : null;
                bool? met = atLeast != null ? s.Median >= atLeast : atMost != null ? s.Median <= atMost : null;
                goals.Add(new Goal(t, what, s, "×", limit, met));
            }

            string name = Path.GetFileName(t);
            double? tputGoal = name switch { "noop" => 2.5, "pynamic100" => 4, "pynamic400" => 6, _ => null };
            Ratio("throughput SpawnN / posix_spawn", "SpawnN", "posix_spawn", Metric.PerSec, tputGoal, null);
            Ratio("throughput SpawnN / Process.Start", "SpawnN", "Process.Start", Metric.PerSec, name == "noop" ? 2.5 : null, null);
            double? dropInGoal = name switch { "noop" => 2, "pynamic100" => 3, _ => null };
            Ratio("throughput PSpawnProcess.Start / Process.Start", "PSpawnProcess.Start", "Process.Start", Metric.PerSec, dropInGoal, null);
            Ratio("throughput pspawn_n (C) / posix_spawn", "pspawn_n", "posix_spawn", Metric.PerSec, null, null);
            double? latGoal = name switch { "noop" => 0.4, "pynamic100" => 0.1, _ => null };
            Ratio("latency p50 Spawn / posix_spawn", "Spawn", "posix_spawn", Metric.LatencyP50, null, latGoal);
            Ratio("latency p50 Spawn / Process.Start", "Spawn", "Process.Start", Metric.LatencyP50, null, null);
            Ratio("latency p50 pspawn (C) / posix_spawn", "pspawn", "posix_spawn", Metric.LatencyP50, null, null);
            foreach (string m in new[] { "SpawnN", "pspawn_n" })
            {
                if (r.Methods.Contains(m))
                {
                    var s = r.StatOf(r.Main, t, m, Metric.LauncherCpu);
                    if (!s.IsEmpty)
                    {
                        goals.Add(new Goal(t, $"launcher CPU per spawn, {m}", s, "µs", "≤ 50 µs", s.Median <= 50));
                    }
                }
            }
        }

        return goals;
    }

    private static string F(double v)
    {
        if (double.IsNaN(v))
        {
            return "-";
        }

        double a = Math.Abs(v);
        return a >= 100 ? v.ToString("0", Inv) : a >= 10 ? v.ToString("0.#", Inv) : v.ToString("0.##", Inv);
    }

    private static string Range(Stat s) => s.IsEmpty ? "-" : $"{F(s.Median)} ({F(s.Min)}–{F(s.Max)})";

    private static string Ratio(Stat s) => s.IsEmpty ? "-" : $"{s.Median.ToString("0.00", Inv)}× ({s.Min.ToString("0.00", Inv)}–{s.Max.ToString("0.00", Inv)})";

    private static IEnumerable<(string Target, int N, string Method)> Rows(RunResults r, List<Measurement> source) =>
        source.Select(m => (m.Target, m.N, m.Method)).Distinct()
            .OrderBy(x => r.Targets.ToList().FindIndex(t => Path.GetFileName(t) == x.Target) is var i && i < 0 ? int.MaxValue : i)
            .ThenBy(x => x.N)
            .ThenBy(x => r.Methods.ToList().IndexOf(x.Method));

    private static readonly string[] TableHeader =
        ["target", "N", "method", "via", "spawns/s (min–max)", "latency p50 µs (min–max)", "launcher CPU µs", "children CPU µs", "child faults", "proxy CPU µs", "proxy faults"];

    private static List<string[]> TableRows(RunResults r)
    {
        var rows = new List<string[]>();
        foreach (var (target, n, method) in Rows(r, r.Main))
        {
            Stat S(string metric) => r.StatOf(r.Main, target, method, metric, n);
            rows.Add(
            [
                target, n.ToString(Inv), method, RunResults.ViaOf(method), Range(S(Metric.PerSec)), Range(S(Metric.LatencyP50)),
                F(S(Metric.LauncherCpu).Median), F(S(Metric.ChildrenCpu).Median), F(S(Metric.ChildrenFaults).Median),
                F(S(Metric.ProxyCpu).Median), F(S(Metric.ProxyFaults).Median),
            ]);
        }

        return rows;
    }

    private static List<string[]> GoalRows(RunResults r) =>
        [.. Goals(r).Select(g => new[]
        {
            g.Target, g.What, g.Unit == "×" ? Ratio(g.Measured) : $"{F(g.Measured.Median)} µs ({F(g.Measured.Min)}–{F(g.Measured.Max)})",
            g.Limit ?? "", g.Met switch { true => "met", false => "NOT met", null => "" },
        })];

    private static List<string[]> ScalingRows(RunResults r)
    {
        var rows = new List<string[]>();
        foreach (var (target, n, method) in Rows(r, r.Scaling))
        {
            rows.Add([target, n.ToString(Inv), method, RunResults.ViaOf(method), Range(r.StatOf(r.Scaling, target, method, Metric.PerSec, n))]);
        }

        return rows;
    }

    private static List<string[]> ContextRows(RunResults r) =>
        [.. r.Contexts.GroupBy(c => (c.Target, c.Method)).Select(g => new[]
        {
            g.Key.Target, g.Key.Method, g.First().Via, Range(Stat.Of(g.Select(c => c.CreateMs))),
            F(Stat.Of(g.Select(c => c.ProxyRssKb)).Median), g.First().Mode,
        })];

    private static void TextTable(TextWriter w, string[] header, List<string[]> rows, int rightFrom = 1)
    {
        int[] width = [.. header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length)))];
        string Line(string[] cells) => string.Join("  ", cells.Select((c, i) =>
            i >= rightFrom && i != 2 && i != 3 ? c.PadLeft(width[i]) : c.PadRight(width[i]))).TrimEnd();
        w.WriteLine(Line(header));
        w.WriteLine(new string('-', width.Sum() + (2 * (width.Length - 1))));
        foreach (var row in rows)
        {
            w.WriteLine(Line(row));
        }
    }

    public static void PrintConsole(RunResults r, TextWriter w)
    {
        w.WriteLine();
        w.WriteLine($"machine: {r.Machine}");
        w.WriteLine($"environment of the instances: {r.Environment}; per spawn: medians over rounds (min–max); methods interleaved in every round; run took {r.Elapsed.TotalSeconds:0} s");
        w.WriteLine("throughput = N spawned and reaped / wall time; latency = one spawn call until that instance has exited and been reaped");
        w.WriteLine();
        TextTable(w, TableHeader, TableRows(r));
        w.WriteLine();
        w.WriteLine("Measured in this run against the goals of issue 5 (ratios: median of per-round ratios, min–max):");
        TextTable(w, ["target", "comparison", "measured", "goal", ""], GoalRows(r), 99);
        if (r.Contexts.Count > 0)
        {
            w.WriteLine();
            w.WriteLine("Proxy start (context creation, excluded from throughput):");
            TextTable(w, ["target", "method", "via", "create ms (min–max)", "proxy RSS KiB", "mode"], ContextRows(r), 3);
        }

        if (r.Scaling.Count > 0)
        {
            w.WriteLine();
            w.WriteLine($"Throughput against N ({r.ScalingTarget}):");
            TextTable(w, ["target", "N", "method", "via", "spawns/s (min–max)"], ScalingRows(r));
        }

        PrintTransparent(r, w);
        w.WriteLine();
    }

    private static void MdTable(StringBuilder sb, string[] header, List<string[]> rows)
    {
        sb.Append("| ").Append(string.Join(" | ", header)).AppendLine(" |");
        sb.Append('|').Append(string.Concat(header.Select(_ => " --- |"))).AppendLine();
        foreach (var row in rows)
        {
            sb.Append("| ").Append(string.Join(" | ", row.Select(c => c.Replace("|", "\\|", StringComparison.Ordinal)))).AppendLine(" |");
        }

        sb.AppendLine();
    }

    public static string Markdown(RunResults r)
    {
        var sb = new StringBuilder();
        sb.AppendLine("## Spawn throughput and latency").AppendLine();
        sb.AppendLine($"Machine: {r.Machine}.").AppendLine();
        sb.AppendLine($"Environment of the instances: {r.Environment}. Medians over rounds (min–max), methods interleaved in every round; the run took {r.Elapsed.TotalSeconds:0} s. " +
                      "Per-spawn columns: CPU time of the launcher (getrusage RUSAGE_SELF), of the instances (RUSAGE_CHILDREN), minor faults per instance, and the proxy's CPU time and faults (/proc).").AppendLine();
        MdTable(sb, TableHeader, TableRows(r));
        sb.AppendLine("### Against the goals (same run)").AppendLine();
        MdTable(sb, ["target", "comparison", "measured", "goal", ""], GoalRows(r));
        if (r.Contexts.Count > 0)
        {
            sb.AppendLine("### Proxy start (excluded from throughput)").AppendLine();
            MdTable(sb, ["target", "method", "via", "create ms (min–max)", "proxy RSS KiB", "mode"], ContextRows(r));
        }

        if (r.Scaling.Count > 0)
        {
            sb.AppendLine($"### Throughput against N ({r.ScalingTarget})").AppendLine();
            MdTable(sb, ["target", "N", "method", "via", "spawns/s (min–max)"], ScalingRows(r));
        }

        MarkdownTransparent(r, sb);
        return sb.ToString();
    }

    public static string Csv(RunResults r)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"# machine: {r.Machine}; environment: {r.Environment}");
        sb.Append("section,target,n,method,via,round").AppendJoin("", Metric.All.Select(m => "," + m)).AppendLine();
        void Section(string name, List<Measurement> source)
        {
            foreach (var m in source)
            {
                sb.Append(Inv, $"{name},{m.Target},{m.N},{m.Method},{m.Via},{m.Round}");
                foreach (string metric in Metric.All)
                {
                    sb.Append(',').Append(m.Metrics.TryGetValue(metric, out double v) ? v.ToString("R", Inv) : "");
                }

                sb.AppendLine();
            }

            foreach (var (target, n, method) in Rows(r, source))
            {
                foreach (string stat in new[] { "median", "min", "max" })
                {
                    sb.Append(Inv, $"{name},{target},{n},{method},{RunResults.ViaOf(method)},{stat}");
                    foreach (string metric in Metric.All)
                    {
                        var s = r.StatOf(source, target, method, metric, n);
                        double v = stat == "median" ? s.Median : stat == "min" ? s.Min : s.Max;
                        sb.Append(',').Append(s.IsEmpty ? "" : v.ToString("R", Inv));
                    }

                    sb.AppendLine();
                }
            }
        }

        Section("main", r.Main);
        Section("scaling", r.Scaling);
        CsvTransparent(r, sb);
        return sb.ToString();
    }

    private static void WriteNumberOrNull(Utf8JsonWriter w, string name, double v)
    {
        if (double.IsNaN(v) || double.IsInfinity(v))
        {
            w.WriteNull(name);
        }
        else
        {
            w.WriteNumber(name, v);
        }
    }

    private static void WriteStat(Utf8JsonWriter w, string name, Stat s)
    {
        w.WriteStartObject(name);
        WriteNumberOrNull(w, "median", s.Median);
        WriteNumberOrNull(w, "min", s.Min);
        WriteNumberOrNull(w, "max", s.Max);
        w.WriteNumber("rounds", s.Count);
        w.WriteEndObject();
    }

    public static string Json(RunResults r)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            void Num(string name, double v) => WriteNumberOrNull(w, name, v);

            void StatObj(string name, Stat s) => WriteStat(w, name, s);

            w.WriteStartObject();
            w.WriteStartObject("machine");
            w.WriteString("cpu", r.Machine.Cpu);
            w.WriteNumber("cores", r.Machine.Cores);
            w.WriteString("kernel", r.Machine.Kernel);
            w.WriteString("glibc", r.Machine.Glibc);
            w.WriteString("dotnet", r.Machine.DotNet);
            w.WriteString("pspawn", r.Machine.PSpawnNative);
            w.WriteString("loadavg", r.Machine.LoadAverage);
            w.WriteEndObject();
            w.WriteString("environment", r.Environment);
            Num("elapsed_s", r.Elapsed.TotalSeconds);

            void Section(string name, List<Measurement> source)
            {
                w.WriteStartArray(name);
                foreach (var (target, n, method) in Rows(r, source))
                {
                    w.WriteStartObject();
                    w.WriteString("target", target);
                    w.WriteNumber("n", n);
                    w.WriteString("method", method);
                    w.WriteString("via", RunResults.ViaOf(method));
                    w.WriteStartObject("summary");
                    foreach (string metric in Metric.All)
                    {
                        var s = r.StatOf(source, target, method, metric, n);
                        if (!s.IsEmpty)
                        {
                            StatObj(metric, s);
                        }
                    }

                    w.WriteEndObject();
                    w.WriteStartArray("rounds");
                    foreach (var m in source.Where(x => x.Target == target && x.N == n && x.Method == method))
                    {
                        w.WriteStartObject();
                        w.WriteNumber("round", m.Round);
                        foreach (var (k, v) in m.Metrics)
                        {
                            Num(k, v);
                        }

                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                    w.WriteEndObject();
                }

                w.WriteEndArray();
            }

            Section("results", r.Main);
            Section("scaling", r.Scaling);
            w.WriteStartArray("goals");
            foreach (var g in Goals(r))
            {
                w.WriteStartObject();
                w.WriteString("target", g.Target);
                w.WriteString("comparison", g.What);
                StatObj("measured", g.Measured);
                w.WriteString("unit", g.Unit);
                if (g.Limit != null)
                {
                    w.WriteString("goal", g.Limit);
                }

                if (g.Met != null)
                {
                    w.WriteBoolean("met", g.Met.Value);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteStartArray("contexts");
            foreach (var c in r.Contexts)
            {
                w.WriteStartObject();
                w.WriteString("target", c.Target);
                w.WriteString("method", c.Method);
                w.WriteString("via", c.Via);
                Num("create_ms", c.CreateMs);
                Num("proxy_rss_kb", c.ProxyRssKb);
                w.WriteString("mode", c.Mode);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            JsonTransparent(r, w);
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }
}
