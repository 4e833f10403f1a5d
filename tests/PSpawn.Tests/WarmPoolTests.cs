using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

/// <summary>The warm pool (PSpawnContextOptions.WarmPool) with real processes: claims, their image, a killed parked child, dispose.</summary>
public sealed class WarmPoolTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static PSpawnContext CreatePool(string path, int size) =>
        PSpawnContext.Create(path, options: new PSpawnContextOptions { ProxyCount = 1, WarmPool = new WarmPoolOptions { Size = size } });

    private static async Task<IReadOnlyList<int>> Parked(PSpawnContext context, int count)
    {
        IReadOnlyList<int> parked = [];
        await Bounded.Until(() => (parked = context.ParkedProcessIds).Count == count, $"{count} children are parked");
        return parked;
    }

    [Fact]
    public async Task A_spawn_claims_a_parked_child_that_shows_what_a_forked_one_shows()
    {
        using PSpawnContext context = CreatePool(Fixtures.Report, 2);
        IReadOnlyList<int> parked = await Parked(context, 2);
        string path = _temp.File("claimed.json");
        var options = SpawnOptions.WithExactEnvironment([new("POOL", "claimed"), new("EMPTY", "")]);
        using SpawnedProcess child = context.Spawn([$"--report-out={path}", "two words"], options);
        Assert.Contains(child.Id, parked);
        Assert.Equal(1, context.PoolClaimCount);
        await child.WaitForExitAsync().Within();
        Assert.Equal(0, child.ExitCode);
        ReportOutput report = ReportOutput.Read(path);
        Assert.Equal(child.Id, report.Pid);
        Assert.Equal(Environment.ProcessId, report.Ppid);
        Assert.Equal([Fixtures.Report, $"--report-out={path}", "two words"], report.Argv);
        Assert.Equal(["POOL=claimed", "EMPTY="], report.Env);
        Assert.Equal([0, 1, 2], report.Fds);

        // Refilled with new children; a spawn with options other than CPUs and /dev/null stdio is no claim: the proxy
        // hands it to a parked child instead of forking.
        IReadOnlyList<int> refilled = await Parked(context, 2);
        Assert.DoesNotContain(child.Id, refilled);
        string cwdPath = _temp.File("handed.json");
        using SpawnedProcess handed = context.Spawn([$"--report-out={cwdPath}", "--report-exit=4"], new SpawnOptions { StandardOutput = StdioTarget.Null, WorkingDirectory = "/" });
        Assert.Contains(handed.Id, refilled);
        Assert.Equal(1, context.PoolClaimCount);
        await handed.WaitForExitAsync().Within();
        Assert.Equal(4, handed.ExitCode);
        Assert.Equal("/", ReportOutput.Read(cwdPath).Text("cwd"));

        // /dev/null stdio is served by a claim.
        refilled = await Parked(context, 2);
        using SpawnedProcess quiet = context.Spawn(["--report-exit=5"], new SpawnOptions { StandardOutput = StdioTarget.Null });
        Assert.Contains(quiet.Id, refilled);
        await quiet.WaitForExitAsync().Within();
        Assert.Equal(5, quiet.ExitCode);
        Assert.Equal(2, context.PoolClaimCount);
    }

    [Fact]
    public async Task A_killed_parked_child_is_never_handed_out_and_dispose_drains_the_pool()
    {
        IReadOnlyList<int> parked;
        using (PSpawnContext context = CreatePool(Fixtures.Noop, 3))
        {
            parked = await Parked(context, 3);
            Assert.Equal(0, LinuxProcesses.Kill(parked[0], LinuxProcesses.SIGKILL));
            await Bounded.Until(() => LinuxProcesses.ReadStat(parked[0]) is not { State: not 'Z' }, "the parked child has died");
            var children = context.SpawnN(6, []);
            Assert.DoesNotContain(children, c => c.Id == parked[0]);
            await children.ExitAll();
            Assert.All(children, c => Assert.Equal(0, c.ExitCode));
            parked = await Parked(context, 3);
        }

        // Dispose kills and reaps the parked children: neither running nor zombies.
        Assert.All(parked, pid => Assert.False(LinuxProcesses.Exists(pid)));
    }

    [Fact]
    public async Task A_deferred_fork_point_forks_after_the_programs_start_up_with_the_childs_own_arguments()
    {
        string data = _temp.File("data.txt");
        await File.WriteAllTextAsync(data, "40\n2\n");
        using PSpawnContext context = PSpawnContext.Create(Fixtures.Get("deferred"), options: new PSpawnContextOptions
        {
            DeferredForkPoint = true,
            ProxyCount = 1,
            WarmPool = new WarmPoolOptions { Size = 1 },
            ProxyEnvironment = new Dictionary<string, string> { ["DEFERRED_DATA"] = data },
        });
        for (int k = 0; k < 2; k++)
        {
            string path = _temp.File($"deferred{k}.txt");
            using SpawnedProcess child = context.Spawn([path, $"instance {k}"], SpawnOptions.WithExactEnvironment([new("K", $"{k}")]));
            await child.WaitForExitAsync().Within();
            Assert.Equal(0, child.ExitCode);
            // The sum was parsed once, in the proxy, before pspawn_ready(); the rest is the child's own.
            Assert.Equal(["ready 1", "sum 42", $"arg {Fixtures.Get("deferred")}", $"arg {path}", $"arg instance {k}", $"env K={k}"],
                await File.ReadAllLinesAsync(path));
        }

        Assert.True(context.PoolClaimCount >= 1);
    }

    [Fact]
    public void Bad_pool_options_are_rejected_before_anything_starts()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => CreatePool(Fixtures.Noop, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => CreatePool(Fixtures.Noop, WarmPoolOptions.MaxSize + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions
        {
            WarmPool = new WarmPoolOptions { IdleTrim = TimeSpan.FromSeconds(-1) },
        }));
        using PSpawnContext none = PSpawnContext.Create(Fixtures.Noop);
        Assert.Empty(none.ParkedProcessIds);
    }
}
