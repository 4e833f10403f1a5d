using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using PSpawn.Tests.Infrastructure;
using Xunit.Abstractions;

namespace PSpawn.Cli.Tests;

/// <summary>
/// pspawn under a real Slurm on localhost: tests/slurm/setup.sh installs Debian's packages when missing and writes a
/// one-node slurm.conf in a temporary directory; this test starts munged, slurmctld and slurmd in the foreground as its
/// own children, runs srun, and stops them all, also on failure. Skipped only when apt-get cannot install the packages.
/// </summary>
public sealed class SlurmTests(ITestOutputHelper output)
{
    private static readonly TimeSpan s_setupLimit = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan s_srunLimit = TimeSpan.FromMinutes(2);

    [SkippableFact]
    public async Task Srun_gives_every_instance_its_global_rank_and_Slurm_task_variables()
    {
        var total = Stopwatch.StartNew();
        using var temp = new TempDirectory("pspawn-slurm-");
        int ctldPort = FreePort(), slurmdPort = FreePort();
        CommandRunner.Result setup = await CommandRunner.Run(
            "/bin/bash", [Path.Combine(Fixtures.RepoRoot, "tests", "slurm", "setup.sh"), temp.Path, $"{ctldPort}", $"{slurmdPort}"],
            temp.Path, null, s_setupLimit);
        Skip.If(setup.ExitCode == 3, $"apt-get could not install slurmctld/slurmd/slurm-client/munge: {setup.Output}");
        Assert.True(setup.ExitCode == 0, $"tests/slurm/setup.sh failed: {setup}");
        output.WriteLine($"setup.sh (install if missing + config): {total.Elapsed.TotalSeconds:0.0} s");

        string conf = temp.File("slurm.conf");
        string munge = temp.File("munge");
        var daemons = new List<Process>();
        try
        {
            daemons.Add(StartDaemon(temp, "munged",
                $"/usr/sbin/munged -F --force --key-file={munge}/munge.key --socket={munge}/munge.socket --pid-file={munge}/munged.pid --log-file={munge}/munged.log --seed-file={munge}/munged.seed"));
            await Bounded.Until(() => File.Exists($"{munge}/munge.socket") || daemons[0].HasExited, "munged listens", TimeSpan.FromSeconds(20));
            Assert.False(daemons[0].HasExited, $"munged exited: {Log(temp, "munged")}");
            daemons.Add(StartDaemon(temp, "slurmctld", $"/usr/sbin/slurmctld -D -f {conf}", conf));
            daemons.Add(StartDaemon(temp, "slurmd", $"/usr/sbin/slurmd -D -N localhost -f {conf}", conf));
            await WaitForIdleNode(temp, conf, daemons);
            output.WriteLine($"daemons up: {total.Elapsed.TotalSeconds:0.0} s");

            var environment = new Dictionary<string, string?> { ["SLURM_CONF"] = conf };

            // One pspawn task on the node, 4 instances: ranks 0-3 of 4.
            string summary = temp.File("summary.json");
            CommandRunner.Result one = await CommandRunner.Run(
                "srun", ["-N1", "-n1", "-t", "2", CommandRunner.DotNet, CliRunner.Dll, "run", "-n", "4", "--output", "none", "--json", summary, "--",
                         Fixtures.Report, $"--report-out={temp.File("one-{rank}.json")}"],
                temp.Path, environment, s_srunLimit);
            Assert.True(one.ExitCode == 0, $"srun -n1 pspawn run -n 4 failed: {one}\n{Log(temp, "slurmd")}");
            string? jobId = null;
            for (int rank = 0; rank < 4; rank++)
            {
                IReadOnlyDictionary<string, string> env = ReportOutput.Read(temp.File($"one-{rank}.json")).EnvDictionary;
                string r = rank.ToString(CultureInfo.InvariantCulture);
                Assert.Equal(r, env["SLURM_PROCID"]);
                Assert.Equal(r, env["SLURM_LOCALID"]);
                Assert.Equal("4", env["SLURM_NTASKS"]);
                Assert.Equal("4", env["SLURM_NPROCS"]);
                Assert.Equal("0", env["SLURM_NODEID"]);
                Assert.Equal("1", env["SLURM_NNODES"]);
                Assert.Equal(r, env["PSPAWN_RANK"]);
                Assert.Equal("4", env["PSPAWN_SIZE"]);
                Assert.Equal(r, env["PSPAWN_LOCAL_RANK"]);
                Assert.True(env.ContainsKey("SLURM_JOB_ID"), "the instances run inside the Slurm step");
                jobId ??= env["SLURM_JOB_ID"];
                Assert.Equal(jobId, env["SLURM_JOB_ID"]);
            }

            using (var document = JsonDocument.Parse(File.ReadAllBytes(summary)))
            {
                Assert.True(document.RootElement.GetProperty("slurm").GetBoolean());
                Assert.Equal(4, document.RootElement.GetProperty("size").GetInt32());
            }

            // Two pspawn tasks on the node (as two nodes would be), 2 instances each: global ranks task × 2 + local.
            CommandRunner.Result two = await CommandRunner.Run(
                "srun", ["-N1", "-n2", "--ntasks-per-node=2", "-t", "2", CommandRunner.DotNet, CliRunner.Dll, "run", "-n", "2", "--output", "none", "--",
                         Fixtures.Report, $"--report-out={temp.File("two-{rank}.json")}", "{rank}/{size}"],
                temp.Path, environment, s_srunLimit);
            Assert.True(two.ExitCode == 0, $"srun -n2 pspawn run -n 2 failed: {two}\n{Log(temp, "slurmd")}");
            for (int rank = 0; rank < 4; rank++)
            {
                ReportOutput report = ReportOutput.Read(temp.File($"two-{rank}.json"));
                IReadOnlyDictionary<string, string> env = report.EnvDictionary;
                string r = rank.ToString(CultureInfo.InvariantCulture);
                Assert.Equal(r, env["SLURM_PROCID"]);
                Assert.Equal(r, env["SLURM_LOCALID"]); // both tasks share the node: local ids 0-3
                Assert.Equal("4", env["SLURM_NTASKS"]);
                Assert.Equal(r, env["PSPAWN_RANK"]);
                Assert.Equal((rank % 2).ToString(CultureInfo.InvariantCulture), env["PSPAWN_LOCAL_RANK"]);
                Assert.Equal($"{r}/4", report.Argv[^1]);
            }

            output.WriteLine($"srun runs done: {total.Elapsed.TotalSeconds:0.0} s");
        }
        finally
        {
            await StopAll(daemons, conf);
            output.WriteLine($"total with shutdown: {total.Elapsed.TotalSeconds:0.0} s");
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static Process StartDaemon(TempDirectory temp, string name, string command, string? conf = null)
    {
        // exec: the daemon itself is this test's child (its pid is ours to stop), its output in a log file.
        var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false, WorkingDirectory = temp.Path };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($"exec {command} >{temp.File($"{name}.out")} 2>&1 </dev/null");
        if (conf is not null)
        {
            info.Environment["SLURM_CONF"] = conf;
        }

        return Process.Start(info)!;
    }

    private static async Task WaitForIdleNode(TempDirectory temp, string conf, List<Process> daemons)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            foreach (Process daemon in daemons.Where(d => d.HasExited))
            {
                Assert.Fail($"a daemon exited with {daemon.ExitCode}:\n{Log(temp, "slurmctld")}\n{Log(temp, "slurmd")}");
            }

            CommandRunner.Result sinfo = await CommandRunner.Run(
                "sinfo", ["-h", "-o", "%T"], temp.Path, new Dictionary<string, string?> { ["SLURM_CONF"] = conf }, TimeSpan.FromSeconds(30));
            if (sinfo.ExitCode == 0 && sinfo.Output.Contains("idle", StringComparison.Ordinal))
            {
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"the node never became idle: {sinfo}\n{Log(temp, "slurmctld")}\n{Log(temp, "slurmd")}");
            }

            await Task.Delay(500);
        }
    }

    /// <summary>SIGTERM to slurmd, slurmctld, then munged (reverse order), SIGKILL after 10 s; then any slurmstepd of
    /// this cluster (found by its SLURM_CONF) that outlived slurmd.</summary>
    private static async Task StopAll(List<Process> daemons, string conf)
    {
        foreach (Process daemon in Enumerable.Reverse(daemons))
        {
            if (!daemon.HasExited)
            {
                LinuxProcesses.Kill(daemon.Id, LinuxProcesses.SIGTERM);
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                try
                {
                    await daemon.WaitForExitAsync(cts.Token);
                }
                catch (OperationCanceledException)
                {
                    daemon.Kill();
                    await daemon.WaitForExitAsync();
                }
            }

            daemon.Dispose();
        }

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (StepDaemons(conf) is { Count: > 0 } steps)
        {
            if (DateTime.UtcNow > deadline)
            {
                steps.ForEach(pid => LinuxProcesses.Kill(pid, LinuxProcesses.SIGKILL));
                break;
            }

            await Task.Delay(200);
        }
    }

    private static List<int> StepDaemons(string conf)
    {
        var result = new List<int>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
            {
                continue;
            }

            try
            {
                if (File.ReadAllText($"{dir}/comm").Trim() == "slurmstepd" &&
                    File.ReadAllText($"{dir}/environ").Contains($"SLURM_CONF={conf}\0", StringComparison.Ordinal))
                {
                    result.Add(pid);
                }
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return result;
    }

    private static string Log(TempDirectory temp, string name)
    {
        string path = temp.File($"{name}.out");
        return File.Exists(path) ? $"--- {name}:\n{string.Join('\n', File.ReadLines(path).TakeLast(30))}" : $"(no {name} log)";
    }
}
