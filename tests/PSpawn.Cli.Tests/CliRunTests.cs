using System.Globalization;
using System.Text.Json;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Cli.Tests;

/// <summary><c>pspawn run</c> as a user runs it: the built command on real processes (the report fixture and /bin/sh).</summary>
public sealed class CliRunTests
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(60);

    private static string Sh => "/bin/sh";

    private static JsonElement Summary(string path)
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        return document.RootElement.Clone();
    }

    private static JsonElement[] Instances(JsonElement summary) => summary.GetProperty("instances").EnumerateArray().ToArray();

    private static int? NumberOrNull(JsonElement instance, string name) =>
        instance.GetProperty(name).ValueKind == JsonValueKind.Null ? null : instance.GetProperty(name).GetInt32();

    [Fact]
    public async Task Every_instance_gets_its_rank_in_arguments_and_environment()
    {
        using var temp = new TempDirectory("pspawn-cli-");
        CliRunner.Result result = await CliRunner.Run(
            ["run", "-n", "4", "--output", "none", "--env", "GREETING=hello-{rank}", "--", Fixtures.Report,
             $"--report-out={temp.File("{rank}.json")}", "rank={rank}", "size={size}", "local={local_rank}"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        for (int rank = 0; rank < 4; rank++)
        {
            ReportOutput report = ReportOutput.Read(temp.File($"{rank}.json"));
            string r = rank.ToString(CultureInfo.InvariantCulture);
            Assert.Equal([Fixtures.Report, $"--report-out={temp.File($"{r}.json")}", $"rank={r}", "size=4", $"local={r}"], report.Argv);
            IReadOnlyDictionary<string, string> env = report.EnvDictionary;
            Assert.Equal(r, env["PSPAWN_RANK"]);
            Assert.Equal("4", env["PSPAWN_SIZE"]);
            Assert.Equal(r, env["PSPAWN_LOCAL_RANK"]);
            Assert.Equal($"hello-{r}", env["GREETING"]);
            Assert.False(env.ContainsKey("SLURM_PROCID"), "outside Slurm no SLURM_ variable is made up");
            Assert.Equal(result.ProcessId, report.Ppid); // the launcher's own children
        }
    }

    [Fact]
    public async Task Pool_instances_are_claimed_from_parked_children_and_get_their_ranks()
    {
        using var temp = new TempDirectory("pspawn-cli-");
        string summary = temp.File("summary.json");
        CliRunner.Result result = await CliRunner.Run(
            ["run", "-n", "3", "--proxies", "1", "--pool", "4", "--output", "none", "--json", summary, "--", Fixtures.Report,
             $"--report-out={temp.File("{rank}.json")}", "rank={rank}"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        JsonElement s = Summary(summary);
        Assert.Equal(4, s.GetProperty("pool").GetInt32());
        // The pool is full when the context is created: every instance is a claim.
        Assert.Equal(3, s.GetProperty("pool_claims").GetInt32());
        for (int rank = 0; rank < 3; rank++)
        {
            ReportOutput report = ReportOutput.Read(temp.File($"{rank.ToString(CultureInfo.InvariantCulture)}.json"));
            Assert.Equal($"rank={rank.ToString(CultureInfo.InvariantCulture)}", report.Argv[2]);
            Assert.Equal(rank.ToString(CultureInfo.InvariantCulture), report.EnvDictionary["PSPAWN_RANK"]);
            Assert.Equal(result.ProcessId, report.Ppid);
            Assert.Equal([0, 1, 2], report.Fds);
        }
    }

    [Fact]
    public async Task Program_is_found_through_PATH()
    {
        using var temp = new TempDirectory("pspawn-cli-");
        CliRunner.Result result = await CliRunner.Run(
            ["run", "-n", "2", "--output", "none", "--", "report", $"--report-out={temp.File("{rank}.json")}"],
            new Dictionary<string, string?> { ["PATH"] = $"/nonexistent:{Fixtures.BinDirectory}:/usr/bin:/bin" });
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(Fixtures.Report, ReportOutput.Read(temp.File("1.json")).Argv[0]);
    }

    [Fact]
    public async Task Cpus_auto_puts_instance_i_on_usable_cpu_i_mod_count_and_a_list_is_followed()
    {
        int[] usable = ReportOutput.Parse((await CommandRunner.Run(Fixtures.Report, [], Path.GetTempPath(), null, s_limit)).Output).Numbers("affinity");
        using var temp = new TempDirectory("pspawn-cli-");
        CliRunner.Result auto = await CliRunner.Run(
            ["run", "-n", "5", "--cpus", "auto", "--output", "none", "--", Fixtures.Report, $"--report-out={temp.File("auto{rank}.json")}"]);
        Assert.True(auto.ExitCode == 0, auto.ToString());
        for (int rank = 0; rank < 5; rank++)
        {
            Assert.Equal([usable[rank % usable.Length]], ReportOutput.Read(temp.File($"auto{rank}.json")).Numbers("affinity"));
        }

        int last = usable[^1];
        CliRunner.Result list = await CliRunner.Run(
            ["run", "-n", "3", "--cpus", $"{last}", "--output", "inherit", "--", Fixtures.Report, $"--report-out={temp.File("list{rank}.json")}"]);
        Assert.True(list.ExitCode == 0, list.ToString());
        for (int rank = 0; rank < 3; rank++)
        {
            Assert.Equal([last], ReportOutput.Read(temp.File($"list{rank}.json")).Numbers("affinity"));
        }

        // Without --cpus there is no placement: the instances keep the launcher's mask.
        CliRunner.Result none = await CliRunner.Run(["run", "-n", "2", "--output", "none", "--", Fixtures.Report, $"--report-out={temp.File("free{rank}.json")}"]);
        Assert.True(none.ExitCode == 0, none.ToString());
        Assert.Equal(usable, ReportOutput.Read(temp.File("free1.json")).Numbers("affinity"));
    }

    private static readonly string[] s_echo = [Sh, "-c", "echo out-$PSPAWN_RANK; echo second-$PSPAWN_RANK; echo err-$PSPAWN_RANK >&2"];

    [Fact]
    public async Task Output_prefix_tags_every_line_with_its_rank()
    {
        CliRunner.Result result = await CliRunner.Run(["run", "-n", "3", "--output", "prefix", "--", .. s_echo]);
        Assert.True(result.ExitCode == 0, result.ToString());
        string[] stdout = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string[] stderr = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        for (int rank = 0; rank < 3; rank++)
        {
            Assert.Contains($"[{rank}] out-{rank}", stdout);
            Assert.Contains($"[{rank}] second-{rank}", stdout);
            Assert.Contains($"[{rank}] err-{rank}", stderr);
            Assert.True(Array.IndexOf(stdout, $"[{rank}] out-{rank}") < Array.IndexOf(stdout, $"[{rank}] second-{rank}"), "one rank's lines stay in order");
        }

        Assert.Equal(6, stdout.Length);
    }

    [Fact]
    public async Task Output_is_passed_through_unprefixed_when_not_a_terminal()
    {
        CliRunner.Result result = await CliRunner.Run(["run", "-n", "3", "--", .. s_echo]);
        Assert.True(result.ExitCode == 0, result.ToString());
        string[] stdout = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["out-0", "out-1", "out-2", "second-0", "second-1", "second-2"], stdout.Order(StringComparer.Ordinal));
        Assert.Contains("err-2", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Output_files_writes_rank_out_and_rank_err()
    {
        using var temp = new TempDirectory("pspawn-cli-");
        string logs = temp.File("logs"); // created by pspawn
        CliRunner.Result result = await CliRunner.Run(["run", "-n", "3", "--output", "files", logs, "--", .. s_echo]);
        Assert.True(result.ExitCode == 0, result.ToString());
        for (int rank = 0; rank < 3; rank++)
        {
            Assert.Equal($"out-{rank}\nsecond-{rank}\n", File.ReadAllText(Path.Combine(logs, $"{rank}.out")));
            Assert.Equal($"err-{rank}\n", File.ReadAllText(Path.Combine(logs, $"{rank}.err")));
        }

        Assert.DoesNotContain("out-", result.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("err-", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Output_none_discards_everything()
    {
        CliRunner.Result result = await CliRunner.Run(["run", "-n", "3", "--output", "none", "--quiet", "--", .. s_echo]);
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(string.Empty, result.Stdout);
        Assert.Equal(string.Empty, result.Stderr);
    }

    [Theory]
    [InlineData("prefix")]
    [InlineData("inherit")]
    public async Task Exit_status_is_the_lowest_failing_rank_s_and_a_signal_is_128_plus_n(string output)
    {
        using var temp = new TempDirectory("pspawn-cli-");
        string json = temp.File("summary.json");
        CliRunner.Result mixed = await CliRunner.Run(
            ["run", "-n", "4", "--output", output, "--json", json, "--", Sh, "-c", "case $PSPAWN_RANK in 1) exit 3;; 2) kill -KILL $$;; esac; exit 0"]);
        Assert.True(mixed.ExitCode == 3, mixed.ToString());
        JsonElement[] instances = Instances(Summary(json));
        Assert.Equal([0, 3, null, 0], instances.Select(i => NumberOrNull(i, "exit_code")));
        Assert.Equal([null, null, 9, null], instances.Select(i => NumberOrNull(i, "signal")));
        Assert.Equal([0, 3, 137, 0], instances.Select(i => NumberOrNull(i, "status")));
        Assert.Equal(3, Summary(json).GetProperty("exit_code").GetInt32());

        CliRunner.Result signalled = await CliRunner.Run(
            ["run", "-n", "3", "--output", output, "--", Sh, "-c", "[ $PSPAWN_RANK = 2 ] && kill -KILL $$; exit 0"]);
        Assert.True(signalled.ExitCode == 137, signalled.ToString());

        CliRunner.Result ok = await CliRunner.Run(["run", "-n", "3", "--output", output, "--", Fixtures.Noop]);
        Assert.True(ok.ExitCode == 0, ok.ToString());
    }

    [Fact]
    public async Task Timeout_stops_the_stragglers_and_exits_124()
    {
        using var temp = new TempDirectory("pspawn-cli-");
        string json = temp.File("summary.json");
        CliRunner.Result result = await CliRunner.Run(
            ["run", "-n", "3", "--timeout", "1s", "--grace", "2s", "--json", json, "--", Sh, "-c", "[ $PSPAWN_RANK = 1 ] && exec sleep 30; exit 0"]);
        Assert.True(result.ExitCode == 124, result.ToString());
        Assert.True(result.Elapsed < TimeSpan.FromSeconds(15), result.ToString());
        JsonElement summary = Summary(json);
        Assert.True(summary.GetProperty("timed_out").GetBoolean());
        Assert.Equal([0, null, 0], Instances(summary).Select(i => NumberOrNull(i, "exit_code")));
        Assert.Equal([null, 15, null], Instances(summary).Select(i => NumberOrNull(i, "signal")));
        Assert.Contains("--timeout", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Timeout_kills_with_SIGKILL_after_the_grace_period_when_SIGTERM_is_ignored()
    {
        using var temp = new TempDirectory("pspawn-cli-");
        string json = temp.File("summary.json");
        CliRunner.Result result = await CliRunner.Run(
            ["run", "-n", "2", "--timeout", "500ms", "--grace", "1s", "--json", json, "--", Sh, "-c", "trap '' TERM; exec sleep 30"]);
        Assert.True(result.ExitCode == 124, result.ToString());
        Assert.True(result.Elapsed >= TimeSpan.FromSeconds(1.5), result.ToString());
        Assert.Equal([9, 9], Instances(Summary(json)).Select(i => NumberOrNull(i, "signal")));
    }

    [Fact]
    public async Task SIGINT_to_pspawn_is_forwarded_to_every_instance()
    {
        using var temp = new TempDirectory("pspawn-cli-");
        string json = temp.File("summary.json");
        using CliRunner.Running running = CliRunner.Start(
            ["run", "-n", "3", "--output", "none", "--json", json, "--", Fixtures.Report, $"--report-out={temp.File("{rank}.json")}", "--report-sleep-ms=30000"]);
        await Bounded.Until(() => Enumerable.Range(0, 3).All(r => File.Exists(temp.File($"{r}.json"))), "every instance runs");
        int[] pids = Enumerable.Range(0, 3).Select(r => ReportOutput.Read(temp.File($"{r}.json")).Pid).ToArray();
        Assert.Equal(0, LinuxProcesses.Kill(running.Process.Id, 2));
        CliRunner.Result result = await running.WaitAsync(s_limit);
        Assert.True(result.ExitCode == 130, result.ToString());
        Assert.True(result.Elapsed < TimeSpan.FromSeconds(20), result.ToString());
        JsonElement[] instances = Instances(Summary(json));
        Assert.Equal([2, 2, 2], instances.Select(i => NumberOrNull(i, "signal")));
        Assert.Equal(pids, instances.Select(i => i.GetProperty("pid").GetInt32()));
        Assert.Equal(2, Summary(json).GetProperty("interrupted_by").GetInt32());
        Assert.All(pids, pid => Assert.False(LinuxProcesses.Exists(pid)));
    }

    [Fact]
    public async Task SIGINT_then_SIGKILL_after_the_grace_period_for_instances_that_ignore_it()
    {
        using var temp = new TempDirectory("pspawn-cli-");
        string json = temp.File("summary.json");
        using CliRunner.Running running = CliRunner.Start(
            ["run", "-n", "2", "--grace", "1500ms", "--output", "none", "--json", json, "--", Sh, "-c", $"trap '' INT; touch {temp.Path}/ready-$PSPAWN_RANK; exec sleep 30"]);
        await Bounded.Until(() => File.Exists(temp.File("ready-0")) && File.Exists(temp.File("ready-1")), "every instance runs");
        await Task.Delay(200); // the exec of sleep
        var interrupted = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal(0, LinuxProcesses.Kill(running.Process.Id, 15)); // SIGTERM to pspawn is handled as SIGINT is
        CliRunner.Result result = await running.WaitAsync(s_limit);
        interrupted.Stop();
        Assert.True(result.ExitCode == 143, result.ToString());
        Assert.True(interrupted.Elapsed >= TimeSpan.FromSeconds(1.4), $"killed before the grace period: {interrupted.Elapsed}");
        Assert.Equal([9, 9], Instances(Summary(json)).Select(i => NumberOrNull(i, "signal")));
        Assert.Contains("forwarding SIGINT", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Json_summary_describes_every_instance()
    {
        using var temp = new TempDirectory("pspawn-cli-");
        CliRunner.Result result = await CliRunner.Run(
            ["run", "-n", "3", "--output", "none", "--json", "-", "--quiet", "--", Fixtures.Report, $"--report-out={temp.File("{rank}.json")}", "--report-exit=5"]);
        Assert.True(result.ExitCode == 5, result.ToString());
        using var document = JsonDocument.Parse(result.Stdout);
        JsonElement summary = document.RootElement;
        Assert.Equal(Fixtures.Report, summary.GetProperty("program").GetString());
        Assert.Equal(3, summary.GetProperty("count").GetInt32());
        Assert.Equal(3, summary.GetProperty("size").GetInt32());
        Assert.Equal(5, summary.GetProperty("exit_code").GetInt32());
        Assert.False(summary.GetProperty("timed_out").GetBoolean());
        Assert.False(summary.GetProperty("slurm").GetBoolean());
        JsonElement[] instances = Instances(summary);
        Assert.Equal(3, instances.Length);
        for (int rank = 0; rank < 3; rank++)
        {
            JsonElement instance = instances[rank];
            Assert.Equal(rank, instance.GetProperty("rank").GetInt32());
            Assert.Equal(ReportOutput.Read(temp.File($"{rank}.json")).Pid, instance.GetProperty("pid").GetInt32());
            Assert.Equal(5, instance.GetProperty("exit_code").GetInt32());
            Assert.Equal(JsonValueKind.Null, instance.GetProperty("signal").ValueKind);
            Assert.Equal(JsonValueKind.Null, instance.GetProperty("spawn_error").ValueKind);
            DateTimeOffset start = DateTimeOffset.Parse(instance.GetProperty("start").GetString()!, CultureInfo.InvariantCulture);
            DateTimeOffset end = DateTimeOffset.Parse(instance.GetProperty("end").GetString()!, CultureInfo.InvariantCulture);
            Assert.True(start <= end && end - start < TimeSpan.FromSeconds(30), $"{start:O} .. {end:O}");
            Assert.True(DateTimeOffset.UtcNow - start < TimeSpan.FromMinutes(2));
        }
    }

    [Theory]
    [InlineData("no -n", new[] { "run", "--", "/bin/true" }, "--count")]
    [InlineData("-n 0", new[] { "run", "-n", "0", "--", "/bin/true" }, "-n/--count must be 1")]
    [InlineData("-n not a number", new[] { "run", "-n", "many", "--", "/bin/true" }, "many")]
    [InlineData("no PROGRAM", new[] { "run", "-n", "2" }, "command")]
    [InlineData("bad --output", new[] { "run", "-n", "2", "--output", "loud", "--", "/bin/true" }, "'loud' is not one of")]
    [InlineData("files without DIR", new[] { "run", "-n", "2", "--output", "files", "--", "/bin/true" }, "--output files needs a directory")]
    [InlineData("bad --env", new[] { "run", "-n", "2", "--env", "NOVALUE", "--", "/bin/true" }, "is not NAME=VALUE")]
    [InlineData("bad --cpus", new[] { "run", "-n", "2", "--cpus", "0-x", "--", "/bin/true" }, "--cpus")]
    [InlineData("--cpus out of range", new[] { "run", "-n", "2", "--cpus", "5000", "--", "/bin/true" }, "each 0-1023")]
    [InlineData("bad --timeout", new[] { "run", "-n", "2", "--timeout", "soon", "--", "/bin/true" }, "is not a duration")]
    [InlineData("zero --grace", new[] { "run", "-n", "2", "--grace", "0", "--", "/bin/true" }, "must be above 0")]
    [InlineData("--proxies 0", new[] { "run", "-n", "2", "--proxies", "0", "--", "/bin/true" }, "--proxies must be 1")]
    [InlineData("--pool 0", new[] { "run", "-n", "2", "--pool", "0", "--", "/bin/true" }, "--pool must be 1 to 64")]
    [InlineData("--pool 65", new[] { "run", "-n", "2", "--pool", "65", "--", "/bin/true" }, "--pool must be 1 to 64")]
    [InlineData("--json in a missing directory", new[] { "run", "-n", "2", "--json", "/nonexistent/dir/s.json", "--", "/bin/true" }, "--json: the directory")]
    [InlineData("unknown option", new[] { "run", "-n", "2", "--frobnicate", "--", "/bin/true" }, "--frobnicate")]
    [InlineData("unknown command", new[] { "launch", "-n", "2" }, "launch")]
    public async Task Usage_errors_exit_2_with_a_message(string what, string[] arguments, string message)
    {
        CliRunner.Result result = await CliRunner.Run(arguments);
        Assert.True(result.ExitCode == 2, $"{what}: {result}");
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
        Assert.Contains("--help", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_program_exits_127_and_a_non_executable_one_126()
    {
        CliRunner.Result missing = await CliRunner.Run(["run", "-n", "2", "--", "pspawn-no-such-program"]);
        Assert.True(missing.ExitCode == 127, missing.ToString());
        Assert.Contains("pspawn-no-such-program: command not found in PATH", missing.Stderr, StringComparison.Ordinal);

        CliRunner.Result missingPath = await CliRunner.Run(["run", "-n", "2", "--", "/nonexistent/program"]);
        Assert.True(missingPath.ExitCode == 127, missingPath.ToString());
        Assert.Contains("/nonexistent/program: no such file", missingPath.Stderr, StringComparison.Ordinal);

        using var temp = new TempDirectory("pspawn-cli-");
        string plain = temp.File("plain");
        File.WriteAllText(plain, "not a program\n");
        CliRunner.Result denied = await CliRunner.Run(["run", "-n", "2", "--", plain]);
        Assert.True(denied.ExitCode == 126, denied.ToString());
        Assert.Contains("permission denied", denied.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("none")]
    [InlineData("prefix")]
    public async Task An_instance_that_cannot_start_makes_the_status_125_and_is_in_the_summary(string output)
    {
        // CPU 1023 is not online here: the kernel refuses that placement for every instance (EINVAL).
        using var temp = new TempDirectory("pspawn-cli-");
        string json = temp.File("summary.json");
        CliRunner.Result result = await CliRunner.Run(["run", "-n", "2", "--cpus", "1023", "--output", output, "--json", json, "--", Fixtures.Noop]);
        Assert.True(result.ExitCode == 125, result.ToString());
        Assert.Contains("rank 1 did not start", result.Stderr, StringComparison.Ordinal);
        Assert.All(Instances(Summary(json)), i =>
        {
            Assert.Contains("EINVAL", i.GetProperty("spawn_error").GetString(), StringComparison.Ordinal);
            Assert.Equal(JsonValueKind.Null, i.GetProperty("pid").ValueKind);
        });
    }

    [Fact]
    public async Task An_output_directory_that_cannot_be_created_exits_125()
    {
        CliRunner.Result result = await CliRunner.Run(["run", "-n", "2", "--output", "files", "/proc/pspawn-cannot-create", "--", Fixtures.Noop]);
        Assert.True(result.ExitCode == 125, result.ToString());
        Assert.Contains("pspawn-cannot-create", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bench_compares_against_Process_Start_and_prints_the_ratio()
    {
        CliRunner.Result result = await CliRunner.Run(["bench", Fixtures.Noop, "-n", "20", "--rounds", "1"], limit: TimeSpan.FromMinutes(2));
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("Process.Start", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("PSpawn SpawnN", result.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"ratio \(SpawnN spawns/s ÷ Process.Start spawns/s\): [0-9]+\.[0-9]{2}x", result.Stdout);
    }
}

/// <summary>pspawn on a terminal (a pseudo-terminal from script(1)): rank prefixes by default and the progress display.</summary>
public sealed class CliTerminalTests
{
    [Fact]
    public async Task On_a_terminal_lines_are_prefixed_by_default_and_progress_is_shown()
    {
        string command = $"'{CommandRunner.DotNet}' '{CliRunner.Dll}' run -n 2 -- /bin/sh -c 'sleep 0.6; echo tty-$PSPAWN_RANK'";
        var environment = new Dictionary<string, string?>
        {
            ["TERM"] = "xterm-256color",
            ["CI"] = null, // Spectre.Console treats a CI environment as not interactive
            ["GITHUB_ACTIONS"] = null,
            ["TF_BUILD"] = null,
            ["NO_COLOR"] = null,
        };
        foreach (string name in Environment.GetEnvironmentVariables().Keys.Cast<string>().Where(n => n.StartsWith("SLURM_", StringComparison.Ordinal)))
        {
            environment[name] = null;
        }

        // script -q -e -c CMD FILE: runs CMD on a new pseudo-terminal; its typescript goes to FILE (here discarded).
        CommandRunner.Result result = await CommandRunner.Run("script", ["-q", "-e", "-c", command, "/dev/null"], Path.GetTempPath(), environment, TimeSpan.FromMinutes(1));
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("[0] tty-0", result.Output, StringComparison.Ordinal);
        Assert.Contains("[1] tty-1", result.Output, StringComparison.Ordinal);
        Assert.Contains("launching", result.Output, StringComparison.Ordinal); // the progress display (Spectre.Console)
        Assert.Contains("exited", result.Output, StringComparison.Ordinal);
    }
}
