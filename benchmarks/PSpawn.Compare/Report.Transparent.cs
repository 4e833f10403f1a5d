using System.Globalization;
using System.Text;
using System.Text.Json;

namespace PSpawn.Compare;

/// <summary>The transparent-mode section of the renderings: unmodified launchers, plain against LD_PRELOAD.</summary>
internal static partial class Report
{
    /// <summary>The issue-13 goal for make and xargs on pynamic100: at least this many times faster with the interceptor.</summary>
    public const double TransparentGoal = 3;

    private static readonly string[] TransparentHeader =
        ["workload", "how it starts children", "launches", "plain ms (min–max)", "LD_PRELOAD ms (min–max)", "plain / LD_PRELOAD (min–max)", "goal", "",
         "zygote floor ms (min–max)", "plain / floor (min–max)"];

    private static string HowItStarts(string workload) => workload switch
    {
        TransparentBench.Make => "posix_spawn (one recipe line per target, no shell)",
        TransparentBench.Xargs => "fork + execvp",
        _ => "",
    };

    internal static List<string[]> TransparentRows(TransparentResults t)
    {
        var rows = new List<string[]>();
        foreach (string workload in t.Workloads)
        {
            Stat speedup = t.SpeedupOf(workload);
            rows.Add(
            [
                workload, HowItStarts(workload), $"{t.Launches.ToString(CultureInfo.InvariantCulture)} × {t.Target}",
                Range(t.WallOf(workload, TransparentResults.Plain)), Range(t.WallOf(workload, TransparentResults.Preload)), Ratio(speedup),
                $"≥ {TransparentGoal.ToString("0.##", Inv)}×", speedup.IsEmpty ? "" : speedup.Median >= TransparentGoal ? "met" : "NOT met",
                t.Floor.Count > 0 ? Range(t.FloorWall) : "n/a", t.Floor.Count > 0 ? Ratio(t.CeilingOf(workload)) : "n/a",
            ]);
        }

        return rows;
    }

    private static string TransparentIntro(TransparentResults t) =>
        $"{t.Launches} launches of {t.Target} per run, plain and with libpspawn_intercept.so in the launcher's LD_PRELOAD alternating, " +
        $"{t.Rounds} rounds; wall times are medians, the ratio the median of per-round ratios; the zygote floor " +
        "(benchmarks/native/zygote_floor.c, each round) is the frozen target forking itself, two children at once running main, " +
        "no launcher, its areas merged as the interceptor's zygotes do (PSPAWN_CTX_MERGE_TEXT): plain / floor is the most any zygote could give" +
        (t.Versions.Count > 0 ? $" ({string.Join(", ", t.Versions.Values)})" : string.Empty);

    private static void PrintTransparent(RunResults r, TextWriter w)
    {
        if (r.Transparent is not { } t)
        {
            return;
        }

        w.WriteLine();
        w.WriteLine($"Transparent mode (unmodified launchers, issue 13): {TransparentIntro(t)}:");
        if (t.Samples.Count > 0)
        {
            TextTable(w, TransparentHeader, TransparentRows(t), 99);
        }

        foreach (string line in t.Skipped.Concat(t.Failed.Select(f => $"FAILED: {f}")))
        {
            w.WriteLine(line);
        }
    }

    private static void MarkdownTransparent(RunResults r, StringBuilder sb)
    {
        if (r.Transparent is not { } t)
        {
            return;
        }

        sb.AppendLine("### Transparent mode: unmodified launchers (same run)").AppendLine();
        sb.AppendLine($"{TransparentIntro(t)}.").AppendLine();
        if (t.Samples.Count > 0)
        {
            MdTable(sb, TransparentHeader, TransparentRows(t));
        }

        foreach (string line in t.Skipped.Concat(t.Failed.Select(f => $"**FAILED**: {f}")))
        {
            sb.AppendLine($"- {line}");
        }

        if (t.Skipped.Count + t.Failed.Count > 0)
        {
            sb.AppendLine();
        }
    }

    private static void CsvTransparent(RunResults r, StringBuilder sb)
    {
        if (r.Transparent is not { Samples.Count: > 0 } t)
        {
            return;
        }

        sb.AppendLine("# transparent mode: wall time of one launcher run");
        sb.AppendLine("section,workload,launches,target,mode,round,wall_ms");
        foreach (var s in t.Samples)
        {
            sb.Append(Inv, $"transparent,{s.Workload},{t.Launches},{t.Target},{s.Mode},{s.Round},").AppendLine(s.WallMs.ToString("R", Inv));
        }

        foreach (var (round, ms) in t.Floor)
        {
            sb.Append(Inv, $"transparent,zygote floor,{t.Launches},{t.Target},floor,{round},").AppendLine(ms.ToString("R", Inv));
        }
    }

    private static void JsonTransparent(RunResults r, Utf8JsonWriter w)
    {
        if (r.Transparent is not { } t)
        {
            return;
        }

        w.WriteStartObject("transparent");
        w.WriteString("target", t.Target);
        w.WriteNumber("launches", t.Launches);
        w.WriteNumber("rounds", t.Rounds);
        w.WriteStartArray("workloads");
        foreach (string workload in t.Workloads)
        {
            w.WriteStartObject();
            w.WriteString("workload", workload);
            WriteStat(w, "plain_ms", t.WallOf(workload, TransparentResults.Plain));
            WriteStat(w, "preload_ms", t.WallOf(workload, TransparentResults.Preload));
            WriteStat(w, "speedup", t.SpeedupOf(workload));
            WriteStat(w, "ceiling", t.CeilingOf(workload));
            w.WriteEndObject();
        }

        w.WriteEndArray();
        WriteStat(w, "zygote_floor_ms", t.FloorWall);
        foreach (var (name, list) in new[] { ("skipped", t.Skipped), ("failed", t.Failed) })
        {
            w.WriteStartArray(name);
            list.ForEach(w.WriteStringValue);
            w.WriteEndArray();
        }

        w.WriteStartObject("versions");
        foreach (var (launcher, version) in t.Versions)
        {
            w.WriteString(launcher, version);
        }

        w.WriteEndObject();
        w.WriteEndObject();
    }
}
