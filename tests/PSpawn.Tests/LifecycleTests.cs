using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

public sealed class LifecycleTests
{
    [Fact]
    public async Task Proxy_is_gone_after_Dispose()
    {
        var context = PSpawnContext.Create(Fixtures.Noop);
        int proxy = context.ProxyProcessId ?? throw new InvalidOperationException("no proxy");
        Assert.True(LinuxProcesses.Exists(proxy));
        int pidfd = LinuxProcesses.PidFdOpen(proxy);
        Assert.True(pidfd >= 0);
        try
        {
            Assert.False(LinuxProcesses.PidFdExited(pidfd, 0));
            context.Dispose();
            Assert.True(LinuxProcesses.PidFdExited(pidfd, 10_000), "the proxy's pidfd becomes readable");
        }
        finally
        {
            LinuxProcesses.Close(pidfd);
        }

        // Reaped, not a zombie: its /proc entry is gone.
        await Bounded.Until(() => !LinuxProcesses.Exists(proxy), "/proc/<proxy> disappears");
        Assert.Null(context.ProxyProcessId);
    }

    [Fact]
    public async Task DisposeAsync_stops_the_proxy()
    {
        int proxy;
        await using (var context = PSpawnContext.Create(Fixtures.Noop))
        {
            proxy = context.ProxyProcessId!.Value;
            using SpawnedProcess process = context.Spawn([]);
            await process.WaitForExitAsync().Within();
        }

        await Bounded.Until(() => !LinuxProcesses.Exists(proxy), "/proc/<proxy> disappears");
    }

    [Fact]
    public async Task Proxy_start_and_stop_are_logged()
    {
        var logger = new FakeLogger();
        int proxy;
        using (var context = PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { Logger = logger }))
        {
            proxy = context.ProxyProcessId!.Value;
            using SpawnedProcess process = context.Spawn([]);
            await process.WaitForExitAsync().Within();
        }

        IReadOnlyList<FakeLogRecord> records = logger.Collector.GetSnapshot();
        FakeLogRecord started = Assert.Single(records, r => r.Id.Name == "ProxyStarted");
        Assert.Equal(LogLevel.Information, started.Level);
        Assert.Contains(proxy.ToString(System.Globalization.CultureInfo.InvariantCulture), started.Message, StringComparison.Ordinal);
        Assert.Contains("Zygote", started.Message, StringComparison.Ordinal);
        Assert.Contains("proxies; NUMA node of each:", started.Message, StringComparison.Ordinal); // issue 12: topology logged at creation
        Assert.Contains("node 0:", started.Message, StringComparison.Ordinal);
        FakeLogRecord stopped = Assert.Single(records, r => r.Id.Name == "ProxyStopped");
        Assert.Equal(LogLevel.Information, stopped.Level);
    }

    [Fact]
    public void Failures_are_logged()
    {
        var logger = new FakeLogger();
        Assert.Throws<PSpawnUnsupportedExecutableException>(() =>
            PSpawnContext.Create(Fixtures.NoopStatic, options: new PSpawnContextOptions { Logger = logger }));
        FakeLogRecord record = Assert.Single(logger.Collector.GetSnapshot());
        Assert.Equal("ContextCreateFailed", record.Id.Name);
        Assert.Equal(LogLevel.Error, record.Level);
        Assert.IsType<PSpawnUnsupportedExecutableException>(record.Exception);
    }
}
