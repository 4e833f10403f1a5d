using System.Runtime.InteropServices;
using Mono.Unix.Native;

namespace PSpawn;

/// <summary>
/// A process started by a <see cref="PSpawnContext"/>. Its exit is observed through a pidfd on one shared
/// background epoll thread and its exit status collected as soon as it exits, whether or not anybody waits,
/// so that it never lingers as a zombie.
/// </summary>
/// <remarks>
/// All members are thread-safe. <see cref="Dispose"/> neither kills the process nor stops the collection of
/// its exit status: it only says the caller is done with the object. The pidfd is closed as soon as the
/// process has been reaped.
/// </remarks>
public sealed class SpawnedProcess : IDisposable
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

    internal SpawnedProcess(PSpawnContext context, int pid, ContextLease? lease)
    {
        _context = context;
        Id = pid;
        _lease = lease;
    }

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
    public void WaitForExit() => _exited.Task.GetAwaiter().GetResult();

    /// <summary>Waits until the process exits or <paramref name="timeout"/> elapses.</summary>
    /// <param name="timeout">How long to wait; <see cref="Timeout.InfiniteTimeSpan"/> waits forever.</param>
    /// <returns>True if the process exited, false on time-out.</returns>
    public bool WaitForExit(TimeSpan timeout)
    {
        Task task = _exited.Task;
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
    /// Completes when the process exits. Cancelling the token cancels this wait only: the process runs on, and
    /// can be waited for again.
    /// </summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>A task that completes when the process has exited and its exit status is known.</returns>
    public Task WaitForExitAsync(CancellationToken cancellationToken = default) =>
        cancellationToken.CanBeCanceled ? _exited.Task.WaitAsync(cancellationToken) : _exited.Task;

    /// <summary>
    /// Sends a signal to the process (SIGKILL by default) through its pidfd, so that it can never reach another
    /// process that reused the ID. Does nothing once the process has exited.
    /// </summary>
    /// <param name="signal">The signal number, 1 to 64 (see <see cref="Signum"/> for names); 0 only checks.</param>
    /// <exception cref="PSpawnException">The signal could not be sent (for example EPERM).</exception>
    public void Kill(int signal = 9)
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
    }

    /// <inheritdoc />
    public override string ToString() =>
        _reaped
            ? $"{System.IO.Path.GetFileName(_context.Path)} [{Id}] exited ({(_terminatingSignal is int s ? "signal " + s : "code " + _exitCode)})"
            : $"{System.IO.Path.GetFileName(_context.Path)} [{Id}] running";

    /// <summary>Whether <see cref="Dispose"/> was called.</summary>
    internal bool IsDisposed => _disposed;

    /// <summary>Called once, right after the spawn: opens the pidfd and registers it with the watcher.</summary>
    internal void StartWatching()
    {
        int fd = Interop.Sys.PidFdOpen(Id);
        int errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        if (fd >= 0)
        {
            var pidfd = new PidFdHandle(fd);
            ExitWatcher? watcher = ExitWatcher.Instance;
            if (watcher is not null)
            {
                ulong key = watcher.NextKey();
                _watchKey = key;
                Volatile.Write(ref _pidfd, pidfd);
                if (watcher.TryWatch(this, pidfd, key, out errno))
                {
                    return;
                }

                _watchKey = 0;
            }
            else
            {
                Volatile.Write(ref _pidfd, pidfd);
            }
        }

        // ESRCH: in relay mode the proxy may already have reaped a short-lived child (its status is recorded).
        // EMFILE/ENFILE, ENOSYS (kernel before 5.3): poll instead; no thread is blocked either way.
        if (errno != Interop.Sys.ESRCH)
        {
            string error = ErrorMapper.Describe(ErrorMapper.ToErrno(errno));
            Log.ExitWatchUnavailable(_context.Logger, _context.Path, Id, error);
        }

        _ = PollForExitAsync();
    }

    /// <summary>Called by the watcher thread when the pidfd became readable.</summary>
    internal void OnExitObserved()
    {
        if (!TryReap())
        {
            // Relay mode: the child has exited but the proxy may not have recorded its status yet.
            _ = PollForExitAsync();
        }
    }

    private async Task PollForExitAsync()
    {
        int delayMs = 1;
        while (!TryReap())
        {
            await Task.Delay(delayMs).ConfigureAwait(false);
            delayMs = Math.Min(delayMs * 2, 50);
        }
    }

    private void EnsureExited()
    {
        if (!TryReap())
        {
            throw new InvalidOperationException($"Process {Id} has not exited yet.");
        }
    }

    /// <summary>Collects the exit status if the process has exited (never blocks); true once it has.</summary>
    private unsafe bool TryReap()
    {
        if (Volatile.Read(ref _reaped))
        {
            return true;
        }

        Exception? failure = null;
        lock (_gate)
        {
            if (_reaped)
            {
                return true;
            }

            int status = 0;
            int result;
            int errno;
            do
            {
                result = WaitNative(&status, Interop.Sys.WNOHANG, out errno);
            }
            while (result < 0 && errno == Interop.Sys.EINTR);

            if (result == 0)
            {
                return false;
            }

            if (result > 0)
            {
                DecodeWaitStatus(status);
            }
            else
            {
                Errno e = ErrorMapper.ToErrno(errno);
                string what = ErrorMapper.Describe(e);
                Log.ExitStatusLost(_context.Logger, _context.Path, Id, what);
                string message = e == Errno.ECHILD
                    ? $"The exit status of process {Id} was collected by other code (something called waitpid on it, or waitpid(-1)): {what}."
                    : $"Cannot collect the exit status of process {Id}: {what}.";
                failure = e == Errno.EPIPE
                    ? new PSpawnProxyException(message, e, _context.Path, duringStartup: false)
                    : new PSpawnException(message, e, _context.Path);
                _exitCode = -1;
            }

            Volatile.Write(ref _reaped, true);
        }

        ReleaseResources();
        if (failure is null)
        {
            _exited.TrySetResult();
        }
        else
        {
            _exited.TrySetException(failure);
        }

        return true;
    }

    /// <summary>pspawn_waitpid while the context lives (required in relay mode, where a lease keeps it alive);
    /// plain waitpid once it has been disposed (zygote and fallback children are this process's children).</summary>
    private unsafe int WaitNative(int* status, int options, out int errno)
    {
        int result;
        if (_lease is not null)
        {
            result = Interop.PSpawnCore.WaitPid(_lease.Handle.Pointer, Id, status, options);
            errno = result < 0 ? Marshal.GetLastPInvokeError() : 0;
            return result;
        }

        ContextHandle handle = _context.Handle;
        bool added = false;
        try
        {
            try
            {
                handle.DangerousAddRef(ref added);
            }
            catch (ObjectDisposedException)
            {
            }

            result = added
                ? Interop.PSpawnCore.WaitPid(handle.Pointer, Id, status, options)
                : Interop.Sys.WaitPid(Id, status, options);
            errno = result < 0 ? Marshal.GetLastPInvokeError() : 0;
            return result;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    private void DecodeWaitStatus(int status)
    {
        int signal = status & 0x7f;
        if (signal == 0)
        {
            _exitCode = (status >> 8) & 0xff; // WIFEXITED: WEXITSTATUS
        }
        else if (signal != 0x7f)
        {
            _terminatingSignal = signal; // WIFSIGNALED: WTERMSIG
            _exitCode = 128 + signal;
        }
        else
        {
            _exitCode = (status >> 8) & 0xff; // stopped: not requested, not expected
        }
    }

    private void ReleaseResources()
    {
        PidFdHandle? pidfd = Interlocked.Exchange(ref _pidfd, null);
        if (pidfd is not null)
        {
            if (_watchKey != 0)
            {
                ExitWatcher.Instance?.Unwatch(_watchKey, pidfd);
            }

            pidfd.Dispose();
        }

        _lease?.Release();
    }
}
