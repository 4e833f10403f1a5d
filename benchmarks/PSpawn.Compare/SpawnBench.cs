using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;

namespace PSpawn.Compare;

/// <summary>
/// The native side: the CMake build (fixtures and bin/spawnbench, built by `dotnet build` through the
/// PSpawn project's Native.targets) and runs of spawnbench, whose JSON lines are parsed here.
/// </summary>
internal sealed class NativeBuild
{
    private NativeBuild(string dir) => Directory = dir;

    public string Directory { get; }

    public string Bin => Path.Combine(Directory, "bin");

    public string SpawnBench => Path.Combine(Bin, "spawnbench");

    /// <summary>The build directory: --native-dir, $PSPAWN_BENCH_NATIVE_DIR, else artifacts/native of the repository.</summary>
    public static NativeBuild Locate(string? explicitDir)
    {
        string? dir = explicitDir ?? System.Environment.GetEnvironmentVariable("PSPAWN_BENCH_NATIVE_DIR");
        if (string.IsNullOrEmpty(dir))
        {
            string? root = typeof(NativeBuild).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
                .FirstOrDefault(a => a.Key == "PSpawnRepoRoot")?.Value;
            if (string.IsNullOrEmpty(root) || !System.IO.Directory.Exists(root))
            {
                root = FindRepoRoot(AppContext.BaseDirectory) ?? FindRepoRoot(System.Environment.CurrentDirectory);
            }

            if (root == null)
            {
                throw new UsageException("cannot find the repository (native/CMakeLists.txt); pass --native-dir");
            }

            dir = Path.Combine(root, "artifacts", "native");
        }

        return new NativeBuild(Path.GetFullPath(dir));
    }

    private static string? FindRepoRoot(string start)
    {
        for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "native", "CMakeLists.txt")))
            {
                return d.FullName;
            }
        }

        return null;
    }

    /// <summary>A target name (a fixture in bin/) or a path.</summary>
    public string Resolve(string target) =>
        target.Contains('/', StringComparison.Ordinal) ? Path.GetFullPath(target) : Path.Combine(Bin, target);

    /// <summary>Builds spawnbench and the fixture targets if any is missing (normally `dotnet build` did it).</summary>
    public void EnsureBuilt(IEnumerable<string> targets, Action<string> log)
    {
        var missing = targets.Where(t => !t.Contains('/', StringComparison.Ordinal) && !File.Exists(Resolve(t))).ToList();
        if (File.Exists(SpawnBench) && missing.Count == 0)
        {
            return;
        }

        if (!File.Exists(Path.Combine(Directory, "CMakeCache.txt")))
        {
            string? root = FindRepoRoot(Directory) ?? FindRepoRoot(AppContext.BaseDirectory);
            if (root == null)
            {
                throw new UsageException($"{Directory} is not a CMake build and the sources were not found");
            }

            log($"configuring the native build in {Directory}");
            Run("cmake", ["-S", Path.Combine(root, "native"), "-B", Directory, "-DCMAKE_BUILD_TYPE=RelWithDebInfo"]);
        }

        var buildTargets = new List<string> { "spawnbench" };
        buildTargets.AddRange(missing);
        log($"building {string.Join(", ", buildTargets)} in {Directory}");
        var args = new List<string> { "--build", Directory, "-j", System.Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture), "--target" };
        args.AddRange(buildTargets);
        Run("cmake", args);
    }

    private static void Run(string file, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {file}");
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed with exit code {p.ExitCode}");
        }
    }

    /// <summary>The environment spawnbench uses for `kind` (so every launcher gives the instances the same one).</summary>
    public Dictionary<string, string> EnvironmentFor(string kind, string targetPath)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (kind == "empty")
        {
            return result;
        }

        foreach (string line in RunSpawnBench(["-p", "-e", kind, targetPath]))
        {
            int eq = line.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                result[line[..eq]] = line[(eq + 1)..];
            }
        }

        return result;
    }

    /// <summary>One spawnbench run; returns its measurements (round numbers replaced by `round`).</summary>
    public List<Measurement> Measure(string targetPath, string label, string env, int n, int round, int latency,
        IReadOnlyList<string> methods, List<ContextStart>? contexts)
    {
        var args = new List<string>
        {
            "-n", n.ToString(CultureInfo.InvariantCulture),
            "-r", "1",
            "-l", latency.ToString(CultureInfo.InvariantCulture),
            "-w", "2",
            "-e", env,
            "-t", label,
            "-m", string.Join(',', methods),
            targetPath,
        };
        var byMethod = new Dictionary<string, Measurement>(StringComparer.Ordinal);
        foreach (string line in RunSpawnBench(args))
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            string record = root.GetProperty("record").GetString() ?? "";
            if (record is not ("throughput" or "latency" or "context"))
            {
                continue;
            }

            string method = root.GetProperty("method").GetString() ?? "";
            if (record == "context")
            {
                contexts?.Add(new ContextStart(label, method, "C", Number(root, "create_ms"), Number(root, "proxy_rss_kb"),
                    root.TryGetProperty("mode", out var mode) ? mode.GetString() ?? "" : ""));
                continue;
            }

            if (!byMethod.TryGetValue(method, out var m))
            {
                m = new Measurement(label, n, method, "C", round);
                byMethod[method] = m;
            }

            foreach (string metric in Metric.All)
            {
                if (root.TryGetProperty(metric, out var v) && v.ValueKind == JsonValueKind.Number)
                {
                    m.Metrics[metric] = v.GetDouble();
                }
            }
        }

        return [.. methods.Where(byMethod.ContainsKey).Select(k => byMethod[k])];
    }

    private static double Number(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : double.NaN;

    private List<string> RunSpawnBench(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(SpawnBench)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start spawnbench");
        var stderr = p.StandardError.ReadToEndAsync();
        var lines = new List<string>();
        while (p.StandardOutput.ReadLine() is { } line)
        {
            lines.Add(line);
        }

        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"spawnbench {string.Join(' ', args)} failed (exit code {p.ExitCode}): {stderr.Result.Trim()}");
        }

        return lines;
    }
}
