using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace PSpawn.Compare;

/// <summary>One wall time of a transparent-mode workload: a real launcher, plainly or with the interceptor preloaded.</summary>
internal sealed record TransparentSample(string Workload, string Mode, int Round, double WallMs);

/// <summary>The transparent-mode section of a run (issue 13): unmodified launchers with and without libpspawn_intercept.so.</summary>
internal sealed class TransparentResults
{
    public const string Plain = "plain";
    public const string Preload = "LD_PRELOAD";

    public required string Target { get; init; }
    public required int Launches { get; init; }
    public required int Rounds { get; init; }
    public List<TransparentSample> Samples { get; } = [];

    /// <summary>Workloads not measured, with the reason (a launcher missing from PATH, no interceptor).</summary>
    public List<string> Skipped { get; } = [];

    /// <summary>Workloads whose launcher failed (a non-zero exit, a time-out): the run then exits with 1.</summary>
    public List<string> Failed { get; } = [];

    /// <summary>
    /// Per round, the zygote floor (libzygote_floor.so): the frozen target forking itself, two children at once, each
    /// running main, no launcher and no request: what any zygote pays for these launches at the least. Empty if the
    /// library is missing.
    /// </summary>
    public List<(int Round, double WallMs)> Floor { get; } = [];

    public Stat FloorWall => Stat.Of(Floor.Select(f => f.WallMs));

    /// <summary>Per-round ratio plain / floor: the most any zygote could speed this workload up here.</summary>
    public Stat CeilingOf(string workload) => Stat.Of(
        from s in Samples
        where s.Workload == workload && s.Mode == Plain
        join f in Floor on s.Round equals f.Round
        where f.WallMs > 0
        select s.WallMs / f.WallMs);

    /// <summary>The launchers' versions (the first line of --version), for the machine line.</summary>
    public Dictionary<string, string> Versions { get; } = new(StringComparer.Ordinal);

    public IEnumerable<string> Workloads => Samples.Select(s => s.Workload).Distinct();

    public Stat WallOf(string workload, string mode) =>
        Stat.Of(Samples.Where(s => s.Workload == workload && s.Mode == mode).Select(s => s.WallMs));

    /// <summary>Per-round ratio plain / preloaded (how many times faster with the interceptor).</summary>
    public Stat SpeedupOf(string workload)
    {
        var ratios = new List<double>();
        foreach (var round in Samples.Where(s => s.Workload == workload).GroupBy(s => s.Round))
        {
            var plain = round.FirstOrDefault(s => s.Mode == Plain);
            var preload = round.FirstOrDefault(s => s.Mode == Preload);
            if (plain != null && preload != null && preload.WallMs > 0)
            {
                ratios.Add(plain.WallMs / preload.WallMs);
            }
        }

        return Stat.Of(ratios);
    }
}

/// <summary>
/// `make -j2` and `xargs -P2 -n1` running a fixture (pynamic100) N times, plainly and with the interceptor in the
/// launcher's LD_PRELOAD, alternating in every round (the shell-free equivalent of benchmarks/intercept/bench.sh).
/// </summary>
internal static class TransparentBench
{
    public const string Make = "make -j2";
    public const string Xargs = "xargs -P2";
    private static readonly TimeSpan s_limit = TimeSpan.FromMinutes(5);

    public static TransparentResults Run(NativeBuild native, string target, int launches, int rounds, Action<string> log)
    {
        string path = native.Resolve(target);
        var results = new TransparentResults { Target = Path.GetFileName(path), Launches = launches, Rounds = rounds };
        string library = Path.Combine(native.Directory, "lib", "libpspawn_intercept.so");
        string floorLibrary = Path.Combine(native.Directory, "lib", "libzygote_floor.so");
        if (!File.Exists(library) || !File.Exists(path))
        {
            results.Skipped.Add($"transparent mode skipped: {(File.Exists(library) ? path : library)} is missing (dotnet build PSpawn.sln builds it)");
            return results;
        }

        string? make = FindInPath("make");
        string? xargs = FindInPath("xargs");
        var workloads = new List<(string Name, string Launcher, Func<string, ProcessStartInfo> Start, string? Stdin)>();
        string temp = Directory.CreateTempSubdirectory("pspawn-compare-transparent-").FullName;
        try
        {
            if (make == null)
            {
                results.Skipped.Add($"{Make}: skipped, make is not in PATH (Debian: apt-get install make)");
            }
            else
            {
                File.WriteAllText(Path.Combine(temp, "Makefile"), Makefile(path, launches));
                workloads.Add((Make, make, dir => Info(make, dir, "-s", "-j2", "-f", "Makefile"), null));
            }

            if (xargs == null)
            {
                results.Skipped.Add($"{Xargs}: skipped, xargs is not in PATH (Debian: apt-get install findutils)");
            }
            else
            {
                string numbers = string.Concat(Enumerable.Range(1, launches).Select(i => $"{i.ToString(CultureInfo.InvariantCulture)}\n"));
                workloads.Add((Xargs, xargs, dir => Info(xargs, dir, "-P2", "-n1", path), numbers));
            }

            foreach (var w in workloads)
            {
                results.Versions[Path.GetFileName(w.Launcher)] = Version(w.Launcher);
            }

            for (int round = 0; round < rounds; round++)
            {
                foreach (var w in workloads)
                {
                    if (results.Failed.Any(f => f.StartsWith(w.Name, StringComparison.Ordinal)))
                    {
                        continue;
                    }

                    log($"[transparent] {w.Name} x{launches} {results.Target} round {round + 1}/{rounds}");
                    // Plain and preloaded alternate, the order swapped every round.
                    string[] modes = round % 2 == 0 ? [TransparentResults.Plain, TransparentResults.Preload] : [TransparentResults.Preload, TransparentResults.Plain];
                    foreach (string mode in modes)
                    {
                        ProcessStartInfo info = w.Start(temp);
                        info.Environment.Remove("LD_PRELOAD");
                        foreach (string name in info.Environment.Keys.Where(k => k.StartsWith("PSPAWN_INTERCEPT", StringComparison.Ordinal)).ToList())
                        {
                            info.Environment.Remove(name);
                        }

                        if (mode == TransparentResults.Preload)
                        {
                            info.Environment["LD_PRELOAD"] = library; // the launcher's, as a user gives it
                        }

                        string? error = TimeOne(info, w.Stdin, out double ms);
                        if (error != null)
                        {
                            results.Failed.Add($"{w.Name} ({mode}): {error}");
                            break;
                        }

                        results.Samples.Add(new TransparentSample(w.Name, mode, round, ms));
                    }
                }

                if (File.Exists(floorLibrary) && TimeFloor(path, floorLibrary, launches) is double floorMs)
                {
                    results.Floor.Add((round, floorMs));
                }
            }
        }
        finally
        {
            Directory.Delete(temp, recursive: true);
        }

        return results;
    }

    /// <summary>One recipe line per target, no shell syntax: GNU make ≥ 4.3 posix_spawns it directly.</summary>
    private static string Makefile(string target, int launches)
    {
        var sb = new StringBuilder("all:");
        for (int i = 1; i <= launches; i++)
        {
            sb.Append(CultureInfo.InvariantCulture, $" t{i}");
        }

        sb.Append('\n');
        for (int i = 1; i <= launches; i++)
        {
            sb.Append(CultureInfo.InvariantCulture, $"t{i}:\n\t{target} {i}\n");
        }

        return sb.ToString();
    }

    private static ProcessStartInfo Info(string file, string directory, params string[] arguments)
    {
        var info = new ProcessStartInfo(file)
        {
            UseShellExecute = false,
            WorkingDirectory = directory,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        return info;
    }

    /// <summary>Runs the launcher to its end; the wall time from start to exit, or why it failed.</summary>
    private static string? TimeOne(ProcessStartInfo info, string? stdin, out double ms)
    {
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(info) ?? throw new InvalidOperationException($"cannot start {info.FileName}");
        Task drain = p.StandardOutput.BaseStream.CopyToAsync(Stream.Null);
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        p.StandardInput.Write(stdin ?? string.Empty);
        p.StandardInput.Close();
        if (!p.WaitForExit(s_limit))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            ms = double.NaN;
            return $"did not finish within {s_limit.TotalMinutes:0} min (killed)";
        }

        p.WaitForExit(); // the output pipes are drained
        Task.WaitAll(drain, stderr);
        ms = clock.Elapsed.TotalMilliseconds;
        return p.ExitCode == 0 ? null : $"exited with {p.ExitCode}: {stderr.Result.Trim()}";
    }

    /// <summary>One batch of the zygote floor (benchmarks/native/zygote_floor.c): its wall time in ms, or null.</summary>
    private static double? TimeFloor(string target, string floorLibrary, int launches)
    {
        ProcessStartInfo info = Info(target, Path.GetTempPath());
        info.Environment.Remove("LD_PRELOAD");
        info.Environment["LD_BIND_NOW"] = "1"; // as PSpawn's proxies resolve every symbol before they freeze
        info.Environment["LD_PRELOAD"] = floorLibrary;
        info.Environment["ZYGOTE_FLOOR_N"] = launches.ToString(CultureInfo.InvariantCulture);
        info.Environment["ZYGOTE_FLOOR_P"] = "2";
        info.Environment["ZYGOTE_FLOOR_ROUNDS"] = "1";
        info.Environment["ZYGOTE_FLOOR_MODES"] = "fork_main";
        info.Environment["ZYGOTE_FLOOR_MERGE_TEXT"] = "1"; // the interceptor's zygotes merge each library's areas (PSPAWN_CTX_MERGE_TEXT)
        using var p = Process.Start(info);
        if (p == null)
        {
            return null;
        }

        p.StandardInput.Close();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(s_limit))
        {
            p.Kill(entireProcessTree: true);
            return null;
        }

        stderr.Wait();
        if (p.ExitCode != 0)
        {
            return null;
        }

        using var json = System.Text.Json.JsonDocument.Parse(output);
        return json.RootElement.TryGetProperty("fork_main_ms", out var ms) && ms.ValueKind == System.Text.Json.JsonValueKind.Number
            ? ms.GetDouble()
            : null;
    }

    private static string Version(string launcher)
    {
        try
        {
            ProcessStartInfo info = Info(launcher, Path.GetTempPath(), "--version");
            using var p = Process.Start(info);
            if (p == null)
            {
                return "unknown";
            }

            p.StandardInput.Close();
            Task<string> stderr = p.StandardError.ReadToEndAsync();
            string first = p.StandardOutput.ReadLine() ?? "unknown";
            p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            stderr.Wait();
            return first.Trim();
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "unknown";
        }
    }

    private static string? FindInPath(string name)
    {
        foreach (string dir in (System.Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate) && OperatingSystem.IsLinux() && (File.GetUnixFileMode(candidate) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0)
            {
                return candidate;
            }
        }

        return null;
    }
}
