using System.Diagnostics;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests.Compat;

/// <summary>The starter's context cache: bound, idle eviction, replaced files, loader keys, concurrency, dispose.</summary>
[Collection(nameof(DropInCollection))]
public sealed class DropInCacheTests
{
    private static readonly PSpawnProcessStarterOptions NoIdleTimeout = new() { IdleTimeout = Timeout.InfiniteTimeSpan };

    private static int Run(PSpawnProcessStarter starter, ProcessStartInfo startInfo)
    {
        using PSpawnProcess process = starter.Start(startInfo);
        Assert.True(process.WaitForExit(60_000));
        return process.ExitCode;
    }

    private static List<int> ProxyPids(PSpawnProcessStarter starter) =>
        starter.Contexts.Select(c => c.ProxyProcessId).OfType<int>().ToList();

    private static bool Exists(int pid) => Directory.Exists($"/proc/{pid}");

    [Fact]
    public void Bound_evicts_the_least_recently_used_context_and_stops_its_proxies()
    {
        using var starter = new PSpawnProcessStarter(NoIdleTimeout with { MaxContexts = 2 });
        Assert.Equal(0, Run(starter, new ProcessStartInfo(Fixtures.Noop)));
        Assert.Equal(0, Run(starter, new ProcessStartInfo(Fixtures.Report) { RedirectStandardOutput = true }));
        List<int> reportProxies = starter.Contexts.Single(c => c.Path == Fixtures.Report).ProxyProcessId is int pid ? [pid] : [];
        Assert.NotEmpty(reportProxies);
        Assert.Equal(0, Run(starter, new ProcessStartInfo(Fixtures.Noop))); // noop is now the most recently used
        Assert.Equal(0, Run(starter, new ProcessStartInfo("sh", ["-c", "exit 0"])));
        Assert.Equal(2, starter.ContextCount);
        Assert.Equal(new[] { "/usr/bin/sh", Fixtures.Noop }.Order(), starter.Contexts.Select(c => Path.GetFullPath(c.Path)).Select(p => p == "/bin/sh" ? "/usr/bin/sh" : p).Order());
        Assert.All(reportProxies, p => Assert.False(Exists(p), $"evicted proxy {p} still exists"));
    }

    [Fact]
    public async Task Idle_contexts_are_evicted_by_the_timer()
    {
        using var starter = new PSpawnProcessStarter(new PSpawnProcessStarterOptions { IdleTimeout = TimeSpan.FromMilliseconds(200) });
        Assert.Equal(0, Run(starter, new ProcessStartInfo(Fixtures.Noop)));
        List<int> proxies = ProxyPids(starter);
        Assert.NotEmpty(proxies);
        await Bounded.Until(() => starter.ContextCount == 0, "the idle context is evicted");
        // The entry leaves the cache first, then its context is disposed (its proxies killed and reaped).
        await Bounded.Until(() => !proxies.Any(Exists), "the idle context's proxies are stopped");
        Assert.Equal(0, Run(starter, new ProcessStartInfo(Fixtures.Noop))); // and a new one is made on demand
    }

    [Fact]
    public void A_replaced_executable_gets_a_new_context_and_runs_the_new_file()
    {
        using var temp = new TempDirectory("pspawn-dropin-");
        string program = temp.File("program");
        File.Copy(Fixtures.Noop, program);
        using var starter = new PSpawnProcessStarter(NoIdleTimeout);
        var startInfo = new ProcessStartInfo(program) { RedirectStandardOutput = true };
        using (PSpawnProcess noop = starter.Start(startInfo))
        {
            Assert.Equal(string.Empty, noop.StandardOutput.ReadToEnd());
        }

        List<int> before = ProxyPids(starter);
        // Same path, new file (as a linker or installer writes it: a running executable cannot be written over, ETXTBSY).
        File.Copy(Fixtures.Report, program + ".new");
        File.Move(program + ".new", program, overwrite: true);
        using PSpawnProcess report = starter.Start(new ProcessStartInfo(program, "new") { RedirectStandardOutput = true });
        Assert.Equal(["new"], ReportOutput.Parse(report.StandardOutput.ReadToEnd()).Argv.Skip(1));
        Assert.Equal(1, starter.ContextCount);
        Assert.All(before, p => Assert.False(Exists(p), $"stale proxy {p} still exists"));
    }

    [Fact]
    public void Loader_variables_key_the_context_and_other_variables_do_not()
    {
        using var starter = new PSpawnProcessStarter(NoIdleTimeout);
        var plain = new ProcessStartInfo(Fixtures.Noop);
        var other = new ProcessStartInfo(Fixtures.Noop) { Environment = { ["PSPAWN_SOMETHING"] = "1" } };
        var loader = new ProcessStartInfo(Fixtures.Noop) { Environment = { ["LD_BIND_NOT"] = "1" } };
        Assert.Equal(0, Run(starter, plain));
        Assert.Equal(0, Run(starter, other));
        Assert.Equal(1, starter.ContextCount);
        Assert.Equal(0, Run(starter, loader));
        Assert.Equal(2, starter.ContextCount);
    }

    [Fact]
    public async Task Many_threads_start_at_once_while_the_bound_evicts()
    {
        using var starter = new PSpawnProcessStarter(NoIdleTimeout with { MaxContexts = 2 });
        Func<int, ProcessStartInfo>[] kinds =
        [
            i => new ProcessStartInfo(Fixtures.Report, [$"--report-exit={i % 100}"]) { RedirectStandardOutput = true },
            i => new ProcessStartInfo(Fixtures.Noop),
            i => new ProcessStartInfo("sh", ["-c", $"exit {i % 50}"]),
        ];
        int[] expected(int i) => [i % 100, 0, i % 50];
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        await Bounded.Run(() => Parallel.For(0, 8 * 20, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            int kind = i % kinds.Length;
            using PSpawnProcess process = starter.Start(kinds[kind](i));
            string? output = process.StartInfo.RedirectStandardOutput ? process.StandardOutput.ReadToEnd() : null;
            if (!process.WaitForExit(60_000))
            {
                failures.Add($"{i}: did not exit");
                return;
            }

            if (process.ExitCode != expected(i)[kind])
            {
                failures.Add($"{i}: exit {process.ExitCode}, expected {expected(i)[kind]}");
            }

            if (output is not null && ReportOutput.Parse(output).Pid != process.Id)
            {
                failures.Add($"{i}: wrong output");
            }
        }), TimeSpan.FromMinutes(3));
        Assert.Empty(failures);
        Assert.True(starter.ContextCount <= 2);
    }

    [Fact]
    public void Dispose_stops_every_proxy_and_later_starts_throw()
    {
        var starter = new PSpawnProcessStarter(NoIdleTimeout);
        Assert.Equal(0, Run(starter, new ProcessStartInfo(Fixtures.Noop)));
        Assert.Equal(0, Run(starter, new ProcessStartInfo(Fixtures.Report) { RedirectStandardOutput = true }));
        List<int> proxies = ProxyPids(starter);
        Assert.Equal(2, starter.ContextCount);
        starter.Dispose();
        Assert.Equal(0, starter.ContextCount);
        Assert.All(proxies, p => Assert.False(Exists(p), $"proxy {p} outlived Dispose"));
        Assert.Throws<ObjectDisposedException>(() => starter.Start(new ProcessStartInfo(Fixtures.Noop)));
        starter.Dispose(); // twice is fine
    }

    [Fact]
    public void Clear_stops_the_proxies_and_the_starter_stays_usable()
    {
        using var starter = new PSpawnProcessStarter(NoIdleTimeout);
        Assert.Equal(0, Run(starter, new ProcessStartInfo(Fixtures.Noop)));
        List<int> proxies = ProxyPids(starter);
        starter.Clear();
        Assert.Equal(0, starter.ContextCount);
        Assert.All(proxies, p => Assert.False(Exists(p), $"proxy {p} outlived Clear"));
        Assert.Equal(0, Run(starter, new ProcessStartInfo(Fixtures.Noop)));
    }

    [Fact]
    public void Shared_cannot_be_disposed_and_bad_options_are_rejected()
    {
        Assert.Throws<InvalidOperationException>(() => PSpawnProcessStarter.Shared.Dispose());
        Assert.Throws<ArgumentOutOfRangeException>(() => new PSpawnProcessStarter(new PSpawnProcessStarterOptions { MaxContexts = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new PSpawnProcessStarter(new PSpawnProcessStarterOptions { IdleTimeout = TimeSpan.Zero }));
        Assert.Throws<ArgumentNullException>(() => new PSpawnProcessStarter(new PSpawnProcessStarterOptions { TimeProvider = null! }));
    }

    [Fact]
    public void A_failed_creation_is_not_cached()
    {
        using var temp = new TempDirectory("pspawn-dropin-");
        string program = temp.File("later");
        File.WriteAllText(program, "not a program");
        File.SetUnixFileMode(program, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        using var starter = new PSpawnProcessStarter(NoIdleTimeout);
        var error = Assert.Throws<System.ComponentModel.Win32Exception>(() => starter.Start(new ProcessStartInfo(program)));
        Assert.Equal(8, error.NativeErrorCode);
        Assert.Equal(0, starter.ContextCount);
        File.Copy(Fixtures.Noop, program, overwrite: true);
        Assert.Equal(0, Run(starter, new ProcessStartInfo(program)));
    }
}
