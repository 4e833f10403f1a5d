using System.Diagnostics;
using System.Globalization;

namespace PSpawn.Cli;

/// <summary><c>pspawn bench</c>: N instances with Process.Start (vfork + exec, as posix_spawn) against PSpawn's SpawnN and
/// SpawnBatch through one context, each started all at once and then waited for; median of a few rounds.</summary>
internal static class Bench
{
    public static async Task<int> RunAsync(string path, int count, int rounds, TextWriter output)
    {
        var creation = Stopwatch.StartNew();
        await using PSpawnContext context = PSpawnContext.Create(path, -1, new PSpawnContextOptions { FallbackPolicy = FallbackPolicy.PosixSpawn });
        creation.Stop();
        SpawnInstance[] instances = Enumerable.Range(0, count)
            .Select(i => new SpawnInstance([]) { Environment = new Dictionary<string, string?> { ["PSPAWN_RANK"] = i.ToString(CultureInfo.InvariantCulture) } })
            .ToArray();

        var processStart = new List<double>();
        var spawnN = new List<double>();
        var batch = new List<double>();
        for (int round = 0; round <= rounds; round++) // round 0 warms up
        {
            double a = await TimeAsync(() => ProcessStartAll(path, count));
            double b = await TimeAsync(() => WaitAll(context.SpawnN(count, [])));
            double c = await TimeAsync(() => WaitAll(context.SpawnBatch(instances).ThrowIfAnyFailed().Started));
            if (round > 0)
            {
                processStart.Add(a);
                spawnN.Add(b);
                batch.Add(c);
            }
        }

        double baseline = Median(processStart);
        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"pspawn bench: {path}, {count} instances, median of {rounds} rounds (context created in {creation.Elapsed.TotalMilliseconds:0.0} ms, mode {context.Mode}, {context.ProxyCount} proxies)"));
        await output.WriteLineAsync(Line("Process.Start (vfork+exec)", baseline, count, baseline));
        await output.WriteLineAsync(Line("PSpawn SpawnN", Median(spawnN), count, baseline));
        await output.WriteLineAsync(Line("PSpawn SpawnBatch", Median(batch), count, baseline));
        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"ratio (SpawnN spawns/s ÷ Process.Start spawns/s): {baseline / Median(spawnN):0.00}x"));
        return ExitCodes.Success;
    }

    private static string Line(string name, double seconds, int count, double baseline) =>
        string.Create(CultureInfo.InvariantCulture, $"  {name,-28} {seconds * 1000,9:0.0} ms  {count / seconds,9:0} spawns/s  {baseline / seconds,6:0.00}x");

    private static async Task<double> TimeAsync(Func<Task> body)
    {
        var stopwatch = Stopwatch.StartNew();
        await body();
        return stopwatch.Elapsed.TotalSeconds;
    }

    private static async Task ProcessStartAll(string path, int count)
    {
        var processes = new Process[count];
        for (int i = 0; i < count; i++)
        {
            processes[i] = Process.Start(new ProcessStartInfo(path) { UseShellExecute = false })!;
        }

        foreach (Process process in processes)
        {
            await process.WaitForExitAsync();
            process.Dispose();
        }
    }

    private static async Task WaitAll(IReadOnlyList<SpawnedProcess> processes)
    {
        foreach (SpawnedProcess process in processes)
        {
            await process.WaitForExitAsync();
            process.Dispose();
        }
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }
}
