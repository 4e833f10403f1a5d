using Mono.Unix.Native;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

/// <summary>
/// Bad input (issue #6): each kind fails with its typed exception and leaves nothing behind (no child, no zombie,
/// no descriptor), and a context that rejected a request still works.
/// </summary>
[Collection(ReliabilityCollection.Name)]
public sealed class ReliabilityBadInputTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static void AssertError(IPSpawnError error, Errno errno, string? path)
    {
        Assert.Equal(errno, error.Errno);
        Assert.Equal(path, error.Path);
    }

    private string Executable(string name, string content)
    {
        string path = _temp.File(name);
        File.WriteAllText(path, content);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    /// <summary>The context still serves a good request after rejecting a bad one.</summary>
    private static async Task StillWorks(PSpawnContext context)
    {
        using SpawnedProcess process = context.Spawn([]);
        await process.WaitForExitAsync().Within();
        Assert.Equal(0, process.ExitCode);
    }

    [Fact]
    public Task Missing_path() => ReliabilityProbes.NothingLeftBehind(() =>
    {
        string path = _temp.File("missing");
        var e = Assert.Throws<PSpawnFileNotFoundException>(() => PSpawnContext.Create(path));
        AssertError(e, Errno.ENOENT, path);
    }, "missing path");

    [Fact]
    public Task Empty_or_null_path() => ReliabilityProbes.NothingLeftBehind(() =>
    {
        Assert.Throws<ArgumentException>(() => PSpawnContext.Create(string.Empty));
        Assert.Throws<ArgumentNullException>(() => PSpawnContext.Create(null!));
    }, "empty path");

    [Fact]
    public Task Directory() => ReliabilityProbes.NothingLeftBehind(() =>
    {
        var e = Assert.Throws<PSpawnAccessDeniedException>(() => PSpawnContext.Create(_temp.Path));
        AssertError(e, Errno.EACCES, _temp.Path);
    }, "directory");

    [Fact]
    public Task Non_executable_file() => ReliabilityProbes.NothingLeftBehind(() =>
    {
        string path = _temp.File("no-x");
        File.Copy(Fixtures.Noop, path, overwrite: true);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var e = Assert.Throws<PSpawnAccessDeniedException>(() => PSpawnContext.Create(path));
        AssertError(e, Errno.EACCES, path);
    }, "non-executable file");

    [Fact]
    public Task File_used_as_a_directory() => ReliabilityProbes.NothingLeftBehind(() =>
    {
        string path = Path.Combine(Fixtures.Noop, "child");
        Exception e = Assert.ThrowsAny<Exception>(() => PSpawnContext.Create(path));
        Assert.True(e is IPSpawnError { Errno: Errno.ENOENT or Errno.ENOTDIR }, e.ToString());
        Assert.IsAssignableFrom<FileNotFoundException>(e);
    }, "file used as a directory");

    [Theory]
    [InlineData("empty", "")]
    [InlineData("shebang", "#!/bin/sh\nexit 0\n")]
    public Task Not_an_ELF_executable(string name, string content) => ReliabilityProbes.NothingLeftBehind(() =>
    {
        string path = Executable(name, content);
        foreach (FallbackPolicy policy in new[] { FallbackPolicy.Throw, FallbackPolicy.PosixSpawn })
        {
            var e = Assert.Throws<PSpawnUnsupportedExecutableException>(() =>
                PSpawnContext.Create(path, options: new PSpawnContextOptions { FallbackPolicy = policy }));
            Assert.Equal(UnsupportedExecutableReason.NotAnElfExecutable, e.Reason);
            AssertError(e, Errno.ENOEXEC, path);
        }
    }, name);

    [Theory]
    [InlineData("noop_static", UnsupportedExecutableReason.StaticallyLinked, Errno.EOPNOTSUPP)]
    [InlineData("setuid_noop", UnsupportedExecutableReason.SetUserOrGroupId, Errno.EPERM)]
    [InlineData("threaded_ctor", UnsupportedExecutableReason.ThreadedConstructors, Errno.EDEADLK)]
    public Task Executable_a_zygote_cannot_serve(string fixture, UnsupportedExecutableReason reason, Errno errno) =>
        ReliabilityProbes.NothingLeftBehind(() =>
        {
            string path = Fixtures.Get(fixture);
            var e = Assert.Throws<PSpawnUnsupportedExecutableException>(() => PSpawnContext.Create(path));
            Assert.Equal(reason, e.Reason);
            Assert.True(e.CanFallBack);
            AssertError(e, errno, path);
        }, fixture);

    [Fact]
    public Task Path_longer_than_PATH_MAX() => ReliabilityProbes.NothingLeftBehind(() =>
    {
        // One component of 5,000 characters: beyond PATH_MAX (4096) as well as NAME_MAX.
        string path = "/" + new string('p', 5000);
        var e = Assert.Throws<PSpawnArgumentException>(() => PSpawnContext.Create(path));
        AssertError(e, Errno.ENAMETOOLONG, path);
    }, "path too long");

    [Fact]
    public Task Path_too_long_made_of_missing_directories() => ReliabilityProbes.NothingLeftBehind(() =>
    {
        // Every component is short and none exists: "too long" must still win over "missing".
        string path = "/tmp" + string.Concat(Enumerable.Repeat("/" + new string('d', 200), 40)) + "/noop";
        var e = Assert.Throws<PSpawnArgumentException>(() => PSpawnContext.Create(path));
        AssertError(e, Errno.ENAMETOOLONG, path);
    }, "long path of missing directories");

    [Fact]
    public Task Path_component_longer_than_NAME_MAX() => ReliabilityProbes.NothingLeftBehind(() =>
    {
        string path = _temp.File(new string('n', 300));
        Exception e = Assert.ThrowsAny<Exception>(() => PSpawnContext.Create(path));
        Assert.True(e is IPSpawnError { Errno: Errno.ENAMETOOLONG }, e.GetType().Name + ": " + (e as IPSpawnError)?.Errno);
    }, "component too long");

    [Fact]
    public Task Arguments_beyond_the_shared_buffer() => ReliabilityProbes.NothingLeftBehind(async () =>
    {
        await using var context = PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { SharedBufferSize = 64 * 1024 });
        var one = Assert.Throws<PSpawnArgumentException>(() => context.Spawn([new string('a', 100 * 1024)]));
        AssertError(one, Errno.E2BIG, Fixtures.Noop);

        // Many small arguments, and a batch, fail the same way; nothing starts.
        string[] many = Enumerable.Repeat(new string('b', 1000), 100).ToArray();
        var batch = Assert.Throws<PSpawnArgumentException>(() => context.SpawnN(10, many));
        AssertError(batch, Errno.E2BIG, Fixtures.Noop);
        await StillWorks(context);
    }, "argv beyond the shared buffer");

    [Fact]
    public Task Environment_beyond_the_shared_buffer() => ReliabilityProbes.NothingLeftBehind(async () =>
    {
        await using var context = PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { SharedBufferSize = 64 * 1024 });
        var e = Assert.Throws<PSpawnArgumentException>(() =>
            context.Spawn([], SpawnOptions.Default.WithEnvironmentVariable("PSPAWN_BIG", new string('e', 100 * 1024))));
        AssertError(e, Errno.E2BIG, Fixtures.Noop);
        await StillWorks(context);
    }, "environment beyond the shared buffer");

    [Fact]
    public Task Arguments_beyond_ARG_MAX() => ReliabilityProbes.NothingLeftBehind(async () =>
    {
        // The buffer is large enough, the kernel's limit (ARG_MAX, 2 MiB here) is not.
        await using var context = PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { SharedBufferSize = 64 << 20 });
        string[] arguments = Enumerable.Repeat(new string('c', 64 * 1024), 64).ToArray(); // 4 MiB
        var e = Assert.Throws<PSpawnArgumentException>(() => context.Spawn(arguments));
        AssertError(e, Errno.E2BIG, Fixtures.Noop);
        await StillWorks(context);
    }, "argv beyond ARG_MAX");

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public Task Execve_argument_limits_apply_in_zygote_and_fallback_mode(bool fallback) => ReliabilityProbes.NothingLeftBehind(async () =>
    {
        // noop_static cannot be a zygote: with FallbackPolicy.PosixSpawn it is spawned by posix_spawn.
        string path = fallback ? Fixtures.NoopStatic : Fixtures.Noop;
        await using var context = PSpawnContext.Create(path, options: new PSpawnContextOptions
        {
            FallbackPolicy = FallbackPolicy.PosixSpawn,
            SharedBufferSize = 16 << 20,
        });
        Assert.Equal(fallback ? PSpawnMode.Fallback : PSpawnMode.Zygote, context.Mode);

        // MAX_ARG_STRLEN is 131072 bytes with the terminator: 131071 characters fit, 131072 do not.
        using (SpawnedProcess longest = context.Spawn([new string('a', 131071)]))
        {
            await longest.WaitForExitAsync().Within();
            Assert.Equal(0, longest.ExitCode);
        }

        var tooLong = Assert.Throws<PSpawnArgumentException>(() => context.Spawn([new string('a', 131072)]));
        AssertError(tooLong, Errno.E2BIG, path);

        // 800 KB of strings fit the buffer, but their 400,000 pointers exceed execve's stack room.
        var tooMany = Assert.Throws<PSpawnArgumentException>(() => context.SpawnN(2, Enumerable.Repeat("a", 400_000).ToArray()));
        AssertError(tooMany, Errno.E2BIG, path);
        await StillWorks(context);
    }, fallback ? "execve limits, fallback" : "execve limits, zygote");

    [Fact]
    public Task Embedded_NUL_in_an_argument_or_the_environment() => ReliabilityProbes.NothingLeftBehind(async () =>
    {
        await using var context = PSpawnContext.Create(Fixtures.Noop);
        Assert.Throws<ArgumentException>(() => context.Spawn(["ok", "bad\0argument"]));
        Assert.Throws<ArgumentException>(() => context.SpawnN(3, ["bad\0"]));
        Assert.Throws<ArgumentException>(() => context.Spawn([], SpawnOptions.Default.WithEnvironmentVariable("PSPAWN_NUL", "a\0b")));
        Assert.Throws<ArgumentException>(() => context.Spawn([], new SpawnOptions { Argv0 = "argv\0zero" }));
        Assert.ThrowsAny<ArgumentException>(() => context.Spawn([], SpawnOptions.WithExactEnvironment([new("NUL\0NAME", "x")])));
        await StillWorks(context);
    }, "embedded NUL");

    [Fact]
    public Task Bad_environment_variable_names() => ReliabilityProbes.NothingLeftBehind(async () =>
    {
        await using var context = PSpawnContext.Create(Fixtures.Noop);
        Assert.ThrowsAny<ArgumentException>(() => context.Spawn([], SpawnOptions.WithExactEnvironment([new("A=B", "x")])));
        Assert.ThrowsAny<ArgumentException>(() => context.Spawn([], SpawnOptions.WithExactEnvironment([new(string.Empty, "x")])));
        Assert.ThrowsAny<ArgumentException>(() => SpawnOptions.Default.WithEnvironmentVariable("X=Y", "z"));
        await StillWorks(context);
    }, "bad variable names");

    [Fact]
    public Task Null_argument_list_and_null_entries() => ReliabilityProbes.NothingLeftBehind(async () =>
    {
        await using var context = PSpawnContext.Create(Fixtures.Noop);
        Assert.Throws<ArgumentNullException>(() => context.Spawn(null!));
        Assert.Throws<ArgumentNullException>(() => context.SpawnN(2, null!));
        Assert.ThrowsAny<ArgumentException>(() => context.Spawn(["ok", null!]));
        Assert.ThrowsAny<ArgumentException>(() => context.SpawnN(2, [null!]));
        await StillWorks(context);
    }, "null entries");

    [Fact]
    public Task Negative_counts() => ReliabilityProbes.NothingLeftBehind(async () =>
    {
        await using var context = PSpawnContext.Create(Fixtures.Noop);
        Assert.Throws<ArgumentOutOfRangeException>(() => context.SpawnN(-1, []));
        Assert.Throws<ArgumentOutOfRangeException>(() => context.SpawnN(int.MinValue, []));
        Assert.Empty(context.SpawnN(0, []));
        await StillWorks(context);
    }, "negative counts");

    [Fact]
    public Task Huge_counts_are_refused_before_anything_starts() => ReliabilityProbes.NothingLeftBehind(async () =>
    {
        await using var context = PSpawnContext.Create(Fixtures.Noop);
        Assert.Throws<ArgumentOutOfRangeException>(() => context.SpawnN(int.MaxValue, []));
        Assert.Throws<ArgumentOutOfRangeException>(() => context.SpawnN(PSpawnContext.MaxSpawnCount + 1, []));
        await StillWorks(context);
    }, "huge counts");

    [Fact]
    public Task CPU_index_out_of_range() => ReliabilityProbes.NothingLeftBehind(() =>
    {
        foreach (int core in new[] { Environment.ProcessorCount, 4096, 100_000, int.MaxValue })
        {
            var e = Assert.Throws<PSpawnArgumentException>(() => PSpawnContext.Create(Fixtures.Noop, core));
            AssertError(e, Errno.EINVAL, Fixtures.Noop);
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, -2));
        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, int.MinValue));
    }, "CPU out of range");

    [Fact]
    public Task Invalid_context_options() => ReliabilityProbes.NothingLeftBehind(() =>
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { SharedBufferSize = 1024 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { SharedBufferSize = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { RequestTimeout = TimeSpan.FromSeconds(-5) }));
        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { StartupTimeout = TimeSpan.Zero }));
        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { StartupTimeout = TimeSpan.FromDays(30) }));
        Assert.Throws<ArgumentException>(() => PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { ProxyLibraryPath = string.Empty }));
    }, "invalid options");

    [Fact]
    public Task Invalid_signal_number_for_Kill() => ReliabilityProbes.NothingLeftBehind(async () =>
    {
        await using var context = PSpawnContext.Create(Fixtures.Report);
        string report = _temp.File("kill.json");
        using SpawnedProcess process = context.Spawn(["--report-sleep-ms=60000", $"--report-out={report}"]);
        foreach (int signal in new[] { -1, 65, 1000, int.MinValue, int.MaxValue })
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => process.Kill(signal));
        }

        // Nothing was sent: the child still runs, and signal 0 only checks.
        process.Kill(0);
        Assert.False(process.WaitForExit(TimeSpan.FromMilliseconds(200)));
        process.Kill();
        await process.WaitForExitAsync().Within();
        Assert.Equal(LinuxProcesses.SIGKILL, process.TerminatingSignal);

        // Kill after exit does nothing (and the argument is still checked).
        process.Kill();
        Assert.Throws<ArgumentOutOfRangeException>(() => process.Kill(65));
    }, "invalid signal");

    [Fact]
    public Task Use_after_Dispose() => ReliabilityProbes.NothingLeftBehind(async () =>
    {
        var context = PSpawnContext.Create(Fixtures.Noop);
        await context.SpawnN(2, []).ExitAll();
        context.Dispose();
        await context.DisposeAsync();
        Assert.Throws<ObjectDisposedException>(() => context.Spawn([]));
        Assert.Throws<ObjectDisposedException>(() => context.SpawnN(5, []));
        Assert.Throws<ObjectDisposedException>(() => context.SpawnN(0, []));
        Assert.Null(context.ProxyProcessId);
    }, "use after dispose");
}
