using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace PSpawn;

/// <summary>
/// One epoll instance and one background thread for every spawned process of every context: each process's
/// pidfd is registered (EPOLLIN | EPOLLONESHOT) right after the spawn, and when it becomes readable (the
/// process has exited) the process is reaped and its waiters are completed. No thread is blocked per process,
/// and a cancelled <see cref="SpawnedProcess.WaitForExitAsync(CancellationToken)"/> leaves nothing behind: waiters only observe a
/// task, the registration belongs to the process and ends when it is reaped.
/// </summary>
/// <remarks>
/// Why pidfds and not SIGCHLD: a SIGCHLD handler would have to be shared with System.Diagnostics.Process, which
/// owns it in .NET. In particular we never create a Mono.Unix.UnixSignal: a live UnixSignal replaces the
/// process's handler for its signal (for SIGCHLD, Process.WaitForExit then hangs), and UnixSignal.WaitOne is
/// broken in the Mono.Unix build for .NET (ObjectDisposedException). A pidfd needs no handler at all.
/// </remarks>
internal sealed unsafe class ExitWatcher
{
    private const int MaxEvents = 64;

    private static readonly Lazy<ExitWatcher?> s_instance = new(Start, LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly int _epollFd;
    private readonly ConcurrentDictionary<ulong, object> _watched = new(); // SpawnedProcess, PipeEndStream or IReadyTarget
    private long _lastKey;

    private ExitWatcher(int epollFd)
    {
        _epollFd = epollFd;
    }

    /// <summary>The watcher, or null when epoll is not available (then processes are polled).</summary>
    public static ExitWatcher? Instance => s_instance.Value;

    /// <summary>The number of processes and pipe waits currently registered (for tests and diagnostics).</summary>
    public int WatchedCount => _watched.Count;

    private static ExitWatcher? Start()
    {
        int epollFd = Interop.Sys.EpollCreate1(Interop.Sys.EPOLL_CLOEXEC);
        if (epollFd < 0)
        {
            return null;
        }

        var watcher = new ExitWatcher(epollFd);
        var thread = new Thread(watcher.Run)
        {
            IsBackground = true,
            Name = "PSpawn exit watcher",
        };
        thread.Start();
        return watcher;
    }

    /// <summary>A key never used before (0 is never returned).</summary>
    public ulong NextKey() => (ulong)Interlocked.Increment(ref _lastKey);

    /// <summary>Registers <paramref name="pidfd"/>; false (with errno) when epoll_ctl failed.</summary>
    public bool TryWatch(SpawnedProcess process, PidFdHandle pidfd, ulong key, out int errno)
    {
        _watched[key] = process;
        byte* evt = stackalloc byte[16];
        Interop.Sys.EpollEvent.Write(evt, Interop.Sys.EPOLLIN | Interop.Sys.EPOLLONESHOT, key);
        bool added = false;
        try
        {
            pidfd.DangerousAddRef(ref added);
            if (Interop.Sys.EpollCtl(_epollFd, Interop.Sys.EPOLL_CTL_ADD, pidfd.Fd, evt) == 0)
            {
                errno = 0;
                return true;
            }

            errno = Marshal.GetLastPInvokeError();
        }
        finally
        {
            if (added)
            {
                pidfd.DangerousRelease();
            }
        }

        _watched.TryRemove(key, out _);
        return false;
    }

    /// <summary>Ends a registration (when the process was reaped by another path); call before closing the pidfd.</summary>
    public void Unwatch(ulong key, PidFdHandle pidfd)
    {
        if (!_watched.TryRemove(key, out _))
        {
            return;
        }

        bool added = false;
        try
        {
            pidfd.DangerousAddRef(ref added);
            byte* evt = stackalloc byte[16];
            _ = Interop.Sys.EpollCtl(_epollFd, Interop.Sys.EPOLL_CTL_DEL, pidfd.Fd, evt);
        }
        catch (ObjectDisposedException)
        {
            // Already closed: closing removed it from the epoll set.
        }
        finally
        {
            if (added)
            {
                pidfd.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Arms a one-shot wait for <paramref name="events"/> on a pipe end: EPOLL_CTL_ADD the first time
    /// (<paramref name="added"/> false), EPOLL_CTL_MOD afterwards. The caller holds a reference on the descriptor.
    /// </summary>
    public bool TryArm(PipeEndStream stream, int fd, uint events, ulong key, bool added, out int errno)
    {
        _watched[key] = stream;
        byte* evt = stackalloc byte[16];
        Interop.Sys.EpollEvent.Write(evt, events | Interop.Sys.EPOLLONESHOT, key);
        int op = added ? Interop.Sys.EPOLL_CTL_MOD : Interop.Sys.EPOLL_CTL_ADD;
        if (Interop.Sys.EpollCtl(_epollFd, op, fd, evt) == 0)
        {
            errno = 0;
            return true;
        }

        errno = Marshal.GetLastPInvokeError();
        _watched.TryRemove(key, out _);
        return false;
    }

    /// <summary>
    /// Waits (once, EPOLLIN | EPOLLONESHOT) until <paramref name="fd"/> becomes readable, then calls
    /// <see cref="IReadyTarget.OnReady"/> on this thread. Used for the eventfds of launch sessions: no thread waits per session.
    /// Remove it with <see cref="Disarm"/> before the descriptor is closed.
    /// </summary>
    public bool TryWatchReadable(IReadyTarget target, int fd, ulong key, out int errno)
    {
        _watched[key] = target;
        byte* evt = stackalloc byte[16];
        Interop.Sys.EpollEvent.Write(evt, Interop.Sys.EPOLLIN | Interop.Sys.EPOLLONESHOT, key);
        if (Interop.Sys.EpollCtl(_epollFd, Interop.Sys.EPOLL_CTL_ADD, fd, evt) == 0)
        {
            errno = 0;
            return true;
        }

        errno = Marshal.GetLastPInvokeError();
        _watched.TryRemove(key, out _);
        return false;
    }

    /// <summary>Removes a pipe end from the epoll set (before it is closed); the caller holds a reference on it.</summary>
    public void Disarm(int fd, ulong key)
    {
        _watched.TryRemove(key, out _);
        byte* evt = stackalloc byte[16];
        _ = Interop.Sys.EpollCtl(_epollFd, Interop.Sys.EPOLL_CTL_DEL, fd, evt);
    }

    private void Run()
    {
        int eventSize = Interop.Sys.EpollEvent.Size;
        byte* events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * eventSize));
        while (true)
        {
            int count = Interop.Sys.EpollWait(_epollFd, events, MaxEvents, -1);
            if (count < 0)
            {
                if (Marshal.GetLastPInvokeError() != Interop.Sys.EINTR)
                {
                    // Should not happen (EBADF/EFAULT/EINVAL are programming errors); do not spin.
                    Thread.Sleep(10);
                }

                continue;
            }

            for (int i = 0; i < count; i++)
            {
                ulong key = Interop.Sys.EpollEvent.ReadData(events + (i * eventSize));
                if (_watched.TryRemove(key, out object? target))
                {
                    if (target is SpawnedProcess process)
                    {
                        process.OnExitObserved();
                    }
                    else if (target is PipeEndStream stream)
                    {
                        stream.OnReady();
                    }
                    else
                    {
                        ((IReadyTarget)target).OnReady();
                    }
                }
            }
        }
    }
}

/// <summary>Something the <see cref="ExitWatcher"/> thread calls when a descriptor it waits on becomes readable.</summary>
internal interface IReadyTarget
{
    /// <summary>Called once per <see cref="ExitWatcher.TryWatchReadable"/>, on the watcher thread: must not block.</summary>
    void OnReady();
}
