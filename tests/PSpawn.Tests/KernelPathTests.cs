using Mono.Unix.Native;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

/// <summary>
/// The kernel path on a host whose kernel has no pspawn/ipspawn (its real behaviour is checked in the qemu guest:
/// tests/kernel/guest.d/dotnet.sh): detection says absent, for the real sysfs and for fake ones with bogus contents;
/// Auto and Forbid are the zygote, silently; Require is a typed error.
/// </summary>
public sealed class KernelPathTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static bool HostHasKernelPath => Directory.Exists("/sys/kernel/pspawn");

    [Fact]
    public void IsAvailableIsFalseOnAKernelWithoutTheSystemCalls()
    {
        Assert.False(HostHasKernelPath, "this host runs the patched kernel: these tests expect one without it");
        Assert.False(PSpawnKernel.IsAvailable);
        Assert.Equal(0, PSpawnKernel.AbiVersion);
        Assert.Contains("/sys/kernel/pspawn does not exist", PSpawnKernel.UnavailableReason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AutoIsTheZygoteSilentlyAndItsBatchesSayZygote()
    {
        Assert.Equal(KernelPath.Auto, PSpawnContextOptions.Default.KernelPath);
        await using var context = PSpawnContext.Create(Fixtures.Noop);
        Assert.Equal(PSpawnMode.Zygote, context.Mode);
        Assert.NotNull(context.ProxyProcessId);
        SpawnBatchResult result = context.SpawnBatch([new SpawnInstance(), new SpawnInstance(["x"])]);
        Assert.Equal(SpawnBackend.Zygote, result.Backend);
        Assert.True(result.AllStarted, result.ToString());
        Assert.EndsWith("by Zygote", result.ToString(), StringComparison.Ordinal);
        foreach (SpawnedProcess child in result.Started)
        {
            Assert.True(await child.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal(0, child.ExitCode);
        }

        SpawnBatchResult asynchronous = await context.SpawnBatchAsync([new SpawnInstance()]);
        Assert.Equal(SpawnBackend.Zygote, asynchronous.Backend);
        Assert.True(await asynchronous.Started[0].WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(SpawnBackend.Zygote, context.SpawnBatch([]).Backend);
    }

    [Fact]
    public async Task ForbidIsTheZygote()
    {
        await using var context = PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { KernelPath = KernelPath.Forbid });
        Assert.Equal(PSpawnMode.Zygote, context.Mode);
        SpawnBatchResult result = context.SpawnBatch([new SpawnInstance()]);
        Assert.Equal(SpawnBackend.Zygote, result.Backend);
        Assert.True(await result.Started[0].WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task FallbackBatchesSayExec()
    {
        await using var context = PSpawnContext.Create(Fixtures.NoopStatic, options: new PSpawnContextOptions { FallbackPolicy = FallbackPolicy.PosixSpawn });
        Assert.Equal(PSpawnMode.Fallback, context.Mode);
        SpawnBatchResult result = context.SpawnBatch([new SpawnInstance()]);
        Assert.Equal(SpawnBackend.Exec, result.Backend);
        Assert.True(await result.Started[0].WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public void RequireWithoutTheSystemCallsIsATypedErrorAtCreate()
    {
        var options = new PSpawnContextOptions { KernelPath = KernelPath.Require };
        var e = Assert.Throws<PSpawnKernelPathException>(() => PSpawnContext.Create(Fixtures.Noop, options: options));
        Assert.Equal(Errno.ENOSYS, e.Errno);
        Assert.Equal(Fixtures.Noop, e.Path);
        Assert.Contains("KernelPath.Require", e.Message, StringComparison.Ordinal);
        Assert.Contains("/sys/kernel/pspawn does not exist", e.Message, StringComparison.Ordinal);
        Assert.IsAssignableFrom<PSpawnException>(e);
        Assert.IsAssignableFrom<IPSpawnError>(e);
    }

    [Fact]
    public void UnknownKernelPathIsAnArgumentException()
    {
        var options = new PSpawnContextOptions { KernelPath = (KernelPath)7 };
        var e = Assert.Throws<ArgumentException>(() => PSpawnContext.Create(Fixtures.Noop, options: options));
        Assert.Equal("KernelPath", e.ParamName);
    }

    private string FakeSysfs(string? abi, string? pspawn, string? ipspawn)
    {
        string root = _temp.File($"sysfs-{Guid.NewGuid():N}");
        string directory = Path.Combine(root, "sys", "kernel", "pspawn");
        Directory.CreateDirectory(directory);
        void Write(string name, string? text)
        {
            if (text is not null)
            {
                File.WriteAllText(Path.Combine(directory, name), text);
            }
        }

        Write("abi_version", abi);
        Write("pspawn_nr", pspawn);
        Write("ipspawn_nr", ipspawn);
        Write("max_spawns", "8192\n");
        return root;
    }

    [Fact]
    public void NoDirectoryIsAbsent()
    {
        var detection = KernelDetection.Detect(_temp.File("empty-root"));
        Assert.False(detection.Available);
        Assert.Contains("does not exist", detection.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("1\n", "1000\n", "1001\n", "ENOSYS")]                 // numbers this kernel does not have: probed, ENOSYS
    [InlineData("2\n", "1000\n", "1001\n", "ENOSYS")]                 // a newer ABI is fine (it accepts version-1 blocks): probed
    [InlineData("1\n", "39\n", "40\n", "implausible")]                // numbers of old system calls (getpid, ...): never called
    [InlineData("1\n", "451\n", "451\n", "implausible")]              // the same number twice
    [InlineData("1\n", "99999999\n", "452\n", "implausible")]         // beyond any system call
    [InlineData("1\n", "-451\n", "452\n", "positive decimal")]
    [InlineData("1\n", "abc\n", "452\n", "positive decimal")]
    [InlineData("1\n", "", "452\n", "positive decimal")]
    [InlineData("1\n", "451\n", null, "cannot read")]
    [InlineData("0\n", "1000\n", "1001\n", "positive decimal")]
    [InlineData(null, "1000\n", "1001\n", "cannot read")]
    public void BogusSysfsIsAbsent(string? abi, string? pspawn, string? ipspawn, string why)
    {
        var detection = KernelDetection.Detect(FakeSysfs(abi, pspawn, ipspawn));
        Assert.False(detection.Available);
        Assert.Contains(why, detection.Reason, StringComparison.Ordinal);
        Assert.Equal(0, detection.AbiVersion);
    }
}
