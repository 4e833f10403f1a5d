using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Mono.Unix.Native;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

/// <summary>Proxy restarts (PSpawnContextOptions.MaxRestarts, PSpawnContext.RestartCount) with real processes.</summary>
public sealed class RestartTests
{
    private static async Task KillProxy(PSpawnContext context)
    {
        int proxy = context.ProxyProcessId ?? throw new InvalidOperationException("no proxy");
        int pidfd = LinuxProcesses.PidFdOpen(proxy);
        Assert.True(pidfd >= 0);
        try
        {
            Assert.Equal(0, LinuxProcesses.Kill(proxy, LinuxProcesses.SIGKILL));
            await Bounded.Until(() => LinuxProcesses.PidFdExited(pidfd, 0), "the proxy has died");
        }
        finally
        {
            LinuxProcesses.Close(pidfd);
        }
    }

    [Fact]
    public async Task Killed_proxy_is_restarted_by_the_next_spawn_and_earlier_children_stay_waitable()
    {
        var logger = new FakeLogger();
        using var context = PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { Logger = logger, ProxyCount = 1 });
        Assert.Equal(0, context.RestartCount);
        int proxy = context.ProxyProcessId!.Value;
        var quiet = new SpawnOptions { StandardOutput = StdioTarget.Null };
        using SpawnedProcess before = context.Spawn(["--report-sleep-ms=300", "--report-exit=7"], quiet);

        await KillProxy(context);
        Assert.Equal(0, context.RestartCount); // restarts happen on the next spawn, not when the proxy dies

        using SpawnedProcess after = context.Spawn(["--report-exit=3"], quiet);
        Assert.Equal(1, context.RestartCount);
        Assert.NotEqual(proxy, context.ProxyProcessId);
        await after.WaitForExitAsync().Within();
        Assert.Equal(3, after.ExitCode);

        // The child spawned by the killed proxy is this process's child: waitable, with its own exit code.
        await before.WaitForExitAsync().Within();
        Assert.Equal(7, before.ExitCode);

        var restarted = Assert.Single(logger.Collector.GetSnapshot(), r => r.Id.Name == "ProxyRestarted");
        Assert.Equal(LogLevel.Warning, restarted.Level);
        Assert.Contains($"as {context.ProxyProcessId}", restarted.Message, StringComparison.Ordinal);

        // A second death, a second restart.
        await KillProxy(context);
        await context.SpawnN(2, ["--report-exit=0"], quiet).ExitAll();
        Assert.Equal(2, context.RestartCount);
        Assert.Equal(2, logger.Collector.GetSnapshot().Count(r => r.Id.Name == "ProxyRestarted"));
    }

    [Fact]
    public async Task MaxRestarts_zero_makes_the_next_spawn_a_PSpawnProxyException()
    {
        using var context = PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { MaxRestarts = 0, ProxyCount = 1 });
        await KillProxy(context);
        var e = Assert.Throws<PSpawnProxyException>(() => context.Spawn([]));
        Assert.Equal(Errno.EPIPE, e.Errno);
        Assert.False(e.DuringStartup);
        Assert.Empty(e.StartedProcesses);
        Assert.Contains("MaxRestarts", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, context.RestartCount);
        Assert.Throws<PSpawnProxyException>(() => context.SpawnN(3, []));
    }

    [Fact]
    public void MaxRestarts_is_validated_and_passed_on()
    {
        Assert.Equal(8, PSpawnContextOptions.Default.MaxRestarts);
        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { MaxRestarts = -2 }));
        using var unlimited = PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { MaxRestarts = -1 });
        Assert.Equal(0, unlimited.RestartCount);
    }

    [Fact]
    public void RestartCount_after_dispose_is_the_last_count()
    {
        var context = PSpawnContext.Create(Fixtures.Noop);
        context.Dispose();
        Assert.Equal(0, context.RestartCount);
    }
}
