using System.Diagnostics;
using PSpawn;
using PSpawn.Compare;

// The README's main job: see Options.Usage and docs/benchmarks.md.
Options options;
try
{
    options = Options.Parse(args);
}
catch (HelpRequestedException)
{
    Console.WriteLine(Options.Usage);
    return 0;
}
catch (UsageException e)
{
    Console.Error.WriteLine($"PSpawn.Compare: {e.Message}");
    Console.Error.WriteLine(Options.Usage);
    return 2;
}

try
{
    var results = Runner.Run(options);
    Report.PrintConsole(results, Console.Out);
    if (options.MarkdownPath != null)
    {
        File.WriteAllText(options.MarkdownPath, Report.Markdown(results));
    }

    if (options.CsvPath != null)
    {
        File.WriteAllText(options.CsvPath, Report.Csv(results));
    }

    if (options.JsonPath != null)
    {
        File.WriteAllText(options.JsonPath, Report.Json(results));
    }

    if (options.PlotPath != null)
    {
        Plotter.Save(results, options.PlotPath);
    }

    foreach (string written in new[] { options.MarkdownPath, options.CsvPath, options.JsonPath, options.PlotPath }.OfType<string>())
    {
        Console.WriteLine($"wrote {written}");
    }

    if (results.Transparent is { Failed.Count: > 0 } transparent)
    {
        transparent.Failed.ForEach(f => Console.Error.WriteLine($"PSpawn.Compare: transparent mode: {f}"));
        return 1;
    }

    return 0;
}
catch (UsageException e)
{
    Console.Error.WriteLine($"PSpawn.Compare: {e.Message}");
    return 2;
}
catch (Exception e) when (e is InvalidOperationException or PSpawnException or IOException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"PSpawn.Compare: {e.Message}");
    return 1;
}

namespace PSpawn.Compare
{
    internal static class Runner
    {
        public static RunResults Run(Options o)
        {
            void Log(string s)
            {
                if (!o.Quiet)
                {
                    Console.Error.WriteLine(s);
                }
            }

            var total = Stopwatch.StartNew();
            var native = NativeBuild.Locate(o.NativeDir);
            var allTargets = o.Targets.ToList();
            string? scalingTarget = o.Scaling != null ? o.ScalingTarget ?? o.Targets[0] : null;
            if (scalingTarget != null && !allTargets.Contains(scalingTarget))
            {
                allTargets.Add(scalingTarget);
            }

            if (o.TransparentRounds > 0 && !allTargets.Contains(Options.TransparentTarget))
            {
                allTargets.Add(Options.TransparentTarget);
            }

            native.EnsureBuilt(allTargets, Log);
            var results = new RunResults
            {
                Machine = Machine.Describe(),
                Environment = o.Environment,
                Methods = o.Methods,
                Targets = o.Targets,
                ScalingTarget = scalingTarget,
            };
            Log($"machine: {results.Machine}");

            foreach (string target in o.Targets)
            {
                RunTarget(o, native, target, o.NFor(target), o.RoundsFor(target), o.LatencyFor(target), results.Main, results.Contexts, Log);
            }

            if (scalingTarget != null && o.Scaling != null)
            {
                foreach (int n in o.Scaling)
                {
                    RunTarget(o, native, scalingTarget, n, Math.Min(o.RoundsFor(scalingTarget), 3), 0, results.Scaling, null, Log);
                }
            }

            if (o.TransparentRounds > 0)
            {
                results.Transparent = TransparentBench.Run(native, Options.TransparentTarget, o.TransparentN, o.TransparentRounds, Log);
                results.Transparent.Skipped.ForEach(s => Console.Error.WriteLine($"PSpawn.Compare: {s}"));
            }

            results.Elapsed = total.Elapsed;
            return results;
        }

        private static List<string> Rotate(List<string> list, int by) =>
            list.Count == 0 ? [] : [.. Enumerable.Range(0, list.Count).Select(i => list[(i + by) % list.Count])];

        /// <summary>Rounds on one target: in each, every method once (native ones in one spawnbench run,
        /// .NET ones here), the order rotated from round to round and the two blocks alternated.</summary>
        private static void RunTarget(Options o, NativeBuild native, string target, int n, int rounds, int latency,
            List<Measurement> sink, List<ContextStart>? contexts, Action<string> log)
        {
            string path = native.Resolve(target);
            if (!File.Exists(path))
            {
                throw new UsageException($"target {target} not found ({path})");
            }

            string label = Path.GetFileName(path);
            var nativeMethods = o.Methods.Where(m => Options.NativeMethods.Contains(m)).ToList();
            var dotnetMethods = o.Methods.Where(m => Options.DotNetMethods.Contains(m)).ToList();
            var env = native.EnvironmentFor(o.Environment, path);
            using var dotnet = new DotNetMethods(path, label, env, dotnetMethods, contexts ?? []);
            foreach (string m in dotnetMethods)
            {
                dotnet.WarmUp(m, Math.Min(2, n));
            }

            for (int round = 0; round < rounds; round++)
            {
                log($"[{label}] N={n} round {round + 1}/{rounds}");
                var blocks = new List<Action>
                {
                    () =>
                    {
                        if (nativeMethods.Count > 0)
                        {
                            sink.AddRange(native.Measure(path, label, o.Environment, n, round, latency,
                                Rotate(nativeMethods, round), round == 0 ? contexts : null));
                        }
                    },
                    () =>
                    {
                        foreach (string m in Rotate(dotnetMethods, round))
                        {
                            sink.Add(dotnet.Measure(m, n, round, latency));
                        }
                    },
                };
                if (round % 2 == 1)
                {
                    blocks.Reverse();
                }

                foreach (var block in blocks)
                {
                    block();
                }
            }
        }
    }
}
