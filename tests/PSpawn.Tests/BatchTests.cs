using System.Collections.Concurrent;
using System.Globalization;
using Mono.Unix.Native;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

/// <summary>Batches with per-instance arguments, environment and CPUs (SpawnBatch, StartBatch, SpawnSession), with real processes.</summary>
public sealed class BatchTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static string S(int i) => i.ToString(CultureInfo.InvariantCulture);

    /// <summary>None of these (exited and awaited) processes is a zombie; other tests' children may be, for a moment.</summary>
    private static void AssertNoZombies(IEnumerable<SpawnedProcess> processes) =>
        Assert.Empty(LinuxProcesses.Zombies().Intersect(processes.Select(p => p.Id)));

    /// <summary>Instance i: rank=i, RANK=i, CPU i % ProcessorCount, reporting into the temp directory.</summary>
    private SpawnInstance[] RankedInstances(int count) =>
        Enumerable.Range(0, count).Select(i => new SpawnInstance([$"rank={S(i)}", $"--report-out={ReportPath(i)}"])
        {
            Environment = new Dictionary<string, string?> { ["RANK"] = S(i) },
            Cpus = new HashSet<int> { i % Environment.ProcessorCount },
        }).ToArray();

    private string ReportPath(int i) => _temp.File($"report-{S(i)}.json");

    private void AssertRanked(int i, SpawnedProcess process)
    {
        Assert.Equal(0, process.ExitCode);
        ReportOutput report = ReportOutput.Read(ReportPath(i));
        Assert.Equal(process.Id, report.Pid);
        Assert.Equal(Environment.ProcessId, report.Ppid);
        Assert.Equal([Fixtures.Report, $"rank={S(i)}", $"--report-out={ReportPath(i)}"], report.Argv);
        IReadOnlyDictionary<string, string> env = report.EnvDictionary;
        Assert.Equal(S(i), env["RANK"]);
        Assert.Equal(Environment.GetEnvironmentVariable("PATH"), env.GetValueOrDefault("PATH"));
        Assert.Equal([i % Environment.ProcessorCount], report.Numbers("affinity"));
    }

    [Fact]
    public async Task SpawnBatch_gives_1000_instances_their_own_argv_environment_and_cpus()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        SpawnBatchResult result = context.SpawnBatch(RankedInstances(1000));

        Assert.True(result.AllStarted, result.ToString());
        Assert.Equal(1000, result.Count);
        Assert.Equal(1000, result.Started.Count);
        Assert.Empty(result.Failed);
        Assert.Same(result, result.ThrowIfAnyFailed());
        await result.Started.ExitAll(TimeSpan.FromMinutes(3));
        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(i, result.Outcomes[i].Index);
            Assert.True(result.Outcomes[i].IsStarted);
            AssertRanked(i, result.Outcomes[i].Process!);
        }

        AssertNoZombies(result.Started);
    }

    [Fact]
    public async Task Async_session_yields_1000_outcomes_as_its_parts_complete()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        SpawnSession session = context.StartBatch(RankedInstances(1000));
        Assert.Equal(1000, session.Count);

        var seen = new SpawnOutcome?[1000];
        bool completedAtFirstOutcome = true;
        int yielded = 0;
        await foreach (SpawnOutcome outcome in session.WithCancellation(CancellationToken.None))
        {
            if (yielded++ == 0)
            {
                completedAtFirstOutcome = session.IsCompleted;
            }

            Assert.Null(seen[outcome.Index]);
            seen[outcome.Index] = outcome;
        }

        Assert.Equal(1000, yielded);
        Assert.False(completedAtFirstOutcome, "the first outcomes must come before the whole batch is done");
        SpawnBatchResult result = await session.Completion.Within();
        Assert.True(result.AllStarted, result.ToString());
        Assert.Equal(seen!, result.Outcomes);
        await result.Started.ExitAll(TimeSpan.FromMinutes(3));
        for (int i = 0; i < 1000; i++)
        {
            AssertRanked(i, seen[i]!.Process!);
        }

        AssertNoZombies(result.Started);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_invalid_cpu_fails_its_instance_alone_with_EINVAL(bool async)
    {
        using var context = PSpawnContext.Create(Fixtures.Noop);
        SpawnInstance[] instances = Enumerable.Range(0, 100).Select(i => new SpawnInstance([S(i)])).ToArray();
        instances[37] = instances[37] with { Cpus = new HashSet<int> { 1023 } }; // in range for cpu_set_t, not on this machine

        SpawnBatchResult result = async ? await context.SpawnBatchAsync(instances).Within() : context.SpawnBatch(instances);

        Assert.Equal(99, result.Started.Count);
        SpawnOutcome failed = Assert.Single(result.Failed);
        Assert.Equal(37, failed.Index);
        Assert.False(failed.IsStarted);
        Assert.False(failed.IsCanceled);
        Assert.Null(failed.Process);
        Assert.Equal(Errno.EINVAL, failed.Errno);
        var error = Assert.IsAssignableFrom<IPSpawnError>(failed.Exception);
        Assert.Equal(Errno.EINVAL, error.Errno);
        Assert.Contains("CPU set", failed.Exception.Message, StringComparison.Ordinal);

        var thrown = Assert.Throws<PSpawnException>(() => result.ThrowIfAnyFailed());
        Assert.Equal(Errno.EINVAL, thrown.Errno);
        Assert.Equal(99, thrown.StartedProcesses.Count);
        Assert.Equal(Errno.EINVAL, Assert.Single(thrown.FailedInstances, f => f.Key == 37).Value);

        await result.Started.ExitAll();
        Assert.All(result.Started, p => Assert.Equal(0, p.ExitCode));
        AssertNoZombies(result.Started);
    }

    [Fact]
    public async Task Cancel_mid_batch_returns_the_started_ones_unharmed_and_reports_the_rest_canceled()
    {
        const int Count = 3000;
        using var context = PSpawnContext.Create(Fixtures.Report);
        var options = new SpawnOptions { StandardOutput = StdioTarget.Null };
        SpawnInstance[] instances = Enumerable.Range(0, Count).Select(i => new SpawnInstance(["--report-sleep-ms=500", S(i)])).ToArray();
        using var cts = new CancellationTokenSource();
        SpawnSession session = context.StartBatch(instances, options);

        var outcomes = new List<SpawnOutcome>();
        await foreach (SpawnOutcome outcome in session.WithCancellation(cts.Token))
        {
            outcomes.Add(outcome);
            await cts.CancelAsync(); // after the first part: the enumeration goes on to the end
        }

        SpawnBatchResult result = await session.Completion.Within();
        Assert.Equal(Count, outcomes.Count);
        Assert.Equal(Count, outcomes.Select(o => o.Index).Distinct().Count());
        Assert.NotEmpty(result.Started);
        Assert.True(result.CanceledCount > 0, result.ToString());
        Assert.Equal(Count, result.Started.Count + result.CanceledCount);
        Assert.All(result.Failed, f =>
        {
            Assert.True(f.IsCanceled);
            Assert.Equal(Errno.ECANCELED, f.Errno);
            Assert.Equal(Errno.ECANCELED, ((IPSpawnError)f.Exception!).Errno);
        });

        // Nothing was killed: every started one is still running (they sleep 500 ms) or exits normally.
        Assert.Contains(result.Started, p => !p.HasExited);
        await result.Started.ExitAll(TimeSpan.FromMinutes(2));
        Assert.All(result.Started, p =>
        {
            Assert.Null(p.TerminatingSignal);
            Assert.Equal(0, p.ExitCode);
        });
        AssertNoZombies(result.Started);
    }

    [Fact]
    public async Task A_token_canceled_before_the_start_launches_nothing()
    {
        using var context = PSpawnContext.Create(Fixtures.Noop);
        SpawnBatchResult result = await context.SpawnBatchAsync([new SpawnInstance(), new SpawnInstance()], null, new CancellationToken(canceled: true)).Within();
        Assert.Empty(result.Started);
        Assert.Equal(2, result.CanceledCount);
    }

    [Fact]
    public async Task Many_sessions_on_one_context_from_several_tasks()
    {
        const int Tasks = 6;
        const int SessionsPerTask = 5;
        const int PerSession = 60;
        using var context = PSpawnContext.Create(Fixtures.Noop);
        var started = new ConcurrentBag<(int Task, int Session, int Index, SpawnedProcess Process)>();
        Task[] workers = Enumerable.Range(0, Tasks).Select(t => Task.Run(async () =>
        {
            var sessions = new List<SpawnSession>();
            for (int s = 0; s < SessionsPerTask; s++)
            {
                SpawnInstance[] instances = Enumerable.Range(0, PerSession)
                    .Select(i => new SpawnInstance([S(t), S(s), S(i)]) { Environment = new Dictionary<string, string?> { ["T"] = S(t) } })
                    .ToArray();
                sessions.Add(context.StartBatch(instances)); // all in flight together
            }

            for (int s = 0; s < SessionsPerTask; s++)
            {
                SpawnBatchResult result = await sessions[s];
                Assert.True(result.AllStarted, result.ToString());
                foreach (SpawnOutcome outcome in result.Outcomes)
                {
                    started.Add((t, s, outcome.Index, outcome.Process!));
                }
            }
        })).ToArray();
        await Task.WhenAll(workers).Within(TimeSpan.FromMinutes(3));

        Assert.Equal(Tasks * SessionsPerTask * PerSession, started.Count);
        Assert.Equal(started.Count, started.Select(s => s.Process.Id).Distinct().Count());
        await started.Select(s => s.Process).ExitAll(TimeSpan.FromMinutes(2));
        Assert.All(started, s => Assert.Equal(0, s.Process.ExitCode));
        AssertNoZombies(started.Select(s => s.Process));
    }

    [Fact]
    public async Task Batch_options_apply_to_every_instance_and_per_instance_sets_override_the_batch_cpus()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        string cwd = Directory.CreateDirectory(_temp.File("cwd")).FullName;
        var options = new SpawnOptions
        {
            Argv0 = "ranked",
            WorkingDirectory = cwd,
            CpuSetsPerInstance = [new HashSet<int> { 0 }],
            Environment = new Dictionary<string, string?> { ["BATCH"] = "yes", ["REMOVED"] = "no" },
        };
        SpawnInstance[] instances =
        [
            new SpawnInstance([$"--report-out={ReportPath(0)}"]),
            new SpawnInstance([$"--report-out={ReportPath(1)}"]) { Cpus = new HashSet<int> { Environment.ProcessorCount - 1 } }
                .WithEnvironmentVariable("REMOVED", null).WithEnvironmentVariable("BATCH", "overridden"),
        ];
        SpawnBatchResult result = context.SpawnBatch(instances, options).ThrowIfAnyFailed();
        await result.Started.ExitAll();

        ReportOutput first = ReportOutput.Read(ReportPath(0));
        ReportOutput second = ReportOutput.Read(ReportPath(1));
        Assert.Equal("ranked", first.Argv[0]);
        Assert.Equal(cwd, first.Text("cwd"));
        Assert.Equal(cwd, second.Text("cwd"));
        Assert.Equal([0], first.Numbers("affinity"));
        Assert.Equal([Environment.ProcessorCount - 1], second.Numbers("affinity"));
        Assert.Equal("yes", first.EnvDictionary["BATCH"]);
        Assert.Equal("no", first.EnvDictionary["REMOVED"]);
        Assert.Equal("overridden", second.EnvDictionary["BATCH"]);
        Assert.False(second.EnvDictionary.ContainsKey("REMOVED"));
    }

    [Fact]
    public async Task Relay_mode_batches_keep_their_exit_statuses_when_the_context_is_disposed_mid_session()
    {
        var context = PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { ForceRelayMode = true });
        Assert.Equal(PSpawnMode.Relay, context.Mode);
        var options = new SpawnOptions { StandardOutput = StdioTarget.Null };
        SpawnInstance[] instances = Enumerable.Range(0, 200).Select(i => new SpawnInstance(["--report-sleep-ms=200", $"--report-exit={S(i % 7)}"])).ToArray();
        SpawnSession session = context.StartBatch(instances, options);
        SpawnBatchResult sync = context.SpawnBatch(instances, options);
        context.Dispose(); // the session and the relayed children keep the proxy until they are done
        SpawnBatchResult async = await session.Completion.Within();

        foreach (SpawnBatchResult result in new[] { sync, async })
        {
            Assert.True(result.AllStarted, result.ToString());
            await result.Started.ExitAll();
            for (int i = 0; i < instances.Length; i++)
            {
                Assert.Equal(i % 7, result.Outcomes[i].Process!.ExitCode);
            }
        }

        Assert.Throws<ObjectDisposedException>(() => context.StartBatch(instances));
    }

    [Fact]
    public void Bad_arguments_are_ArgumentExceptions_before_anything_starts()
    {
        using var context = PSpawnContext.Create(Fixtures.Noop);
        Assert.Throws<ArgumentNullException>(() => context.SpawnBatch(null!));
        Assert.Throws<ArgumentException>(() => context.SpawnBatch([new SpawnInstance(), null!]));
        Assert.Throws<ArgumentException>(() => context.SpawnBatch([new SpawnInstance(["ok", null!])]));
        Assert.Throws<ArgumentException>(() => context.SpawnBatch([new SpawnInstance(["nul\0"])]));
        Assert.Throws<ArgumentException>(() => context.StartBatch([new SpawnInstance { Environment = new Dictionary<string, string?> { ["A=B"] = "x" } }]));
        Assert.Throws<ArgumentOutOfRangeException>(() => context.SpawnBatch([new SpawnInstance { Cpus = new HashSet<int> { 1024 } }]));
        Assert.Throws<ArgumentOutOfRangeException>(() => context.StartBatch([new SpawnInstance { Cpus = new HashSet<int> { -1 } }]));
        Assert.Throws<ArgumentException>(() => context.SpawnBatch([new SpawnInstance { Cpus = new HashSet<int>() }]));
        var pipe = Assert.Throws<ArgumentException>(() => context.SpawnBatch([new SpawnInstance()], new SpawnOptions { StandardOutput = StdioTarget.Pipe }));
        Assert.Contains("pipes", pipe.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => context.StartBatch([new SpawnInstance()], new SpawnOptions { OnErrorLine = _ => { } }));
        Assert.Empty(context.SpawnBatch([]).Outcomes);
    }

    [Fact]
    public void ProxyCount_is_validated_and_reported()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { ProxyCount = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { ProxyCount = -2 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { ProxyCount = PSpawnContextOptions.MaxProxyCount + 1 }));
        using (var one = PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { ProxyCount = 1 }))
        {
            Assert.Equal(1, one.ProxyCount);
        }

        // The largest count .NET accepts is one the native core accepts too (it once said 1024 while
        // the core refused more than 64).
        using (var most = PSpawnContext.Create(Fixtures.Noop, options: new PSpawnContextOptions { ProxyCount = PSpawnContextOptions.MaxProxyCount }))
        {
            Assert.Equal(PSpawnContextOptions.MaxProxyCount, most.ProxyCount);
            SpawnBatchResult batch = most.SpawnBatch(Enumerable.Repeat(new SpawnInstance(), PSpawnContextOptions.MaxProxyCount).ToList());
            Assert.Equal(PSpawnContextOptions.MaxProxyCount, batch.Started.Count);
            foreach (SpawnedProcess process in batch.Started)
            {
                Assert.True(process.WaitForExit(TimeSpan.FromSeconds(60)));
                Assert.Equal(0, process.ExitCode);
            }
        }

        var byDefault = PSpawnContext.Create(Fixtures.Noop);
        Assert.InRange(byDefault.ProxyCount, 1, Math.Max(1, Math.Min(8, Environment.ProcessorCount)));
        byDefault.Dispose();
        Assert.Equal(0, byDefault.ProxyCount);
    }
}
