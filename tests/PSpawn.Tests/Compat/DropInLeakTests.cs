using System.Diagnostics;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests.Compat;

/// <summary>Counts fds, threads and zombies of the whole test process: in the leak tests' non-parallel collection.</summary>
[Collection(nameof(LeakTests))]
public sealed class DropInLeakTests
{
    private static void RunAll(PSpawnProcessStarter starter, int count)
    {
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
        {
            var startInfo = i % 2 == 0
                ? new ProcessStartInfo(Fixtures.Report) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true }
                : new ProcessStartInfo(Fixtures.Noop);
            using PSpawnProcess process = starter.Start(startInfo);
            if (startInfo.RedirectStandardOutput)
            {
                process.StandardInput.Close();
                _ = process.StandardOutput.ReadToEnd();
                _ = process.StandardError.ReadToEnd();
            }

            Assert.True(process.WaitForExit(60_000));
            Assert.Equal(0, process.ExitCode);
        });
    }

    [Fact]
    public async Task No_fd_thread_zombie_or_proxy_left_after_dispose()
    {
        using (var warm = new PSpawnProcessStarter())
        {
            RunAll(warm, 4); // loads the libraries, starts the exit watcher
        }

        int fdsBefore = LinuxProcesses.OpenFdCount();
        int threadsBefore = LeakTests.PSpawnThreadCount();
        List<int> proxies;
        using (var starter = new PSpawnProcessStarter(new PSpawnProcessStarterOptions { MaxContexts = 1 }))
        {
            await Bounded.Run(() => RunAll(starter, 400), TimeSpan.FromMinutes(3)); // every other start evicts the other context
            proxies = starter.Contexts.Select(c => c.ProxyProcessId).OfType<int>().ToList();
            Assert.NotEmpty(proxies);
        }

        Assert.All(proxies, p => Assert.False(Directory.Exists($"/proc/{p}"), $"proxy {p} outlived Dispose"));
        Assert.Empty(LinuxProcesses.Zombies());
        int fdsAfter = LinuxProcesses.OpenFdCount();
        Assert.True(fdsAfter <= fdsBefore + 2, $"fds before: {fdsBefore}, after 400 drop-in starts: {fdsAfter}");
        Assert.True(LeakTests.PSpawnThreadCount() <= threadsBefore, $"PSpawn threads before: {threadsBefore}, after: {LeakTests.PSpawnThreadCount()}");
    }
}
