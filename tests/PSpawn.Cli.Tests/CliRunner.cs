using System.Diagnostics;
using System.Text;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Cli.Tests;

/// <summary>Runs the built pspawn (src/PSpawn.Cli's output, with the dotnet host) as a process.</summary>
public static class CliRunner
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr, int ProcessId, TimeSpan Elapsed)
    {
        public override string ToString() => $"exit code {ExitCode} after {Elapsed.TotalSeconds:0.00} s\n--- stdout\n{Stdout}--- stderr\n{Stderr}";
    }

    /// <summary>src/PSpawn.Cli/s PSpawn.Cli.dll, built in the configuration of these tests.</summary>
    public static string Dll
    {
        get
        {
            string testsOut = AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar);
            string framework = Path.GetFileName(testsOut);
            string configuration = Path.GetFileName(Path.GetDirectoryName(testsOut)!);
            string path = Path.Combine(Fixtures.RepoRoot, "src", "PSpawn.Cli", "bin", configuration, framework, "PSpawn.Cli.dll");
            return File.Exists(path) ? path : throw new FileNotFoundException($"pspawn is not built at {path}: dotnet build PSpawn.sln first.", path);
        }
    }

    /// <summary>A started pspawn whose output is being collected.</summary>
    public sealed class Running : IDisposable
    {
        private readonly StringBuilder _stdout = new();
        private readonly StringBuilder _stderr = new();
        private readonly Stopwatch _stopwatch = Stopwatch.StartNew();

        internal Running(ProcessStartInfo info)
        {
            Process = new Process { StartInfo = info };
            Process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (_stdout) { _stdout.Append(e.Data).Append('\n'); } } };
            Process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (_stderr) { _stderr.Append(e.Data).Append('\n'); } } };
            Process.Start();
            Process.StandardInput.Close();
            Process.BeginOutputReadLine();
            Process.BeginErrorReadLine();
        }

        public Process Process { get; }

        public string Stderr
        {
            get { lock (_stderr) { return _stderr.ToString(); } }
        }

        public async Task<Result> WaitAsync(TimeSpan limit)
        {
            using var cts = new CancellationTokenSource(limit);
            try
            {
                await Process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                Process.Kill(entireProcessTree: true);
                await Process.WaitForExitAsync();
                throw new TimeoutException($"pspawn did not finish within {limit}:\n{_stdout}\n{_stderr}");
            }

            _stopwatch.Stop();
            lock (_stdout)
            {
                lock (_stderr)
                {
                    return new Result(Process.ExitCode, _stdout.ToString(), _stderr.ToString(), Process.Id, _stopwatch.Elapsed);
                }
            }
        }

        public void Dispose()
        {
            if (!Process.HasExited)
            {
                Process.Kill(entireProcessTree: true);
                Process.WaitForExit();
            }

            Process.Dispose();
        }
    }

    public static Running Start(IEnumerable<string> arguments, IReadOnlyDictionary<string, string?>? environment = null, string? fileName = null)
    {
        var info = new ProcessStartInfo(fileName ?? CommandRunner.DotNet)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetTempPath(),
        };
        if (fileName is null)
        {
            info.ArgumentList.Add(Dll);
        }

        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        // Never inherit a Slurm step's variables (the tests may run under srun), nor the test host's build variables.
        foreach (string name in info.Environment.Keys.ToList())
        {
            if (name.StartsWith("SLURM_", StringComparison.Ordinal) || name.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) ||
                name.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase) || name.StartsWith("PSPAWN_", StringComparison.Ordinal))
            {
                info.Environment.Remove(name);
            }
        }

        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null)
            {
                info.Environment.Remove(name);
            }
            else
            {
                info.Environment[name] = value;
            }
        }

        return new Running(info);
    }

    public static async Task<Result> Run(IEnumerable<string> arguments, IReadOnlyDictionary<string, string?>? environment = null, TimeSpan? limit = null)
    {
        using Running running = Start(arguments, environment);
        return await running.WaitAsync(limit ?? TimeSpan.FromSeconds(60));
    }
}
