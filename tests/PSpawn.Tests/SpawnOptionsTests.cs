using Mono.Unix.Native;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

/// <summary>Per-spawn options: working directory, CPUs, process groups, resource limits, umask, time-outs.</summary>
public sealed class SpawnOptionsTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    /// <summary>Spawns the report fixture with stdout piped and returns what it reported.</summary>
    private static async Task<ReportOutput> Report(PSpawnContext context, SpawnOptions options, params string[] arguments)
    {
        using SpawnedProcess process = context.Spawn(arguments, options with { StandardOutput = StdioTarget.Pipe });
        string json = await process.StandardOutputReader.ReadToEndAsync().Within();
        await process.WaitForExitAsync().Within();
        Assert.Equal(0, process.ExitCode);
        return ReportOutput.Parse(json);
    }

    [Fact]
    public void No_option_means_the_fast_path()
    {
        Assert.False(SpawnOptions.Default.HasNativeOptions);
        Assert.False(new SpawnOptions { Argv0 = "x" }.WithEnvironmentVariable("A", "b").HasNativeOptions);
        Assert.True(new SpawnOptions { Umask = 0 }.HasNativeOptions);
        Assert.True(new SpawnOptions { StandardError = StdioTarget.Null }.HasNativeOptions);
    }

    [Fact]
    public async Task Working_directory_argv0_and_environment_combine()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        var options = new SpawnOptions { WorkingDirectory = _temp.Path, Argv0 = "renamed" }.WithEnvironmentVariable("PSPAWN_OPTION_TEST", "42");
        ReportOutput report = await Report(context, options);
        Assert.Equal(_temp.Path, report.Text("cwd"));
        Assert.Equal("renamed", report.Argv[0]);
        Assert.Equal("42", report.EnvDictionary["PSPAWN_OPTION_TEST"]);
    }

    [Fact]
    public async Task A_missing_working_directory_is_that_spawns_error()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        var options = new SpawnOptions { WorkingDirectory = "/nonexistent/pspawn/directory", StandardOutput = StdioTarget.Pipe };

        var single = await Assert.ThrowsAsync<PSpawnFileNotFoundException>(() => Bounded.Run(() => context.Spawn([], options)));
        Assert.Equal(Errno.ENOENT, single.Errno);
        Assert.Contains("working directory", single.Message, StringComparison.Ordinal);

        // SpawnN: every instance failed, none is lost, and the children never ran main.
        var batch = await Assert.ThrowsAnyAsync<Exception>(() => Bounded.Run(() => context.SpawnN(3, [], options)));
        Assert.Equal(Errno.ENOENT, ((IPSpawnError)batch).Errno);
        if (batch is PSpawnException e)
        {
            Assert.Empty(e.StartedProcesses);
        }

        // The failed children were reaped by the call: none is left as a zombie of ours running the fixture.
        Assert.DoesNotContain(
            LinuxProcesses.Children(Environment.ProcessId),
            c => c.State == 'Z' && Cmdline(c.Pid).Contains(Fixtures.Report, StringComparison.Ordinal));
    }

    private static string Cmdline(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/cmdline");
        }
        catch (IOException)
        {
            return string.Empty;
        }
    }

    [Fact]
    public async Task A_child_pinned_to_cpu_1_reports_affinity_1()
    {
        Assert.True(Environment.ProcessorCount >= 2, "this test needs 2 CPUs");
        using var context = PSpawnContext.Create(Fixtures.Report);
        ReportOutput report = await Report(context, new SpawnOptions { Cpus = new HashSet<int> { 1 } });
        Assert.Equal([1], report.Numbers("affinity"));
    }

    [Fact]
    public async Task Cpu_sets_per_instance_are_used_round_robin()
    {
        Assert.True(Environment.ProcessorCount >= 2, "this test needs 2 CPUs");
        using var context = PSpawnContext.Create(Fixtures.Report);
        var options = new SpawnOptions
        {
            StandardOutput = StdioTarget.Pipe,
            CpuSetsPerInstance = [new HashSet<int> { 0 }, new HashSet<int> { 1 }],
        };
        IReadOnlyList<SpawnedProcess> processes = context.SpawnN(4, [], options);
        string[] outputs = await Task.WhenAll(processes.Select(p => p.StandardOutputReader.ReadToEndAsync())).Within();
        await processes.ExitAll();
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal([i % 2], ReportOutput.Parse(outputs[i]).Numbers("affinity"));
            processes[i].Dispose();
        }
    }

    [Fact]
    public async Task Invalid_cpus_are_rejected()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        Assert.Throws<ArgumentOutOfRangeException>(() => context.Spawn([], new SpawnOptions { Cpus = new HashSet<int> { -1 } }));
        Assert.Throws<ArgumentOutOfRangeException>(() => context.Spawn([], new SpawnOptions { Cpus = new HashSet<int> { 1024 } }));
        Assert.Throws<ArgumentException>(() => context.Spawn([], new SpawnOptions { Cpus = new HashSet<int>() }));
        Assert.Throws<ArgumentException>(() => context.Spawn([], new SpawnOptions { CpuSetsPerInstance = [] }));
        Assert.Throws<ArgumentException>(() => context.Spawn([], new SpawnOptions { Cpus = new HashSet<int> { 0 }, CpuSetsPerInstance = [new HashSet<int> { 0 }] }));

        // In range but not present: the kernel refuses it in the child, and that is the spawn's error.
        var refused = await Assert.ThrowsAsync<PSpawnException>(
            () => Bounded.Run(() => context.Spawn([], new SpawnOptions { Cpus = new HashSet<int> { 1000 } })));
        Assert.Equal(Errno.EINVAL, refused.Errno);

        // SpawnN with one good and one refused set: the good instances run and are reported.
        var partial = await Assert.ThrowsAsync<PSpawnException>(() => Bounded.Run(() => context.SpawnN(
            4, [], new SpawnOptions { CpuSetsPerInstance = [new HashSet<int> { 0 }, new HashSet<int> { 1000 }], StandardOutput = StdioTarget.Null })));
        Assert.Equal(Errno.EINVAL, partial.Errno);
        Assert.Equal(2, partial.StartedProcesses.Count);
        Assert.Equal(new Dictionary<int, Errno> { [1] = Errno.EINVAL, [3] = Errno.EINVAL }, partial.FailedInstances);
        await partial.StartedProcesses.ExitAll();
        Assert.All(partial.StartedProcesses, p => Assert.Equal(0, p.ExitCode));
    }

    [Fact]
    public async Task Killing_the_process_group_kills_a_grandchild_too()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        using SpawnedProcess process = context.Spawn(
            ["--report-spawn-grandchild", "--report-sleep-ms=60000"],
            new SpawnOptions { NewProcessGroup = true, StandardOutput = StdioTarget.Pipe });

        // The grandchild keeps the pipe open: read the one line of JSON, not to the end.
        string json = (await process.StandardOutputReader.ReadLineAsync().Within())!;
        ReportOutput report = ReportOutput.Parse(json);
        Assert.Equal(process.Id, report.Number("pgid"));
        int grandchild = report.Number("grandchild");
        int grandchildFd = LinuxProcesses.PidFdOpen(grandchild);
        Assert.True(grandchildFd >= 0);
        try
        {
            process.Kill(LinuxProcesses.SIGKILL, entireProcessGroup: true);
            await process.WaitForExitAsync().Within();
            Assert.Equal(LinuxProcesses.SIGKILL, process.TerminatingSignal);
            Assert.True(LinuxProcesses.PidFdExited(grandchildFd, 20000), "the grandchild was killed with its group");
        }
        finally
        {
            LinuxProcesses.Close(grandchildFd);
        }
    }

    [Fact]
    public async Task The_group_can_be_killed_after_its_leader_has_exited()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        using SpawnedProcess process = context.Spawn(
            ["--report-spawn-grandchild"], new SpawnOptions { NewProcessGroup = true, StandardOutput = StdioTarget.Pipe });
        ReportOutput report = ReportOutput.Parse((await process.StandardOutputReader.ReadLineAsync().Within())!);
        int grandchildFd = LinuxProcesses.PidFdOpen(report.Number("grandchild"));
        Assert.True(grandchildFd >= 0);
        try
        {
            await process.WaitForExitAsync().Within();
            Assert.Equal(0, process.ExitCode);
            Assert.False(LinuxProcesses.PidFdExited(grandchildFd, 0));
            process.Kill(LinuxProcesses.SIGKILL, entireProcessGroup: true);
            Assert.True(LinuxProcesses.PidFdExited(grandchildFd, 20000), "the orphaned grandchild was killed with the group");
        }
        finally
        {
            LinuxProcesses.Close(grandchildFd);
        }
    }

    [Fact]
    public async Task The_group_of_this_process_is_never_killed()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        using SpawnedProcess process = context.Spawn(["--report-sleep-ms=60000", "--report-out=" + _temp.File("r.json")]);
        Assert.Throws<InvalidOperationException>(() => process.Kill(LinuxProcesses.SIGKILL, entireProcessGroup: true));
        process.Kill();
        await process.WaitForExitAsync().Within();
    }

    [Fact]
    public async Task New_session_and_joining_a_group()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        using SpawnedProcess leader = context.Spawn(
            ["--report-sleep-ms=60000"], new SpawnOptions { NewSession = true, StandardOutput = StdioTarget.Pipe });
        ReportOutput report = ReportOutput.Parse((await leader.StandardOutputReader.ReadLineAsync().Within())!);
        Assert.Equal(leader.Id, report.Number("sid"));
        Assert.Equal(leader.Id, report.Number("pgid"));

        // Another session's group cannot be joined (EPERM); a group of ours can.
        await Assert.ThrowsAnyAsync<Exception>(() => Bounded.Run(() => context.Spawn([], new SpawnOptions { JoinProcessGroup = leader.Id })));
        leader.Kill(LinuxProcesses.SIGKILL, entireProcessGroup: true);
        await leader.WaitForExitAsync().Within();

        using SpawnedProcess groupLeader = context.Spawn(
            ["--report-sleep-ms=60000"], new SpawnOptions { NewProcessGroup = true, StandardOutput = StdioTarget.Pipe });
        _ = await groupLeader.StandardOutputReader.ReadLineAsync().Within();
        ReportOutput member = await Report(context, new SpawnOptions { JoinProcessGroup = groupLeader.Id });
        Assert.Equal(groupLeader.Id, member.Number("pgid"));
        groupLeader.Kill(LinuxProcesses.SIGKILL, entireProcessGroup: true);
        await groupLeader.WaitForExitAsync().Within();

        Assert.Throws<ArgumentException>(() => context.Spawn([], new SpawnOptions { NewSession = true, NewProcessGroup = true }));
    }

    [Fact]
    public async Task Resource_limits_are_applied_and_a_refused_one_is_the_spawns_error()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        var options = new SpawnOptions
        {
            StandardOutput = StdioTarget.Pipe,
            ResourceLimits = [new ResourceLimit(ResourceLimitKind.OpenFiles, 64, 128), new ResourceLimit(ResourceLimitKind.CoreFileSize, 0, 0)],
        };
        using SpawnedProcess process = context.Spawn(["--report-sleep-ms=60000"], options);
        _ = await process.StandardOutputReader.ReadLineAsync().Within(); // it is now sleeping
        string limits = await File.ReadAllTextAsync($"/proc/{process.Id}/limits");
        string openFiles = limits.Split('\n').Single(l => l.StartsWith("Max open files", StringComparison.Ordinal));
        Assert.Equal(["Max", "open", "files", "64", "128", "files"], openFiles.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        string core = limits.Split('\n').Single(l => l.StartsWith("Max core file size", StringComparison.Ordinal));
        Assert.Equal(["0", "0"], core.Split(' ', StringSplitOptions.RemoveEmptyEntries)[4..6]);
        process.Kill();
        await process.WaitForExitAsync().Within();

        // Above fs.nr_open: refused even for root (EPERM), before main.
        var refused = await Assert.ThrowsAsync<PSpawnException>(() => Bounded.Run(() => context.Spawn(
            [], new SpawnOptions { ResourceLimits = [new ResourceLimit(ResourceLimitKind.OpenFiles, ResourceLimit.Unlimited, ResourceLimit.Unlimited)] })));
        Assert.Equal(Errno.EPERM, refused.Errno);

        Assert.Throws<ArgumentException>(() => context.Spawn([], new SpawnOptions { ResourceLimits = [new ResourceLimit(ResourceLimitKind.Stack, 10, 5)] }));
    }

    [Fact]
    public async Task Umask_is_applied()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        ReportOutput report = await Report(context, new SpawnOptions { Umask = (UnixFileMode)Convert.ToInt32("027", 8) });
        Assert.Equal(Convert.ToInt32("027", 8), report.Number("umask"));
    }

    [Fact]
    public async Task Kill_on_parent_death_does_not_fire_when_the_creating_thread_exits()
    {
        // The context is created on a short-lived thread; the library creates the native context on its own
        // long-lived thread, so the parent-death signal does not follow this one.
        PSpawnContext? context = null;
        var thread = new Thread(() => context = PSpawnContext.Create(Fixtures.Report));
        thread.Start();
        Assert.True(thread.Join(TimeSpan.FromSeconds(60)));
        using (context)
        {
            using SpawnedProcess process = context!.Spawn(
                ["--report-sleep-ms=300"], new SpawnOptions { KillOnParentDeath = true, StandardOutput = StdioTarget.Null });
            await process.WaitForExitAsync().Within();
            Assert.Null(process.TerminatingSignal);
            Assert.Equal(0, process.ExitCode);
        }
    }

    [Fact]
    public async Task Wait_with_a_timeout_and_the_kill_policy()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        var options = new SpawnOptions { StandardOutput = StdioTarget.Null };

        using SpawnedProcess quick = context.Spawn([], options);
        Assert.True(await quick.WaitForExitAsync(TimeSpan.FromSeconds(60)).Within());
        Assert.True(await quick.WaitForExitOrKillAsync(TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(1)).Within());

        using SpawnedProcess sleeper = context.Spawn(["--report-sleep-ms=60000"], options);
        Assert.False(await sleeper.WaitForExitAsync(TimeSpan.FromMilliseconds(50)).Within());
        Assert.False(sleeper.HasExited);

        // SIGTERM first: the fixture does not handle it, so it dies of it within the grace period.
        Assert.False(await sleeper.WaitForExitOrKillAsync(TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(30)).Within());
        Assert.Equal(LinuxProcesses.SIGTERM, sleeper.TerminatingSignal);

        // No grace period: SIGKILL at once.
        using SpawnedProcess another = context.Spawn(["--report-sleep-ms=60000"], options);
        Assert.False(await another.WaitForExitOrKillAsync(TimeSpan.FromMilliseconds(10), TimeSpan.Zero).Within());
        Assert.Equal(LinuxProcesses.SIGKILL, another.TerminatingSignal);
        Assert.Equal(137, another.ExitCode);
    }
}
