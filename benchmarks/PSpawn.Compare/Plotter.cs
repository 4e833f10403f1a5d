using System.Globalization;
using ScottPlot;

namespace PSpawn.Compare;

/// <summary>One PNG, two panels: throughput against target for each method, and against N.</summary>
internal static class Plotter
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static void Save(RunResults r, string path)
    {
        var byTarget = ByTarget(r);
        var byN = ByN(r);
        var multiplot = new Multiplot();
        multiplot.Reset(byTarget);
        if (byN != null)
        {
            multiplot.AddPlot(byN);
        }

        if (byN != null)
        {
            byTarget.HideLegend();
        }

        (byN ?? byTarget).ShowLegend(Edge.Right);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Columns();
        multiplot.SavePng(path, byN != null ? 1700 : 1000, 650);
    }

    /// <summary>A log10 Y axis (the data are log10 values) with ticks at 1, 2 and 5 times the powers of ten.</summary>
    private static void LogY(Plot plot, IEnumerable<double> log10Values)
    {
        double[] v = [.. log10Values];
        if (v.Length == 0)
        {
            return;
        }

        double lo = v.Min() - 0.15, hi = v.Max() + 0.15;
        var ticks = new List<double>();
        for (int e = (int)Math.Floor(lo); e <= (int)Math.Ceiling(hi); e++)
        {
            foreach (double m in new[] { 1.0, 2.0, 5.0 })
            {
                double t = Math.Log10(m) + e;
                if (t >= lo && t <= hi)
                {
                    ticks.Add(t);
                }
            }
        }

        plot.Axes.Left.SetTicks([.. ticks], [.. ticks.Select(t => Math.Pow(10, t).ToString("#,0.##", Inv))]);
        plot.Axes.SetLimitsY(lo, hi);
        plot.Grid.MajorLineColor = Colors.Black.WithOpacity(.15);
    }

    private static Plot ByTarget(RunResults r)
    {
        var plot = new Plot();
        string[] targets = [.. r.Targets.Select(Path.GetFileName).OfType<string>()];
        List<double> allY = AddMethodLines(plot, r, method =>
            targets.Select((target, i) => ((double)i, r.StatOf(r.Main, target, method, Metric.PerSec))));
        LogY(plot, allY);
        plot.Axes.Bottom.SetTicks([.. Enumerable.Range(0, targets.Length).Select(i => (double)i)], targets);
        plot.Axes.SetLimitsX(-0.3, targets.Length - 0.7);
        plot.Title($"Throughput per target (env {r.Environment}; medians)");
        plot.YLabel("spawned and reaped per second (log)");
        plot.XLabel("target");
        return plot;
    }

    private static Plot? ByN(RunResults r)
    {
        if (r.Scaling.Count == 0)
        {
            return null;
        }

        var plot = new Plot();
        int[] ns = [.. r.Scaling.Select(m => m.N).Distinct().Order()];
        List<double> allY = AddMethodLines(plot, r, method =>
            ns.Select(n => (Math.Log10(n), r.StatOf(r.Scaling, r.Scaling[0].Target, method, Metric.PerSec, n))));
        LogY(plot, allY);
        plot.Axes.Bottom.SetTicks([.. ns.Select(n => Math.Log10(n))], [.. ns.Select(n => n.ToString(Inv))]);
        plot.Title($"Throughput against N ({r.ScalingTarget}; medians)");
        plot.YLabel("spawned and reaped per second (log)");
        plot.XLabel("N, instances per measurement (log)");
        return plot;
    }

    /// <summary>One line per method through its (x, median) points, y on a log scale; returns every y drawn.</summary>
    private static List<double> AddMethodLines(Plot plot, RunResults r, Func<string, IEnumerable<(double X, Stat Stat)>> pointsOf)
    {
        var palette = new ScottPlot.Palettes.Category10();
        var methods = r.Methods.ToList();
        var allY = new List<double>();
        foreach (string method in methods)
        {
            var points = pointsOf(method).Where(p => !p.Stat.IsEmpty && p.Stat.Median > 0).ToList();
            if (points.Count == 0)
            {
                continue;
            }

            double[] ys = [.. points.Select(p => Math.Log10(p.Stat.Median))];
            allY.AddRange(ys);
            var sc = plot.Add.Scatter([.. points.Select(p => p.X)], ys, palette.GetColor(methods.IndexOf(method)));
            sc.LegendText = $"{method} ({RunResults.ViaOf(method)})";
            sc.MarkerSize = 8;
            sc.LineWidth = method is "SpawnN" or "pspawn_n" ? 3 : 1.5f;
        }

        return allY;
    }
}
