using System.Runtime.InteropServices;
using Mono.Unix.Native;

namespace PSpawn;

/// <summary>Observing the exit: pidfd or poller, reaping, the wait status.</summary>
public sealed partial class SpawnedProcess
{
    private static async Task<bool> WaitCoreAsync(Task task, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (!task.IsCompleted)
        {
            try
            {
                await task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException) when (!task.IsCompleted)
            {
                return false;
            }
        }

        await task.ConfigureAwait(false);
        return true;
    }

    /// <summary>
    /// Called once, right after the spawn: opens a pidfd and registers it with the watcher when the
    /// <see cref="DescriptorBudget"/> allows. False when the process must be watched by the <see cref="ExitPoller"/>
    /// instead (the caller adds it), with the reason in <paramref name="errno"/> (0: ESRCH, nothing to report).
    /// </summary>
    internal bool StartWatching(out int errno) => TryWatchWithPidFd(out errno);

    /// <summary>Opens a pidfd and registers it; the process is not reaped yet (caller's guarantee or lock).</summary>
    private bool TryWatchWithPidFd(out int errno)
    {
        int fd = Interop.Sys.PidFdOpen(Id);
        if (fd < 0)
        {
            errno = Marshal.GetLastPInvokeError();
            if (errno is Interop.Sys.EMFILE or Interop.Sys.ENFILE)
            {
                DescriptorBudget.Refresh(); // the limit may have been lowered
            }
            else if (errno == Interop.Sys.ESRCH)
            {
                errno = 0; // relay mode: the proxy may already have reaped a short-lived child (its status is recorded)
            }

            return false;
        }

        if (!DescriptorBudget.Fits(fd))
        {
            _ = Interop.Sys.Close(fd); // would eat into the reserve of the runtime and the application
            errno = Interop.Sys.EMFILE;
            return false;
        }

        var pidfd = new PidFdHandle(fd);
        ExitWatcher? watcher = ExitWatcher.Instance;
        if (watcher is null)
        {
            // No epoll (never seen on Linux): keep the pidfd for Kill and the synchronous wait; the poller reaps.
            Volatile.Write(ref _pidfd, pidfd);
            errno = 0;
            return false;
        }

        ulong key = watcher.NextKey();
        _watchKey = key;
        Volatile.Write(ref _pidfd, pidfd);
        if (watcher.TryWatch(this, pidfd, key, out errno))
        {
            return true;
        }

        _watchKey = 0;
        Volatile.Write(ref _pidfd, null);
        pidfd.Dispose();
        return false;
    }

    /// <summary>
    /// Called by the <see cref="ExitPoller"/>: true when this process needs no more polling (it has been reaped, or
    /// it got a pidfd and is watched by the epoll thread now). Never blocks and never reaps a running process.
    /// </summary>
    /// <param name="mayPromote">Whether a pidfd may be tried for a running process; cleared when one does not fit,
    /// so that a scan tries at most once more while the budget is spent.</param>
    internal unsafe bool PollExit(ref bool mayPromote)
    {
        if (Volatile.Read(ref _reaped))
        {
            return true;
        }

        if (_lease is null)
        {
            // Our own child: peek without reaping (zygote and fallback mode).
            byte* info = stackalloc byte[Interop.Sys.SigInfoSize];
            new Span<byte>(info, Interop.Sys.SigInfoSize).Clear();
            int result = Interop.Sys.WaitId(Interop.Sys.P_PID, Id, info, Interop.Sys.WEXITED | Interop.Sys.WNOHANG | Interop.Sys.WNOWAIT);
            bool running = result == 0 && *(int*)(info + Interop.Sys.SigInfoPidOffset) == 0;
            if (!running)
            {
                return TryReap() || Promote(ref mayPromote); // exited (or an error TryReap reports)
            }
        }
        else if (TryReap())
        {
            return true;
        }

        return Promote(ref mayPromote);
    }

    /// <summary>Moves a running process to a pidfd once the budget allows; true when it did (or it was reaped meanwhile).</summary>
    private bool Promote(ref bool mayPromote)
    {
        if (!mayPromote || Volatile.Read(ref _pidfd) is not null)
        {
            return false; // budget spent, or a pidfd without epoll (then polling is the only way)
        }

        lock (_gate)
        {
            if (_reaped)
            {
                return true;
            }

            // Under the lock the process cannot be reaped, so its pid cannot have been reused.
            if (TryWatchWithPidFd(out _))
            {
                return true;
            }
        }

        mayPromote = false;
        return false;
    }

    /// <summary>
    /// Blocks in poll(2) on the pidfd until the process has exited (or the timeout passes), then reaps it here if
    /// the watcher thread has not yet. A task wait would spin before blocking, which costs the launcher CPU for
    /// every child that lives longer than the spin; a blocking poll costs one system call.
    /// </summary>
    private void BlockUntilExited(int timeoutMs)
    {
        PidFdHandle? pidfd = Volatile.Read(ref _pidfd);
        if (pidfd is null || TryReap())
        {
            return;
        }

        try
        {
            HandlePoll.Wait(pidfd, Interop.Sys.POLLIN, timeoutMs);
        }
        catch (ObjectDisposedException)
        {
            return; // closed because the process was reaped meanwhile
        }

        _ = TryReap(); // in relay mode the status may lag the exit: the task wait below covers that
    }

    /// <summary>Called by the watcher thread when the pidfd became readable.</summary>
    internal void OnExitObserved()
    {
        if (!TryReap())
        {
            // Relay mode: the child has exited but the proxy may not have recorded its status yet.
            ExitPoller.Add(this);
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

        ContextHandle? handle = _context.Handle; // null: no native context (a kernel-path child)
        bool added = false;
        try
        {
            try
            {
                handle?.DangerousAddRef(ref added);
            }
            catch (ObjectDisposedException)
            {
            }

            result = added
                ? Interop.PSpawnCore.WaitPid(handle!.Pointer, Id, status, options)
                : Interop.Sys.WaitPid(Id, status, options);
            errno = result < 0 ? Marshal.GetLastPInvokeError() : 0;
            return result;
        }
        finally
        {
            if (added)
            {
                handle!.DangerousRelease();
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
