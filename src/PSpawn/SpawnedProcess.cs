using System.Runtime.InteropServices;
using System.Text;
using Mono.Unix.Native;

namespace PSpawn;

/// <summary>
/// A process started by a <see cref="PSpawnContext"/>. Its exit is observed through a pidfd on one shared
/// background epoll thread and its exit status collected as soon as it exits, whether or not anybody waits,
/// so that it never lingers as a zombie.
/// </summary>
/// <remarks>
/// All members are thread-safe, except that each piped stream is to be used by one reader or writer at a time.
/// <see cref="Dispose"/> neither kills the process nor stops the collection of its exit status: it closes this
/// process's ends of the child's pipes (if any) and says the caller is done with the object. The pidfd is
/// closed as soon as the process has been reaped.
/// </remarks>
public sealed partial class SpawnedProcess : IDisposable
{
    private readonly Lock _gate = new();
    private readonly PSpawnContext _context;
    private readonly ContextLease? _lease;
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private PidFdHandle? _pidfd;
    private ulong _watchKey;
    private bool _reaped;
    private int _exitCode;
    private int? _terminatingSignal;
    private bool _disposed;
    private PipeEndStream? _standardInput;
    private PipeEndStream? _standardOutput;
    private PipeEndStream? _standardError;
    private StreamReader? _standardOutputReader;
    private StreamReader? _standardErrorReader;
    private int? _processGroupId;
    private Task? _linePumps;
    private bool _outputPumped;
    private bool _errorPumped;

    internal SpawnedProcess(PSpawnContext context, int pid, ContextLease? lease)
    {
        _context = context;
        Id = pid;
        _lease = lease;
    }

    /// <summary>
    /// The writable end of the child's standard input, when <see cref="SpawnOptions.StandardInput"/> is
    /// <see cref="StdioTarget.Pipe"/>. Dispose it (or this object) to give the child end-of-file. Writes that cannot
    /// complete at once wait asynchronously (WriteAsync) without blocking a thread.
    /// </summary>
    /// <exception cref="InvalidOperationException">Standard input is not piped.</exception>
    public Stream StandardInput =>
        _standardInput ?? throw new InvalidOperationException($"The standard input of process {Id} is not piped (set SpawnOptions.StandardInput to StdioTarget.Pipe).");

    /// <summary>
    /// The readable end of the child's standard output, when <see cref="SpawnOptions.StandardOutput"/> is
    /// <see cref="StdioTarget.Pipe"/>. Asynchronous reads wait on the library's epoll thread, not on a blocked thread.
    /// Read it (or dispose it) while the child runs: a child whose pipe is full blocks in write.
    /// </summary>
    /// <exception cref="InvalidOperationException">Standard output is not piped, or is consumed by <see cref="SpawnOptions.OnOutputLine"/>.</exception>
    public Stream StandardOutput => PipedOutput(_standardOutput, "output", _outputPumped);

    /// <summary>As <see cref="StandardOutput"/>, for standard error.</summary>
    /// <exception cref="InvalidOperationException">Standard error is not piped, or is consumed by <see cref="SpawnOptions.OnErrorLine"/>.</exception>
    public Stream StandardError => PipedOutput(_standardError, "error", _errorPumped);

    /// <summary>A UTF-8 <see cref="StreamReader"/> over <see cref="StandardOutput"/> (the same one at every call).</summary>
    /// <exception cref="InvalidOperationException">Standard output is not piped.</exception>
    public StreamReader StandardOutputReader => Reader(ref _standardOutputReader, StandardOutput);

    /// <summary>A UTF-8 <see cref="StreamReader"/> over <see cref="StandardError"/> (the same one at every call).</summary>
    /// <exception cref="InvalidOperationException">Standard error is not piped.</exception>
    public StreamReader StandardErrorReader => Reader(ref _standardErrorReader, StandardError);

    /// <summary>The process ID.</summary>
    public int Id { get; }

    /// <summary>Whether the process has exited (and its exit status has been collected).</summary>
    public bool HasExited => TryReap();

    /// <summary>
    /// The exit code: the value passed to exit(), or 128 + the signal number when a signal terminated the
    /// process (as a shell reports it; see <see cref="TerminatingSignal"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">The process has not exited yet.</exception>
    public int ExitCode
    {
        get
        {
            EnsureExited();
            return _exitCode;
        }
    }

    /// <summary>The signal that terminated the process, or null when it exited normally or is still running.</summary>
    public int? TerminatingSignal => TryReap() ? _terminatingSignal : null;

    /// <summary>Waits until the process exits.</summary>
    /// <exception cref="PSpawnException">The exit status could not be collected (for example because other code
    /// reaped the process with waitpid(-1)).</exception>
    public void WaitForExit()
    {
        BlockUntilExited(Timeout.Infinite);
        Completion.GetAwaiter().GetResult();
    }

    /// <summary>Waits until the process exits or <paramref name="timeout"/> elapses.</summary>
    /// <param name="timeout">How long to wait; <see cref="Timeout.InfiniteTimeSpan"/> waits forever.</param>
    /// <returns>True if the process exited, false on time-out.</returns>
    public bool WaitForExit(TimeSpan timeout)
    {
        BlockUntilExited(timeout == Timeout.InfiniteTimeSpan ? Timeout.Infinite : (int)Math.Clamp(timeout.TotalMilliseconds, 0, int.MaxValue));
        Task task = Completion;
        try
        {
            if (!task.Wait(timeout))
            {
                return false;
            }
        }
        catch (AggregateException)
        {
            // Rethrown unwrapped below.
        }

        task.GetAwaiter().GetResult();
        return true;
    }

    /// <summary>
    /// Completes when the process exits (and, with <see cref="SpawnOptions.OnOutputLine"/> or
    /// <see cref="SpawnOptions.OnErrorLine"/>, once every line has been delivered). Cancelling the token cancels
    /// this wait only: the process runs on, and can be waited for again.
    /// </summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>A task that completes when the process has exited and its exit status is known.</returns>
    public Task WaitForExitAsync(CancellationToken cancellationToken) =>
        cancellationToken.CanBeCanceled ? Completion.WaitAsync(cancellationToken) : Completion;

    /// <summary>Completes when the process exits (see <see cref="WaitForExitAsync(CancellationToken)"/>).</summary>
    /// <returns>A task that completes when the process has exited and its exit status is known.</returns>
    public Task WaitForExitAsync() => Completion;

    /// <summary>Waits until the process exits or <paramref name="timeout"/> elapses; the process is not killed on time-out.</summary>
    /// <param name="timeout">How long to wait; <see cref="Timeout.InfiniteTimeSpan"/> waits forever.</param>
    /// <param name="cancellationToken">Cancels the wait (an <see cref="OperationCanceledException"/>), not the process.</param>
    /// <returns>True if the process exited, false on time-out.</returns>
    public Task<bool> WaitForExitAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(timeout, Timeout.InfiniteTimeSpan);
        return WaitCoreAsync(Completion, timeout, cancellationToken);
    }

    /// <summary>
    /// Waits until the process exits; after <paramref name="timeout"/> sends it SIGTERM, and after a further
    /// <paramref name="gracePeriod"/> SIGKILL, then waits for its exit. Cancelling the token cancels the wait
    /// (the signals already sent stay sent).
    /// </summary>
    /// <param name="timeout">How long the process may run before SIGTERM.</param>
    /// <param name="gracePeriod">How long it then has to exit before SIGKILL; <see cref="TimeSpan.Zero"/> sends SIGKILL at once.</param>
    /// <param name="entireProcessGroup">Signal the process's whole group (see <see cref="Kill(int, bool)"/>).</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>True if the process exited by itself within <paramref name="timeout"/>, false if it was signalled.</returns>
    public async Task<bool> WaitForExitOrKillAsync(TimeSpan timeout, TimeSpan gracePeriod, bool entireProcessGroup = false, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(timeout, Timeout.InfiniteTimeSpan);
        ArgumentOutOfRangeException.ThrowIfLessThan(gracePeriod, TimeSpan.Zero);
        if (await WaitCoreAsync(Completion, timeout, cancellationToken).ConfigureAwait(false))
        {
            return true;
        }

        // After a signal, wait for the process only: a descendant that survives may hold the pipes open.
        if (gracePeriod > TimeSpan.Zero)
        {
            Kill(Interop.Sys.SIGTERM, entireProcessGroup);
            if (await WaitCoreAsync(_exited.Task, gracePeriod, cancellationToken).ConfigureAwait(false))
            {
                return false;
            }
        }

        Kill(Interop.Sys.SIGKILL, entireProcessGroup);
        await _exited.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        return false;
    }

    /// <summary>
    /// Reads standard output and standard error to their end, both at once (so that a child writing much to one
    /// while this reads the other cannot deadlock), as UTF-8 text. A stream that is not piped reads as empty.
    /// </summary>
    /// <param name="cancellationToken">Cancels the reads.</param>
    /// <returns>Everything the child (and its descendants holding the pipes) wrote.</returns>
    /// <exception cref="InvalidOperationException">A stream is consumed by a line callback.</exception>
    public async Task<(string StandardOutput, string StandardError)> ReadOutputToEndAsync(CancellationToken cancellationToken = default)
    {
        Task<string> output = _standardOutput is null ? Task.FromResult(string.Empty) : StandardOutputReader.ReadToEndAsync(cancellationToken);
        Task<string> error = _standardError is null ? Task.FromResult(string.Empty) : StandardErrorReader.ReadToEndAsync(cancellationToken);
        await Task.WhenAll(output, error).ConfigureAwait(false);
        return (await output.ConfigureAwait(false), await error.ConfigureAwait(false));
    }

    /// <summary>
    /// Sends a signal to the process (SIGKILL by default), or to its whole process group with kill(-pgid), so
    /// that its descendants get it too. See <see cref="Kill(int)"/> for the process alone.
    /// </summary>
    /// <param name="signal">The signal number, 1 to 64 (see <see cref="Signum"/> for names); 0 only checks.</param>
    /// <param name="entireProcessGroup">Signal the process group the child leads or joined
    /// (<see cref="SpawnOptions.NewProcessGroup"/>, <see cref="SpawnOptions.NewSession"/> or
    /// <see cref="SpawnOptions.JoinProcessGroup"/>); this works after the child itself has exited, as long as
    /// members of the group remain.</param>
    /// <exception cref="InvalidOperationException">The group is this process's own (the child was spawned without
    /// a process-group option), so signalling it would signal this process too.</exception>
    /// <exception cref="PSpawnException">The signal could not be sent (for example EPERM).</exception>
    public void Kill(int signal = 9, bool entireProcessGroup = false)
    {
        if (!entireProcessGroup)
        {
            Kill(signal);
            return;
        }

        ArgumentOutOfRangeException.ThrowIfNegative(signal);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(signal, 64);
        int pgid;
        if (_processGroupId is int known)
        {
            pgid = known;
        }
        else
        {
            lock (_gate)
            {
                pgid = _reaped ? -1 : Interop.Sys.GetPgid(Id);
            }

            if (pgid <= 0)
            {
                return; // exited: its group was this process's own, or is gone
            }
        }

        if (pgid == Interop.Sys.GetPgrp())
        {
            throw new InvalidOperationException(
                $"Process {Id} is in this process's own process group ({pgid}): killing that group would kill this process too. Spawn it with SpawnOptions.NewProcessGroup or NewSession.");
        }

        if (Interop.Sys.Kill(-pgid, signal) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno != Interop.Sys.ESRCH)
            {
                Errno e = ErrorMapper.ToErrno(errno);
                throw new PSpawnException($"Cannot send signal {signal} to process group {pgid}: {ErrorMapper.Describe(e)}.", e, _context.Path);
            }
        }
    }

    /// <summary>
    /// Sends a signal to the process through its pidfd, so that it can never reach another process that reused
    /// the ID. Does nothing once the process has exited.
    /// </summary>
    /// <param name="signal">The signal number, 1 to 64 (see <see cref="Signum"/> for names); 0 only checks.</param>
    /// <exception cref="PSpawnException">The signal could not be sent (for example EPERM).</exception>
    public void Kill(int signal)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(signal);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(signal, 64);
        if (Volatile.Read(ref _reaped))
        {
            return;
        }

        int result;
        int errno;
        PidFdHandle? pidfd = Volatile.Read(ref _pidfd);
        if (pidfd is not null)
        {
            try
            {
                result = Interop.Sys.PidFdSendSignal(pidfd, signal);
                errno = Marshal.GetLastPInvokeError();
            }
            catch (ObjectDisposedException)
            {
                return; // closed because the process was reaped
            }
        }
        else
        {
            // No pidfd (pidfd_open failed): hold the lock so that the process cannot be reaped, and its ID
            // reused, while we signal it.
            lock (_gate)
            {
                if (_reaped)
                {
                    return;
                }

                result = Interop.Sys.Kill(Id, signal);
                errno = Marshal.GetLastPInvokeError();
            }
        }

        if (result != 0 && errno != Interop.Sys.ESRCH)
        {
            Errno e = ErrorMapper.ToErrno(errno);
            throw new PSpawnException($"Cannot send signal {signal} to process {Id}: {ErrorMapper.Describe(e)}.", e, _context.Path);
        }
    }

    /// <summary>
    /// Says the caller is done with this object. The process is not killed, and its exit status is still
    /// collected in the background when it exits (so it does not become a zombie).
    /// </summary>
    public void Dispose()
    {
        _disposed = true;
        // The read ends first: a read pending on them must fail, not see what the child writes
        // when closing its standard input below makes it finish.
        _standardOutputReader?.Dispose();
        _standardOutput?.Dispose();
        _standardErrorReader?.Dispose();
        _standardError?.Dispose();
        _standardInput?.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() =>
        _reaped
            ? $"{System.IO.Path.GetFileName(_context.Path)} [{Id}] exited ({(_terminatingSignal is int s ? "signal " + s : "code " + _exitCode)})"
            : $"{System.IO.Path.GetFileName(_context.Path)} [{Id}] running";

    /// <summary>Whether the exit status has been collected.</summary>
    internal bool IsReaped => Volatile.Read(ref _reaped);

    /// <summary>Whether this is a relay-mode child (the proxy's child, not this process's).</summary>
    internal bool IsRelayChild => _lease is not null;

    /// <summary>Whether <see cref="Dispose"/> was called.</summary>
    internal bool IsDisposed => _disposed;

    /// <summary>What waits complete on: the exit, and the line callbacks' end if there are any.</summary>
    private Task Completion => _linePumps ?? _exited.Task;
}
