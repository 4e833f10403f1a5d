using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Mono.Unix.Native;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

public sealed class ErrorTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static void AssertError(IPSpawnError error, Errno errno, string path)
    {
        Assert.Equal(errno, error.Errno);
        Assert.Equal(path, error.Path);
    }

    [Fact]
    public void Missing_file_throws_FileNotFoundException()
    {
        string path = _temp.File("does-not-exist");
        var e = Assert.Throws<PSpawnFileNotFoundException>(() => PSpawnContext.Create(path));
        Assert.IsAssignableFrom<FileNotFoundException>(e);
        Assert.Equal(path, e.FileName);
        AssertError(e, Errno.ENOENT, path);
        Assert.Contains("ENOENT", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Directory_throws_UnauthorizedAccessException()
    {
        var e = Assert.Throws<PSpawnAccessDeniedException>(() => PSpawnContext.Create(_temp.Path));
        Assert.IsAssignableFrom<UnauthorizedAccessException>(e);
        AssertError(e, Errno.EACCES, _temp.Path);
    }

    [Fact]
    public void Non_executable_file_throws_UnauthorizedAccessException()
    {
        string path = _temp.File("not-executable");
        File.Copy(Fixtures.Noop, path);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var e = Assert.Throws<PSpawnAccessDeniedException>(() => PSpawnContext.Create(path));
        AssertError(e, Errno.EACCES, path);
    }

    [Theory]
    [InlineData("empty", "")]
    [InlineData("script", "#!/bin/sh\nexit 0\n")]
    [InlineData("text", "just some text, not an ELF header at all")]
    public void Non_ELF_file_is_unsupported(string name, string content)
    {
        string path = _temp.File(name);
        File.WriteAllText(path, content);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var e = Assert.Throws<PSpawnUnsupportedExecutableException>(() =>
            PSpawnContext.Create(path, options: new PSpawnContextOptions { FallbackPolicy = FallbackPolicy.PosixSpawn }));
        Assert.Equal(UnsupportedExecutableReason.NotAnElfExecutable, e.Reason);
        Assert.False(e.CanFallBack);
        AssertError(e, Errno.ENOEXEC, path);
    }

    [Fact]
    public void Static_binary_is_unsupported()
    {
        var e = Assert.Throws<PSpawnUnsupportedExecutableException>(() => PSpawnContext.Create(Fixtures.NoopStatic));
        Assert.Equal(UnsupportedExecutableReason.StaticallyLinked, e.Reason);
        Assert.True(e.CanFallBack);
        AssertError(e, Errno.EOPNOTSUPP, Fixtures.NoopStatic);
        Assert.Contains("statically linked", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Setuid_binary_is_unsupported()
    {
        var e = Assert.Throws<PSpawnUnsupportedExecutableException>(() => PSpawnContext.Create(Fixtures.SetuidNoop));
        Assert.Equal(UnsupportedExecutableReason.SetUserOrGroupId, e.Reason);
        AssertError(e, Errno.EPERM, Fixtures.SetuidNoop);
    }

    [Fact]
    public void Threaded_constructors_are_unsupported()
    {
        var e = Assert.Throws<PSpawnUnsupportedExecutableException>(() => PSpawnContext.Create(Fixtures.ThreadedCtor));
        Assert.Equal(UnsupportedExecutableReason.ThreadedConstructors, e.Reason);
        AssertError(e, Errno.EDEADLK, Fixtures.ThreadedCtor);
    }

    [Fact]
    public async Task Own_entry_point_is_refused_before_it_runs_and_falls_back_once_per_spawn()
    {
        string marker = Path.Combine(_temp.Path, "nostart.marker");
        var proxyEnvironment = new Dictionary<string, string> { ["PSPAWN_NOSTART_MARKER"] = marker };
        var e = Assert.Throws<PSpawnUnsupportedExecutableException>(
            () => PSpawnContext.Create(Fixtures.NoStart, options: new PSpawnContextOptions { ProxyEnvironment = proxyEnvironment }));
        Assert.Equal(UnsupportedExecutableReason.NoStandardEntryPoint, e.Reason);
        Assert.True(e.CanFallBack);
        AssertError(e, Errno.ENOSYS, Fixtures.NoStart);
        Assert.Contains("__libc_start_main", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(marker)); // it never ran

        using var context = PSpawnContext.Create(Fixtures.NoStart, options: new PSpawnContextOptions
        {
            FallbackPolicy = FallbackPolicy.PosixSpawn,
            ProxyEnvironment = proxyEnvironment,
        });
        Assert.Equal(PSpawnMode.Fallback, context.Mode);
        Assert.Equal(Errno.ENOSYS, context.FallbackReason);
        Assert.False(File.Exists(marker));
        IReadOnlyList<SpawnedProcess> processes = context.SpawnN(3, [], SpawnOptions.Default.WithEnvironmentVariable("PSPAWN_NOSTART_MARKER", marker));
        await processes.ExitAll();
        Assert.All(processes, p => Assert.Equal(0, p.ExitCode));
        Assert.Equal(3, new FileInfo(marker).Length); // one run per spawn, none more
    }

    [Theory]
    [InlineData("noop_static", Errno.EOPNOTSUPP)]
    [InlineData("setuid_noop", Errno.EPERM)]
    [InlineData("threaded_ctor", Errno.EDEADLK)]
    [InlineData("nostart", Errno.ENOSYS)]
    public async Task Fallback_policy_spawns_with_posix_spawn_and_logs_it(string fixture, Errno reason)
    {
        var logger = new FakeLogger();
        using var context = PSpawnContext.Create(Fixtures.Get(fixture), options: new PSpawnContextOptions
        {
            FallbackPolicy = FallbackPolicy.PosixSpawn,
            Logger = logger,
        });
        Assert.Equal(PSpawnMode.Fallback, context.Mode);
        Assert.Equal(reason, context.FallbackReason);
        Assert.Null(context.ProxyProcessId);

        IReadOnlyList<SpawnedProcess> processes = context.SpawnN(3, []);
        await processes.ExitAll();
        Assert.All(processes, p => Assert.Equal(0, p.ExitCode));

        FakeLogRecord record = Assert.Single(logger.Collector.GetSnapshot(), r => r.Id.Name == "FallbackToPosixSpawn");
        Assert.Equal(LogLevel.Warning, record.Level);
        Assert.Contains(Fixtures.Get(fixture), record.Message, StringComparison.Ordinal);
        Assert.Contains(reason == Errno.EOPNOTSUPP ? "ENOTSUP" : reason.ToString(), record.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Startup_timeout_throws_PSpawnProxyException()
    {
        string path = Fixtures.Get("ctor_sleep"); // a constructor that sleeps 30 s
        var e = Assert.Throws<PSpawnProxyException>(() =>
            PSpawnContext.Create(path, options: new PSpawnContextOptions { StartupTimeout = TimeSpan.FromMilliseconds(300) }));
        AssertError(e, Errno.ETIMEDOUT, path);
        Assert.True(e.DuringStartup);
    }

    [Fact]
    public void Proxy_dying_during_startup_throws_PSpawnProxyException()
    {
        string path = Fixtures.Get("ctor_crash"); // a constructor that raises SIGKILL
        var e = Assert.Throws<PSpawnProxyException>(() => PSpawnContext.Create(path));
        AssertError(e, Errno.EPIPE, path);
        Assert.True(e.DuringStartup);
    }

    [Fact]
    public async Task Startup_failure_can_fall_back_to_posix_spawn()
    {
        var logger = new FakeLogger();
        using var context = PSpawnContext.Create(Fixtures.Get("ctor_crash"), options: new PSpawnContextOptions
        {
            FallbackPolicy = FallbackPolicy.PosixSpawn,
            Logger = logger,
        });
        Assert.Equal(PSpawnMode.Fallback, context.Mode);
        Assert.Equal(Errno.EPIPE, context.FallbackReason);
        using SpawnedProcess process = context.Spawn([]);
        await process.WaitForExitAsync().Within();
        Assert.Equal(LinuxProcesses.SIGKILL, process.TerminatingSignal); // its constructor kills it
        Assert.Contains(logger.Collector.GetSnapshot(), r => r.Id.Name == "FallbackToPosixSpawn");
    }

    [Fact]
    public async Task Dead_proxy_is_restarted_by_the_next_spawn()
    {
        var logger = new FakeLogger();
        using var context = PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { Logger = logger });
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

        // The next spawn restarts the proxy (native max_restarts, 8 by default) and is served by the new one.
        using SpawnedProcess child = context.Spawn([]);
        await child.WaitForExitAsync();
        Assert.Equal(0, child.ExitCode);
        int restarted = context.ProxyProcessId ?? throw new InvalidOperationException("no proxy after the restart");
        Assert.NotEqual(proxy, restarted);
        Assert.True(LinuxProcesses.ReadStat(restarted) is not null, "the new proxy is alive");
    }

    [Fact]
    public void Oversized_arguments_throw_an_ArgumentException_with_E2BIG()
    {
        using var context = PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { SharedBufferSize = 64 * 1024 });
        var e = Assert.Throws<PSpawnArgumentException>(() => context.Spawn([new string('a', 200 * 1024)]));
        Assert.IsAssignableFrom<ArgumentException>(e);
        AssertError(e, Errno.E2BIG, Fixtures.Noop);

        // The context still works.
        using SpawnedProcess ok = context.Spawn(["small"]);
        Assert.True(ok.WaitForExit(Bounded.Default));
    }

    [Fact]
    public void Core_out_of_range_throws_PSpawnArgumentException()
    {
        var e = Assert.Throws<PSpawnArgumentException>(() => PSpawnContext.Create(Fixtures.Noop, core: 100_000));
        AssertError(e, Errno.EINVAL, Fixtures.Noop);
    }

    [Fact]
    public void Spawn_after_Dispose_throws_ObjectDisposedException()
    {
        var context = PSpawnContext.Create(Fixtures.Noop);
        context.Dispose();
        context.Dispose(); // idempotent
        Assert.Throws<ObjectDisposedException>(() => context.Spawn([]));
        Assert.Throws<ObjectDisposedException>(() => context.SpawnN(2, []));
        Assert.Null(context.ProxyProcessId);
    }
}
