using System.Globalization;
using PSpawn.Tests.Infrastructure;
using Xunit.Abstractions;

namespace PSpawn.Tests;

/// <summary>
/// Concurrency (issue #6): many threads spawning and waiting at once, on one context and on four. Every request
/// either yields started children with the right exit status or a typed error; the totals match; a watchdog fails
/// the test instead of letting a deadlock hang CI.
/// </summary>
[Collection(ReliabilityCollection.Name)]
public sealed class ReliabilityConcurrencyTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Watchdog = TimeSpan.FromSeconds(120);

    private sealed class Tally
    {
        private int _requests;
        private int _requestedChildren;
        private int _startedChildren;
        private int _failedRequests;
        private int _wrongStatus;

        public int Requests => _requests;

        public int RequestedChildren => _requestedChildren;

        public int StartedChildren => _startedChildren;

        public int FailedRequests => _failedRequests;

        public int WrongStatus => _wrongStatus;

        public List<Exception> UntypedErrors { get; } = [];

        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"{Requests} requests for {RequestedChildren} children: {StartedChildren} started, {FailedRequests} failed requests, {WrongStatus} wrong statuses, {UntypedErrors.Count} untyped errors");

        /// <summary>One request: spawn (one or a batch), wait, check the statuses; a failure must be a typed error.</summary>
        public void Run(PSpawnContext context, int count, int code, string reportPath)
        {
            Interlocked.Increment(ref _requests);
            Interlocked.Add(ref _requestedChildren, count);
            IReadOnlyList<SpawnedProcess> processes;
            try
            {
                processes = count == 1
                    ? [context.Spawn([$"--report-exit={code}", $"--report-out={reportPath}"])]
                    : context.SpawnN(count, [$"--report-exit={code}", $"--report-out={reportPath}"]);
            }
            catch (Exception e) when (e is IPSpawnError)
            {
                Interlocked.Increment(ref _failedRequests);
                if (e is PSpawnException { StartedProcesses.Count: > 0 } partial)
                {
                    Interlocked.Add(ref _startedChildren, partial.StartedProcesses.Count);
                    Check(partial.StartedProcesses, code);
                }

                return;
            }
            catch (Exception e)
            {
                lock (UntypedErrors)
                {
                    UntypedErrors.Add(e);
                }

                return;
            }

            Interlocked.Add(ref _startedChildren, processes.Count);
            if (processes.Count != count)
            {
                Interlocked.Increment(ref _wrongStatus);
            }

            Check(processes, code);
        }

        private void Check(IReadOnlyList<SpawnedProcess> processes, int code)
        {
            foreach (SpawnedProcess process in processes)
            {
                if (!process.WaitForExit(Bounded.Default) || process.ExitCode != code || process.TerminatingSignal is not null)
                {
                    Interlocked.Increment(ref _wrongStatus);
                }

                process.Dispose();
            }
        }
    }

    private static Task Worker(Action body) =>
        Task.Factory.StartNew(body, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    [Fact]
    public async Task Eight_threads_spawn_and_wait_at_once_on_one_context()
    {
        const int Threads = 8;
        const int Rounds = 100;
        using var temp = new TempDirectory();
        var tally = new Tally();
        await using var context = PSpawnContext.Create(Fixtures.Report);
        using var start = new Barrier(Threads);
        Task[] workers = Enumerable.Range(0, Threads).Select(t => Worker(() =>
        {
            start.SignalAndWait();
            for (int round = 0; round < Rounds; round++)
            {
                // Alternate single spawns and small batches, each waited for before the next.
                tally.Run(context, round % 3 == 0 ? 1 + (t % 4) : 1, ((t * Rounds) + round) % 256, temp.File($"t{t}.json"));
            }
        })).ToArray();

        await Task.WhenAll(workers).Within(Watchdog);
        output.WriteLine($"one context, {Threads} threads: {tally}");
        AssertTotals(tally, expectedRequests: Threads * Rounds);
        Assert.NotNull(context.ProxyProcessId);
        Assert.Empty(LinuxProcesses.Zombies());
    }

    [Fact]
    public async Task Four_contexts_with_two_threads_each_spawn_and_wait_at_once()
    {
        const int Contexts = 4;
        const int ThreadsPerContext = 2;
        const int Rounds = 50;
        using var temp = new TempDirectory();
        var tally = new Tally();
        var contexts = new List<PSpawnContext>();
        try
        {
            for (int c = 0; c < Contexts; c++)
            {
                contexts.Add(PSpawnContext.Create(Fixtures.Report));
            }

            Assert.Equal(Contexts, contexts.Select(c => c.ProxyProcessId).Distinct().Count());
            using var start = new Barrier(Contexts * ThreadsPerContext);
            Task[] workers = Enumerable.Range(0, Contexts * ThreadsPerContext).Select(t => Worker(() =>
            {
                PSpawnContext context = contexts[t % Contexts];
                start.SignalAndWait();
                for (int round = 0; round < Rounds; round++)
                {
                    tally.Run(context, round % 2 == 0 ? 5 : 1, ((t * 31) + round) % 256, temp.File($"t{t}.json"));
                }
            })).ToArray();

            await Task.WhenAll(workers).Within(Watchdog);
        }
        finally
        {
            foreach (PSpawnContext context in contexts)
            {
                context.Dispose();
            }
        }

        output.WriteLine($"{Contexts} contexts, {ThreadsPerContext} threads each: {tally}");
        AssertTotals(tally, expectedRequests: Contexts * ThreadsPerContext * Rounds);
        await Bounded.Until(() => LinuxProcesses.Zombies().Count == 0, "no zombie is left", TimeSpan.FromSeconds(10));
    }

    private static void AssertTotals(Tally tally, int expectedRequests)
    {
        Assert.Empty(tally.UntypedErrors);
        Assert.Equal(expectedRequests, tally.Requests);
        Assert.Equal(0, tally.WrongStatus);

        // Every request either started all its children or failed with a typed error (which reports the ones it started).
        Assert.True(tally.StartedChildren <= tally.RequestedChildren);
        Assert.True(tally.FailedRequests > 0 || tally.StartedChildren == tally.RequestedChildren, tally.ToString());

        // On a healthy machine nothing fails: a failure here is worth looking at, not a flake to tolerate.
        Assert.Equal(0, tally.FailedRequests);
    }
}
