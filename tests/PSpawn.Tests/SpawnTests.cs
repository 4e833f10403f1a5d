using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

public sealed class SpawnTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private async Task<ReportOutput> RunReport(PSpawnContext context, IReadOnlyList<string> arguments, SpawnOptions? options = null)
    {
        string output = _temp.File($"report-{Guid.NewGuid():N}.json");
        var all = arguments.Append($"--report-out={output}").ToArray();
        using SpawnedProcess process = context.Spawn(all, options);
        await process.WaitForExitAsync().Within();
        Assert.Equal(0, process.ExitCode);
        return ReportOutput.Read(output);
    }

    [Fact]
    public async Task Zygote_mode_and_children_are_children_of_this_process()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        Assert.Equal(PSpawnMode.Zygote, context.Mode);
        Assert.Null(context.FallbackReason);
        Assert.NotNull(context.ProxyProcessId);
        Assert.Equal(Fixtures.Report, context.Path);

        ReportOutput report = await RunReport(context, []);
        Assert.Equal(Environment.ProcessId, report.Ppid);
        Assert.NotEqual(context.ProxyProcessId, report.Pid);
    }

    [Fact]
    public async Task Argv_is_delivered_exactly()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        string[] arguments =
        [
            "plain",
            "",
            "with space",
            "  leading and trailing  ",
            "quotes \" ' and \\ backslash",
            "tab\there\nnewline",
            "grüße",
            "日本語テキスト",
            "emoji 🚀",
            "$HOME `not expanded` *",
            "--report-exit=0",
            new string('x', 100_000),
            "",
        ];

        ReportOutput report = await RunReport(context, arguments);
        string[] expected = [Fixtures.Report, .. arguments];
        Assert.Equal(expected.Length + 1, report.Argv.Count); // + the --report-out option
        Assert.Equal(expected, report.Argv.Take(expected.Length));
    }

    [Fact]
    public async Task Argv0_defaults_to_the_path_and_can_be_set()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        ReportOutput byDefault = await RunReport(context, ["a"]);
        Assert.Equal(Fixtures.Report, byDefault.Argv[0]);

        ReportOutput custom = await RunReport(context, ["a"], new SpawnOptions { Argv0 = "custom-name ☃" });
        Assert.Equal("custom-name ☃", custom.Argv[0]);
        Assert.Equal("a", custom.Argv[1]);
    }

    [Fact]
    public async Task Relative_path_is_resolved_to_a_full_path()
    {
        string relative = Path.GetRelativePath(Environment.CurrentDirectory, Fixtures.Report);
        using var context = PSpawnContext.Create(relative);
        Assert.Equal(Fixtures.Report, context.Path);
        ReportOutput report = await RunReport(context, []);
        Assert.Equal(Fixtures.Report, report.Argv[0]);
    }

    [Fact]
    public async Task Environment_is_inherited_from_this_process_including_managed_changes()
    {
        string name = "PSPAWN_TEST_INHERITED_" + Guid.NewGuid().ToString("N");
        Environment.SetEnvironmentVariable(name, "value from SetEnvironmentVariable");
        try
        {
            using var context = PSpawnContext.Create(Fixtures.Report);
            ReportOutput report = await RunReport(context, []);
            IReadOnlyDictionary<string, string> env = report.EnvDictionary;
            Assert.Equal("value from SetEnvironmentVariable", env[name]);
            Assert.Equal(Environment.GetEnvironmentVariable("PATH"), env["PATH"]);
            Assert.False(env.ContainsKey("LD_PRELOAD"), "the proxy's LD_PRELOAD must not leak into children");
        }
        finally
        {
            Environment.SetEnvironmentVariable(name, null);
        }
    }

    [Fact]
    public async Task Environment_can_be_changed_relative_to_this_process()
    {
        string removed = "PSPAWN_TEST_REMOVED_" + Guid.NewGuid().ToString("N");
        Environment.SetEnvironmentVariable(removed, "present in the parent");
        try
        {
            using var context = PSpawnContext.Create(Fixtures.Report);
            SpawnOptions options = SpawnOptions.Default
                .WithEnvironmentVariable("PSPAWN_ADDED", "añadido ✓")
                .WithEnvironmentVariable("PSPAWN_EMPTY", string.Empty)
                .WithEnvironmentVariable("PSPAWN_WITH_EQUALS", "a=b=c")
                .WithEnvironmentVariable(removed, null);
            ReportOutput report = await RunReport(context, [], options);
            IReadOnlyDictionary<string, string> env = report.EnvDictionary;
            Assert.Equal("añadido ✓", env["PSPAWN_ADDED"]);
            Assert.Equal(string.Empty, env["PSPAWN_EMPTY"]);
            Assert.Equal("a=b=c", env["PSPAWN_WITH_EQUALS"]);
            Assert.False(env.ContainsKey(removed));
            Assert.Equal(Environment.GetEnvironmentVariable("HOME"), env["HOME"]);
            Assert.Contains("PSPAWN_EMPTY=", report.Env);
        }
        finally
        {
            Environment.SetEnvironmentVariable(removed, null);
        }
    }

    [Fact]
    public async Task Environment_can_be_replaced_entirely()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        var exact = new Dictionary<string, string>
        {
            ["ONLY"] = "this",
            ["ÜNICODE_NAME"] = "värde",
            ["EMPTY"] = string.Empty,
        };
        ReportOutput report = await RunReport(context, [], SpawnOptions.WithExactEnvironment(exact));
        Assert.Equal(exact.Select(kv => $"{kv.Key}={kv.Value}").Order(StringComparer.Ordinal), report.Env.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Empty_environment_is_possible()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        ReportOutput report = await RunReport(context, [], new SpawnOptions { InheritEnvironment = false });
        Assert.Empty(report.Env);
    }

    [Fact]
    public async Task SpawnN_starts_distinct_processes_with_the_same_arguments()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        string output = _temp.File("n.json");
        IReadOnlyList<SpawnedProcess> processes = context.SpawnN(20, ["--report-exit=7", $"--report-out={output}", "same"]);
        Assert.Equal(20, processes.Count);
        Assert.Equal(20, processes.Select(p => p.Id).Distinct().Count());
        await processes.ExitAll();
        Assert.All(processes, p => Assert.Equal(7, p.ExitCode));
        Assert.All(processes, p => Assert.Null(p.TerminatingSignal));
        ReportOutput last = ReportOutput.Read(output);
        Assert.Contains(last.Pid, processes.Select(p => p.Id));
        Assert.Equal("same", last.Argv[3]);
    }

    [Fact]
    public void SpawnN_of_zero_returns_nothing()
    {
        using var context = PSpawnContext.Create(Fixtures.Noop);
        Assert.Empty(context.SpawnN(0, []));
        Assert.Throws<ArgumentOutOfRangeException>(() => context.SpawnN(-1, []));
    }

    [Fact]
    public async Task Children_keep_running_and_stay_waitable_after_the_context_is_disposed()
    {
        SpawnedProcess process;
        using (var context = PSpawnContext.Create(Fixtures.Report))
        {
            process = context.Spawn(["--report-sleep-ms=300", "--report-exit=5", $"--report-out={_temp.File("x.json")}"]);
        }

        await process.WaitForExitAsync().Within();
        Assert.Equal(5, process.ExitCode);
    }

    [Fact]
    public void Invalid_arguments_are_rejected_before_reaching_the_native_core()
    {
        using var context = PSpawnContext.Create(Fixtures.Noop);
        Assert.Throws<ArgumentNullException>(() => context.Spawn(null!));
        Assert.Throws<ArgumentException>(() => context.Spawn(["nul\0inside"]));
        Assert.Throws<ArgumentException>(() => SpawnOptions.Default.WithEnvironmentVariable("A=B", "x"));
        Assert.Throws<ArgumentException>(() => SpawnOptions.Default.WithEnvironmentVariable(string.Empty, "x"));
        Assert.Throws<ArgumentException>(() => context.Spawn([], SpawnOptions.Default.WithEnvironmentVariable("V", "nul\0")));
        Assert.Throws<ArgumentException>(() => PSpawnContext.Create(string.Empty));
        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, core: -2));
        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { StartupTimeout = TimeSpan.Zero }));
    }

    [Fact]
    public async Task Pinning_to_a_core_pins_the_children()
    {
        using var context = PSpawnContext.Create(Fixtures.Report, core: 0);
        Assert.Equal(0, context.Core);
        ReportOutput report = await RunReport(context, []);
        int[] affinity = report.Root.GetProperty("affinity").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal([0], affinity);
    }

    [Fact]
    public void Native_version_is_reported()
    {
        Assert.Matches(@"^\d+\.\d+\.\d+$", PSpawnContext.NativeVersion);
    }
}
