using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

public sealed class WaitTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(42)]
    [InlineData(255)]
    public async Task WaitForExitAsync_reports_the_exit_code(int code)
    {
        using var temp = new TempDirectory();
        using var context = PSpawnContext.Create(Fixtures.Report);
        using SpawnedProcess process = context.Spawn([$"--report-exit={code}", $"--report-out={temp.File("r.json")}"]);
        await process.WaitForExitAsync().Within();
        Assert.True(process.HasExited);
        Assert.Equal(code, process.ExitCode);
        Assert.Null(process.TerminatingSignal);
    }

    [Theory]
    [InlineData(LinuxProcesses.SIGTERM)]
    [InlineData(LinuxProcesses.SIGKILL)]
    [InlineData(6)] // SIGABRT
    public async Task WaitForExitAsync_reports_a_terminating_signal(int signal)
    {
        using var temp = new TempDirectory();
        using var context = PSpawnContext.Create(Fixtures.Report);
        using SpawnedProcess process = context.Spawn([$"--report-signal={signal}", $"--report-out={temp.File("r.json")}"]);
        await process.WaitForExitAsync().Within();
        Assert.Equal(signal, process.TerminatingSignal);
        Assert.Equal(128 + signal, process.ExitCode);
    }

    [Fact]
    public async Task Running_process_reports_not_exited()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        using var temp = new TempDirectory();
        using SpawnedProcess process = context.Spawn(["--report-sleep-ms=60000", $"--report-out={temp.File("r.json")}"]);
        try
        {
            Assert.False(process.HasExited);
            Assert.Throws<InvalidOperationException>(() => process.ExitCode);
            Assert.Null(process.TerminatingSignal);
            Assert.False(process.WaitForExit(TimeSpan.FromMilliseconds(50)));
        }
        finally
        {
            process.Kill();
        }

        await process.WaitForExitAsync().Within();
        Assert.Equal(LinuxProcesses.SIGKILL, process.TerminatingSignal);
    }

    [Fact]
    public async Task Cancelled_wait_throws_and_the_process_is_still_waitable()
    {
        using var temp = new TempDirectory();
        using var context = PSpawnContext.Create(Fixtures.Report);
        using SpawnedProcess process = context.Spawn(["--report-sleep-ms=60000", $"--report-out={temp.File("r.json")}"]);

        using (var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(50)))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => process.WaitForExitAsync(cts.Token)).Within();
        }

        using (var cancelled = new CancellationTokenSource())
        {
            await cancelled.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => process.WaitForExitAsync(cancelled.Token)).Within();
        }

        Assert.False(process.HasExited);
        Task wait = process.WaitForExitAsync(CancellationToken.None);
        process.Kill(LinuxProcesses.SIGTERM);
        await wait.Within();
        Assert.Equal(LinuxProcesses.SIGTERM, process.TerminatingSignal);
        Assert.Equal(128 + LinuxProcesses.SIGTERM, process.ExitCode);
    }

    [Fact]
    public async Task Many_cancelled_waits_leave_the_process_waitable()
    {
        using var temp = new TempDirectory();
        using var context = PSpawnContext.Create(Fixtures.Report);
        using SpawnedProcess process = context.Spawn(["--report-sleep-ms=60000", $"--report-out={temp.File("r.json")}"]);
        for (int i = 0; i < 1000; i++)
        {
            using var cts = new CancellationTokenSource();
            Task wait = process.WaitForExitAsync(cts.Token);
            await cts.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait);
        }

        Task[] waiters = Enumerable.Range(0, 10).Select(_ => process.WaitForExitAsync()).ToArray();
        Assert.DoesNotContain(waiters, w => w.IsCompleted);
        process.Kill(LinuxProcesses.SIGTERM);
        await Task.WhenAll(waiters).Within();
        Assert.Equal(LinuxProcesses.SIGTERM, process.TerminatingSignal);
    }

    [Fact]
    public async Task WaitForExit_blocks_until_exit()
    {
        using var context = PSpawnContext.Create(Fixtures.Noop);
        using SpawnedProcess process = context.Spawn([]);
        await Bounded.Run(process.WaitForExit);
        Assert.True(process.WaitForExit(TimeSpan.Zero));
        Assert.Equal(0, process.ExitCode);
    }

    [Fact]
    public async Task Kill_sends_SIGKILL_by_default_and_other_signals_on_request()
    {
        using var temp = new TempDirectory();
        using var context = PSpawnContext.Create(Fixtures.Report);
        IReadOnlyList<SpawnedProcess> processes = context.SpawnN(2, ["--report-sleep-ms=60000", $"--report-out={temp.File("r.json")}"]);
        processes[0].Kill();
        processes[1].Kill(LinuxProcesses.SIGTERM);
        await processes.ExitAll();
        Assert.Equal(LinuxProcesses.SIGKILL, processes[0].TerminatingSignal);
        Assert.Equal(LinuxProcesses.SIGTERM, processes[1].TerminatingSignal);

        // After exit, Kill is a no-op.
        processes[0].Kill();
        Assert.Throws<ArgumentOutOfRangeException>(() => processes[0].Kill(65));
    }

    [Fact]
    public async Task Exit_is_collected_without_anybody_waiting()
    {
        using var context = PSpawnContext.Create(Fixtures.Noop);
        SpawnedProcess process = context.Spawn([]);
        await Bounded.Until(() => LinuxProcesses.ReadStat(process.Id) is null, "the child is reaped in the background");
        Assert.True(process.HasExited);
        Assert.Equal(0, process.ExitCode);
    }
}
