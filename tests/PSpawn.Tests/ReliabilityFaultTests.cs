using System.Diagnostics;
using System.Globalization;
using Mono.Unix.Native;
using PSpawn.Tests.Infrastructure;
using Xunit.Abstractions;

namespace PSpawn.Tests;

/// <summary>
/// Fault injection (issue #6): the proxy killed in the middle of a batch, the proxy stopped, children that crash,
/// are killed or exit with every code, and the executable deleted or replaced under a live context.
/// </summary>
[Collection(ReliabilityCollection.Name)]
public sealed class ReliabilityFaultTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    [Fact]
    public async Task Proxy_SIGKILLed_during_SpawnN_of_500_returns_the_started_children_and_a_proxy_error()
    {
        const int Count = 500;
        const int ChildSleepMs = 5000;
        const int ChildExit = 7;

        // Killing the proxy must land while the batch is in flight; on a fast machine the batch may finish first,
        // so try a few times (each attempt on a fresh context).
        for (int attempt = 1; ; attempt++)
        {
            // Children of the fixture left running by other tests are not ours to count.
            HashSet<int> before = ReliabilityProbes.LiveChildren("report");
            // One proxy: with several, the others take over what the killed one did not fork (the test below).
            await using var context = PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { ProxyCount = 1 });
            int proxy = context.ProxyProcessId ?? throw new InvalidOperationException("no proxy");
            string reportPath = _temp.File(Invariant($"killed-{attempt}.json"));
            var batch = Task.Factory.StartNew(
                () => context.SpawnN(Count, [$"--report-exit={ChildExit}", Invariant($"--report-sleep-ms={ChildSleepMs}"), $"--report-out={reportPath}"]),
                CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

            // Wait until some children run (the proxy's own comm is the fixture's too: leave it out), then kill it.
            await Bounded.Until(
                () => batch.IsCompleted || ReliabilityProbes.LiveChildren("report").Count(pid => pid != proxy && !before.Contains(pid)) >= 5,
                "the batch has started some children");
            Assert.Equal(0, LinuxProcesses.Kill(proxy, LinuxProcesses.SIGKILL));
            var sinceKill = Stopwatch.StartNew();

            Exception? failure = null;
            IReadOnlyList<SpawnedProcess>? all = null;
            try
            {
                all = await batch.Within(TimeSpan.FromSeconds(30));
            }
            catch (Exception thrown)
            {
                failure = thrown;
            }

            TimeSpan returnedAfter = sinceKill.Elapsed;
            if (all is not null)
            {
                // The batch won the race: every child must be fine; try again.
                Assert.Equal(Count, all.Count);
                await all.ExitAll();
                Assert.All(all, p => Assert.Equal(ChildExit, p.ExitCode));
                Assert.True(attempt < 8, "the batch finished before the proxy could be killed in 8 attempts");
                continue;
            }

            var e = Assert.IsType<PSpawnProxyException>(failure);
            Assert.Equal(Errno.EPIPE, e.Errno);
            Assert.False(e.DuringStartup);
            Assert.Equal(Fixtures.Report, e.Path);
            Assert.True(returnedAfter < TimeSpan.FromSeconds(3), Invariant($"SpawnN returned {returnedAfter.TotalMilliseconds:0} ms after the kill"));
            IReadOnlyList<SpawnedProcess> started = e.StartedProcesses;
            Assert.InRange(started.Count, 1, Count - 1);
            Assert.Equal(started.Count, started.Select(p => p.Id).Distinct().Count());

            // No child is lost: every live child of ours running the fixture (other than the dead proxy) is one the
            // library reported. The children sleep for seconds, so they are all still there.
            HashSet<int> running = ReliabilityProbes.LiveChildren("report");
            running.Remove(proxy);
            running.ExceptWith(before);
            int stillRunning = started.Count(p => !p.HasExited);
            var startedIds = started.Select(p => p.Id).ToHashSet();
            Assert.Empty(running.Except(startedIds));
            Assert.Empty(startedIds.Except(running));

            // The next spawn restarts the proxy and is served by the new one.
            using (SpawnedProcess next = context.Spawn(["--report-exit=0"]))
            {
                await next.WaitForExitAsync();
                Assert.Equal(0, next.ExitCode);
            }

            Assert.NotNull(context.ProxyProcessId);
            Assert.NotEqual(proxy, context.ProxyProcessId);

            // Children already started kept running and are waitable with their own exit status.
            await started.ExitAll();
            Assert.All(started, p =>
            {
                Assert.Null(p.TerminatingSignal);
                Assert.Equal(ChildExit, p.ExitCode);
                Assert.True(ReliabilityProbes.AlreadyReaped(p.Id));
            });

            await context.DisposeAsync();
            await Bounded.Until(() => LinuxProcesses.Zombies().Count == 0, "no zombie is left", TimeSpan.FromSeconds(10));
            Assert.False(ReliabilityProbes.ChildPids().Contains(proxy), "the dead proxy was not reaped");
            output.WriteLine(Invariant(
                $"attempt {attempt}: SpawnN({Count}) returned {returnedAfter.TotalMilliseconds:0} ms after SIGKILL of the proxy with {started.Count} started ({stillRunning} still running then), {e.Errno}; all exited with {ChildExit}"));
            return;
        }
    }

    [Fact]
    public async Task One_of_two_proxies_SIGKILLed_during_SpawnN_loses_no_instance()
    {
        const int Count = 500;
        const int ChildExit = 5;
        await using var context = PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { ProxyCount = 2 });
        Assert.Equal(2, context.ProxyCount);
        int proxy = context.ProxyProcessId ?? throw new InvalidOperationException("no proxy");
        HashSet<int> before = ReliabilityProbes.LiveChildren("report");
        var batch = Task.Factory.StartNew(
            () => context.SpawnN(Count, [$"--report-exit={ChildExit}", "--report-sleep-ms=2000", $"--report-out={_temp.File("two.json")}"]),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        await Bounded.Until(
            () => batch.IsCompleted || ReliabilityProbes.LiveChildren("report").Except(before).Count() >= 10,
            "the batch has started some children");
        Assert.Equal(0, LinuxProcesses.Kill(proxy, LinuxProcesses.SIGKILL));

        // The surviving proxy forks what the killed one had not: every instance started, none lost.
        IReadOnlyList<SpawnedProcess> all = await batch.Within(TimeSpan.FromSeconds(60));
        Assert.Equal(Count, all.Count);
        Assert.Equal(Count, all.Select(p => p.Id).Distinct().Count());
        await all.ExitAll();
        Assert.All(all, p => Assert.Equal(ChildExit, p.ExitCode));
        foreach (SpawnedProcess p in all)
        {
            p.Dispose();
        }

        output.WriteLine(Invariant($"SpawnN({Count}) on two proxies, one SIGKILLed mid-batch: {all.Count} started, all exited {ChildExit}"));
    }

    [Fact]
    public async Task Proxy_SIGSTOPped_makes_Spawn_time_out_with_a_proxy_error_instead_of_hanging()
    {
        var timeout = TimeSpan.FromMilliseconds(500);
        await using var context = PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { RequestTimeout = timeout, ProxyCount = 1 });
        await context.SpawnN(3, []).ExitAll();
        int proxy = context.ProxyProcessId ?? throw new InvalidOperationException("no proxy");
        Assert.Equal(0, LinuxProcesses.Kill(proxy, ReliabilityProbes.SIGSTOP));
        try
        {
            var clock = Stopwatch.StartNew();
            PSpawnProxyException e = await Task.Run(() => Assert.Throws<PSpawnProxyException>(() => context.Spawn([]))).Within(TimeSpan.FromSeconds(30));
            clock.Stop();
            Assert.Equal(Errno.ETIMEDOUT, e.Errno);
            Assert.False(e.DuringStartup);
            Assert.Contains("timeout", e.Message, StringComparison.OrdinalIgnoreCase);
            Assert.Empty(e.StartedProcesses);
            Assert.InRange(clock.Elapsed, timeout * 0.9, TimeSpan.FromSeconds(10));
            output.WriteLine(Invariant($"Spawn on a stopped proxy threw {e.Errno} after {clock.Elapsed.TotalMilliseconds:0} ms (request timeout {timeout.TotalMilliseconds:0} ms)"));

            // The stopped proxy has been killed; the next spawn starts a new one.
            await context.SpawnN(2, []).ExitAll();
            Assert.NotEqual(proxy, context.ProxyProcessId);
        }
        finally
        {
            // If the library left it stopped (a failure of this test), do not leave a stopped process behind.
            if (LinuxProcesses.ReadStat(proxy) is { Ppid: var parent } && parent == Environment.ProcessId)
            {
                LinuxProcesses.Kill(proxy, ReliabilityProbes.SIGCONT);
            }
        }

        await context.DisposeAsync();
        await Bounded.Until(() => !ReliabilityProbes.ChildPids().Contains(proxy), "the proxy has been reaped", TimeSpan.FromSeconds(10));
        Assert.Empty(LinuxProcesses.Zombies());
    }

    [Fact]
    public async Task Every_exit_code_0_to_255_is_reported_exactly()
    {
        await using var context = PSpawnContext.Create(Fixtures.Report);
        var processes = new List<(int Code, SpawnedProcess Process)>();
        for (int code = 0; code < 256; code++)
        {
            // Half single spawns, half one-instance batches.
            string[] arguments = [$"--report-exit={code}", $"--report-out={_temp.File("codes.json")}"];
            processes.Add((code, code % 2 == 0 ? context.Spawn(arguments) : context.SpawnN(1, arguments)[0]));
        }

        await processes.Select(p => p.Process).ExitAll();
        Assert.All(processes, p =>
        {
            Assert.Equal(p.Code, p.Process.ExitCode);
            Assert.Null(p.Process.TerminatingSignal);
        });
    }

    public static TheoryData<int> Signals() =>
    [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 24, 25, 26, 27, 29, 30, 31, 34, 50, 64,
    ];

    [Theory]
    [MemberData(nameof(Signals))]
    public async Task A_child_that_raises_a_signal_is_reported_with_that_signal(int signal)
    {
        await using var context = PSpawnContext.Create(Fixtures.Report);
        IReadOnlyList<SpawnedProcess> processes = context.SpawnN(
            3, [Invariant($"--report-signal={signal}"), "--report-exit=3", $"--report-out={_temp.File("signal.json")}"]);
        await processes.ExitAll();
        Assert.All(processes, p =>
        {
            Assert.Equal(signal, p.TerminatingSignal);
            Assert.Equal(128 + signal, p.ExitCode);
        });
    }

    [Theory]
    [InlineData(LinuxProcesses.SIGKILL)]
    [InlineData(LinuxProcesses.SIGTERM)]
    [InlineData(2)]
    [InlineData(6)]
    [InlineData(10)]
    public async Task A_child_killed_from_outside_is_reported_with_that_signal(int signal)
    {
        await using var context = PSpawnContext.Create(Fixtures.Report);
        IReadOnlyList<SpawnedProcess> processes = context.SpawnN(
            2, ["--report-sleep-ms=60000", $"--report-out={_temp.File("killed.json")}"]);
        await Bounded.Until(() => File.Exists(_temp.File("killed.json")), "the children have started");
        processes[0].Kill(signal);
        Assert.Equal(0, LinuxProcesses.Kill(processes[1].Id, signal)); // not through the library
        await processes.ExitAll();
        Assert.All(processes, p =>
        {
            Assert.Equal(signal, p.TerminatingSignal);
            Assert.Equal(128 + signal, p.ExitCode);
        });
    }

    [Fact]
    public async Task Executable_deleted_after_Create_still_spawns_the_loaded_image()
    {
        string path = _temp.File("report-copy");
        File.Copy(Fixtures.Report, path);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        await using var context = PSpawnContext.Create(path);
        File.Delete(path);
        Assert.False(File.Exists(path));

        // Documented behaviour: the proxy already holds the image; children run it until the context is re-created.
        using SpawnedProcess process = context.Spawn(["--report-exit=42", $"--report-out={_temp.File("deleted.json")}", "after-delete"]);
        await process.WaitForExitAsync().Within();
        Assert.Equal(42, process.ExitCode);
        ReportOutput report = ReportOutput.Read(_temp.File("deleted.json"));
        Assert.Equal(process.Id, report.Pid);
        Assert.Equal("after-delete", report.Argv[^1]);

        // A new context for the deleted path fails with a typed error.
        Assert.Throws<PSpawnFileNotFoundException>(() => PSpawnContext.Create(path));
    }

    [Fact]
    public async Task Executable_replaced_after_Create_still_spawns_the_old_image()
    {
        string path = _temp.File("replaced");
        File.Copy(Fixtures.Report, path);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        await using var context = PSpawnContext.Create(path);

        // Replace it the way installers do (new file, rename over the old one) with a program that ignores its
        // arguments and writes no report.
        string replacement = _temp.File("replacement");
        File.Copy(Fixtures.Noop, replacement);
        File.Move(replacement, path, overwrite: true);

        using SpawnedProcess process = context.Spawn(["--report-exit=9", $"--report-out={_temp.File("replaced.json")}"]);
        await process.WaitForExitAsync().Within();
        Assert.Equal(9, process.ExitCode);
        Assert.Equal(process.Id, ReportOutput.Read(_temp.File("replaced.json")).Pid);

        // A context created now runs the new program.
        await using var fresh = PSpawnContext.Create(path);
        using SpawnedProcess noop = fresh.Spawn(["--report-exit=9"]);
        await noop.WaitForExitAsync().Within();
        Assert.Equal(0, noop.ExitCode);
    }

    [Fact]
    public async Task With_WatchImage_a_replaced_executable_is_refused_with_ESTALE()
    {
        string path = _temp.File("watched");
        File.Copy(Fixtures.Report, path);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        await using var context = PSpawnContext.Create(path, options: PSpawnContextOptions.Default with { WatchImage = true });
        using (SpawnedProcess before = context.Spawn(["--report-exit=9", $"--report-out={_temp.File("watched.json")}"]))
        {
            await before.WaitForExitAsync().Within();
            Assert.Equal(9, before.ExitCode);
        }

        string replacement = _temp.File("watched.new");
        File.Copy(Fixtures.Noop, replacement);
        File.Move(replacement, path, overwrite: true);

        var error = Assert.Throws<PSpawnProxyException>(() => context.Spawn(["--report-exit=9"]));
        Assert.Equal(Errno.ESTALE, error.Errno);
        Assert.Contains("changed on disk", error.Message, StringComparison.Ordinal);
        Assert.Throws<PSpawnProxyException>(() => context.Spawn(["--report-exit=9"])); // for good
    }
}
