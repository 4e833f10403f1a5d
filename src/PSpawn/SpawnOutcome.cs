using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Mono.Unix.Native;

namespace PSpawn;

/// <summary>
/// What became of one instance of a batch: started (<see cref="Process"/>) or failed (<see cref="Errno"/> and
/// <see cref="Exception"/>). Nothing is lost: every instance has exactly one outcome.
/// </summary>
public sealed class SpawnOutcome
{
    private readonly string _path;
    private Exception? _exception;

    internal SpawnOutcome(int index, SpawnedProcess process, string path)
    {
        Index = index;
        Process = process;
        _path = path;
    }

    internal SpawnOutcome(int index, Errno errno, string path)
    {
        Index = index;
        Errno = errno;
        _path = path;
    }

    /// <summary>The instance's index in the batch (0 to count - 1).</summary>
    public int Index { get; }

    /// <summary>The started process, or null when the instance failed.</summary>
    public SpawnedProcess? Process { get; }

    /// <summary>Whether the instance started (then <see cref="Process"/> is set and must be waited for like any child).</summary>
    [MemberNotNullWhen(true, nameof(Process))]
    [MemberNotNullWhen(false, nameof(Exception))]
    public bool IsStarted => Process is not null;

    /// <summary>
    /// Why the instance failed, or null when it started: for example <c>EINVAL</c> for a CPU set the kernel refuses,
    /// <c>ENOENT</c> for a missing working directory, <c>E2BIG</c> for arguments too large for execve, <c>EPIPE</c> when
    /// the proxy died, <c>ECANCELED</c> when the batch was canceled before this instance was launched.
    /// </summary>
    public Errno? Errno { get; }

    /// <summary>Whether the instance was not launched because the batch was canceled (<c>ECANCELED</c>).</summary>
    public bool IsCanceled => Errno == Mono.Unix.Native.Errno.ECANCELED;

    /// <summary>
    /// The failure as the exception a single <see cref="PSpawnContext.Spawn"/> would have thrown (a
    /// <see cref="PSpawnException"/> or one of the other PSpawn exception types, all <see cref="IPSpawnError"/>), or null
    /// when the instance started. Created on first use.
    /// </summary>
    public Exception? Exception => Errno is Errno errno
        ? _exception ??= ErrorMapper.ForInstance(errno, _path, Index)
        : null;

    /// <summary>"#3: started 1234" or "#4: failed, EINVAL (...)".</summary>
    /// <returns>A description.</returns>
    public override string ToString() => Errno is Errno errno
        ? string.Create(CultureInfo.InvariantCulture, $"#{Index}: failed, {ErrorMapper.Describe(errno)}")
        : string.Create(CultureInfo.InvariantCulture, $"#{Index}: started {Process!.Id}");
}
