using ScottPlot;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using PSpawn.Benchmarks;

// The full suite: dotnet run -c Release --project benchmarks/PSpawn.Benchmarks -- --filter '*'
// BenchmarkDotNet's exporters (GitHub Markdown, CSV, HTML) write to BenchmarkDotNet.Artifacts/results;
// a throughput plot (spawns per second, per target and method) is written beside them.
// "-- cost" and "-- poller" run the per-instance cost probe instead (CostProbe.cs, docs/benchmarks.md).
if (args.Length > 0 && args[0] is "cost" or "poller")
{
    return CostProbe.Run(args);
}

var config = DefaultConfig.Instance.WithOption(ConfigOptions.JoinSummary, true);
var summaries = BenchmarkSwitcher.FromAssembly(typeof(SpawnBenchmarks).Assembly).Run(args, config);
foreach (var summary in summaries)
{
    if (summary.Reports.Any(r => r.ResultStatistics != null))
    {
        string png = Path.Combine(summary.ResultsDirectoryPath, "spawn-throughput.png");
        ThroughputPlot.Save(summary, png);
        Console.WriteLine($"throughput plot: {png}");
    }
}

return 0;

namespace PSpawn.Benchmarks
{
    /// <summary>
    /// Spawns per second (1e9 / median ns per instance) of each method relative to posix_spawn on the same
    /// target (targets differ by orders of magnitude, ratios do not); absolute values are in the reports.
    /// </summary>
    internal static class ThroughputPlot
    {
        public static void Save(Summary summary, string path)
        {
            var rows = summary.Reports
                .Where(r => r.ResultStatistics != null)
                .Select(r => (
                    Method: r.BenchmarkCase.Descriptor.WorkloadMethod.Name,
                    Category: r.BenchmarkCase.Descriptor.Categories.FirstOrDefault() ?? "",
                    Target: r.BenchmarkCase.Parameters["Target"]?.ToString() ?? "",
                    PerSec: 1e9 / r.ResultStatistics!.Median))
                .ToList();
            string[] targets = [.. rows.Select(r => r.Target).Distinct()];
            var multiplot = new ScottPlot.Multiplot();
            bool first = true;
            foreach (string category in new[] { "Batch", "One" })
            {
                var plot = new ScottPlot.Plot();
                var palette = new ScottPlot.Palettes.Category10();
                int color = 0;
                var inCategory = rows.Where(r => r.Category == category).ToList();
                double Baseline(string target) => inCategory
                    .Where(r => r.Target == target && r.Method.StartsWith("PosixSpawn", StringComparison.Ordinal))
                    .Select(r => r.PerSec).DefaultIfEmpty(double.NaN).First();
                inCategory.RemoveAll(r => double.IsNaN(Baseline(r.Target)));
                if (inCategory.Count == 0)
                {
                    continue;
                }

                var methods = inCategory.GroupBy(r => r.Method).ToList();
                double width = 0.8 / methods.Count;
                foreach (var method in methods)
                {
                    double offset = (color - ((methods.Count - 1) / 2.0)) * width;
                    double[] xs = [.. method.Select(r => Array.IndexOf(targets, r.Target) + offset)];
                    double[] ys = [.. method.Select(r => r.PerSec / Baseline(r.Target))];
                    var bars = plot.Add.Bars(xs, ys);
                    bars.Color = palette.GetColor(color);
                    foreach (var b in bars.Bars)
                    {
                        b.Size = width * 0.9;
                    }

                    bars.LegendText = method.Key;
                    color++;
                }

                plot.Axes.Bottom.SetTicks([.. Enumerable.Range(0, targets.Length).Select(i => (double)i)], targets);
                plot.Axes.Margins(bottom: 0);
                var one = plot.Add.HorizontalLine(1);
                one.LineColor = Colors.Black;
                one.LinePattern = LinePattern.Dashed;
                plot.Title(category == "Batch"
                    ? $"Throughput, batches of {SpawnBenchmarks.Batch}, relative to posix_spawn"
                    : "One spawn until exited and reaped (1 / latency), relative to posix_spawn");
                plot.YLabel("× posix_spawn (medians)");
                plot.ShowLegend(ScottPlot.Alignment.UpperRight);
                if (first)
                {
                    multiplot.Reset(plot);
                    first = false;
                }
                else
                {
                    multiplot.AddPlot(plot);
                }
            }

            multiplot.Layout = new ScottPlot.MultiplotLayouts.Columns();
            multiplot.SavePng(path, 1400, 550);
        }
    }
}
