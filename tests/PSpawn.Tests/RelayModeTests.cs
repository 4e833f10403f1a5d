using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

public sealed class RelayModeTests
{
    private static readonly PSpawnContextOptions s_relay = new() { ForceRelayMode = true };

    [Fact]
    public async Task Relay_mode_delivers_exit_codes_and_signals()
    {
        using var temp = new TempDirectory();
        using var context = PSpawnContext.Create(Fixtures.Report, options: s_relay);
        Assert.Equal(PSpawnMode.Relay, context.Mode);
        int proxy = context.ProxyProcessId!.Value;

        using SpawnedProcess exits = context.Spawn(["--report-exit=9", $"--report-out={temp.File("a.json")}"]);
        using SpawnedProcess signalled = context.Spawn(["--report-signal=15", $"--report-out={temp.File("b.json")}"]);
        using SpawnedProcess killed = context.Spawn(["--report-sleep-ms=60000", $"--report-out={temp.File("c.json")}"]);
        killed.Kill();
        await new[] { exits, signalled, killed }.ExitAll();

        Assert.Equal(9, exits.ExitCode);
        Assert.Equal(15, signalled.TerminatingSignal);
        Assert.Equal(9, killed.TerminatingSignal);
        Assert.Equal(proxy, ReportOutput.Read(temp.File("a.json")).Ppid);
    }

    [Fact]
    public async Task Relay_mode_many_short_children()
    {
        using var context = PSpawnContext.Create(Fixtures.Noop, options: s_relay);
        for (int round = 0; round < 5; round++)
        {
            IReadOnlyList<SpawnedProcess> processes = context.SpawnN(50, []);
            await processes.ExitAll();
            Assert.All(processes, p => Assert.Equal(0, p.ExitCode));
        }
    }

    [Fact]
    public async Task Relay_exit_status_survives_Dispose_of_the_context()
    {
        using var temp = new TempDirectory();
        SpawnedProcess process;
        int proxy;
        using (var context = PSpawnContext.Create(Fixtures.Report, options: s_relay))
        {
            proxy = context.ProxyProcessId!.Value;
            process = context.Spawn(["--report-sleep-ms=60000", $"--report-out={temp.File("r.json")}"]);
        }

        // The proxy holds the status: it must outlive Dispose until the child has been reaped.
        await Task.Delay(100);
        Assert.True(LinuxProcesses.Exists(proxy));
        Assert.False(process.HasExited);
        process.Kill(LinuxProcesses.SIGTERM);
        await process.WaitForExitAsync().Within();
        Assert.Equal(LinuxProcesses.SIGTERM, process.TerminatingSignal);
        await Bounded.Until(() => !LinuxProcesses.Exists(proxy), "the proxy stops after its last relayed child");
    }
}
