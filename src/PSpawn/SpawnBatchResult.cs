using Mono.Unix.Native;

namespace PSpawn;

/// <summary>
/// The outcome of a batch (<see cref="PSpawnContext.SpawnBatch"/>, <see cref="SpawnSession.Completion"/>): which
/// instances started and which failed, each with its error. Partial success is a result, not an exception; call
/// <see cref="ThrowIfAnyFailed"/> to turn failures into one.
/// </summary>
public sealed class SpawnBatchResult
{
    private readonly string _path;
    private readonly bool _withOptions;

    internal SpawnBatchResult(SpawnOutcome[] outcomes, string path, bool withOptions, SpawnBackend backend)
    {
        _path = path;
        Backend = backend;
        _withOptions = withOptions;
        Outcomes = Array.AsReadOnly(outcomes);
        var started = new List<SpawnedProcess>(outcomes.Length);
        var failed = new List<SpawnOutcome>();
        foreach (SpawnOutcome outcome in outcomes)
        {
            if (outcome.IsStarted)
            {
                started.Add(outcome.Process);
            }
            else
            {
                failed.Add(outcome);
                CanceledCount += outcome.IsCanceled ? 1 : 0;
            }
        }

        Started = started.AsReadOnly();
        Failed = failed.AsReadOnly();
    }

    /// <summary>
    /// Which backend served the batch: <see cref="SpawnBackend.Kernel"/> (the ipspawn system call, see
    /// <see cref="PSpawnContextOptions.KernelPath"/>), else the zygote's mode (<see cref="SpawnBackend.Zygote"/>,
    /// <see cref="SpawnBackend.Relay"/>, or <see cref="SpawnBackend.Exec"/> in <see cref="PSpawnMode.Fallback"/> mode).
    /// </summary>
    public SpawnBackend Backend { get; }

    /// <summary>How many instances the batch had.</summary>
    public int Count => Outcomes.Count;

    /// <summary>One outcome per instance, by index (<c>Outcomes[i].Index == i</c>).</summary>
    public IReadOnlyList<SpawnOutcome> Outcomes { get; }

    /// <summary>The processes that started, in index order. They run and must be waited for (or killed) like any other.</summary>
    public IReadOnlyList<SpawnedProcess> Started { get; }

    /// <summary>The instances that did not start, in index order, each with its <see cref="SpawnOutcome.Errno"/> and <see cref="SpawnOutcome.Exception"/>.</summary>
    public IReadOnlyList<SpawnOutcome> Failed { get; }

    /// <summary>Whether every instance started.</summary>
    public bool AllStarted => Failed.Count == 0;

    /// <summary>How many instances were not launched because the batch was canceled (<c>ECANCELED</c>).</summary>
    public int CanceledCount { get; }

    /// <summary>Throws when an instance failed; otherwise returns this result.</summary>
    /// <returns>This result, when every instance started.</returns>
    /// <exception cref="PSpawnException">Not every instance started: <see cref="PSpawnException.StartedProcesses"/> lists
    /// the ones that did and <see cref="PSpawnException.FailedInstances"/> the error of each one that did not, by index;
    /// <see cref="IPSpawnError.Errno"/> is the first failure's (the exception may be a more specific PSpawn exception, such as
    /// <see cref="PSpawnArgumentException"/> for <c>E2BIG</c>, when none started).</exception>
    public SpawnBatchResult ThrowIfAnyFailed()
    {
        if (Failed.Count == 0)
        {
            return this;
        }

        var failures = new Dictionary<int, Errno>(Failed.Count);
        foreach (SpawnOutcome outcome in Failed)
        {
            failures[outcome.Index] = outcome.Errno!.Value;
        }

        throw ErrorMapper.ForSpawn(Failed[0].Errno!.Value, _path, Count, Started, _withOptions, failures);
    }

    /// <summary>"Started 998 of 1000 instances, 2 failed (0 canceled), by Zygote".</summary>
    /// <returns>A summary.</returns>
    public override string ToString() =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"Started {Started.Count} of {Count} instances, {Failed.Count} failed ({CanceledCount} canceled), by {Backend}");
}
