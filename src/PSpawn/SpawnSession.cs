using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace PSpawn;

/// <summary>
/// An asynchronous launch of a batch (<see cref="PSpawnContext.StartBatch"/>): await it (or <see cref="Completion"/>) for
/// the <see cref="SpawnBatchResult"/>, or enumerate it (<c>await foreach</c>) for each instance's
/// <see cref="SpawnOutcome"/> as its part of the batch completes.
/// </summary>
/// <remarks>
/// <para>
/// The batch is launched in parts (native launch sessions, a few per proxy in flight at once, so that every proxy stays
/// busy); each part's outcomes are available as soon as it completes, in the order parts complete. No thread waits for
/// a session: each native session's descriptor is watched by the library's one epoll thread, which hands the finished
/// part to the thread pool.
/// </para>
/// <para>
/// <see cref="Cancel"/> (or the token given to <see cref="PSpawnContext.StartBatch"/>, or the one given to the
/// enumeration) stops launching: instances not yet handed to a proxy fail with <c>ECANCELED</c>, those in flight
/// complete, started processes are never killed and are always reported. So cancellation ends a session with a
/// result, never an exception, and the enumeration still yields every outcome and then ends.
/// </para>
/// <para>
/// Each enumeration yields every outcome once, from the start (several consumers may enumerate the same session).
/// A session needs no disposal: its native resources are released when its last part completes. The context stays
/// alive until then, even if it is disposed meanwhile.
/// </para>
/// </remarks>
public sealed class SpawnSession : IAsyncEnumerable<SpawnOutcome>
{
    /// <summary>Parts in flight per proxy: one launching while the next is queued, so a proxy never idles between parts.</summary>
    private const int PartsInFlightPerProxy = 2;

    /// <summary>How many parts a batch is cut into per proxy (for outcomes as they complete), within <see cref="MinPartSize"/>..<see cref="MaxPartSize"/>.</summary>
    private const int PartsPerProxy = 4;

    private const int MinPartSize = 32;
    private const int MaxPartSize = 1024;

    private readonly Lock _gate = new();
    private readonly PSpawnContext _context;
    private readonly BatchRequest _request;
    private readonly ContextLease? _lease;
    private readonly SpawnOutcome[] _byIndex;
    private readonly List<SpawnOutcome> _inOrder;
    private readonly List<Part> _inFlight = [];
    private readonly TaskCompletionSource<SpawnBatchResult> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly int _partSize;
    private readonly int _maxInFlight;
    private TaskCompletionSource _progress = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenRegistration _registration;
    private int _next;
    private bool _canceled;
    private bool _finished;

    internal SpawnSession(PSpawnContext context, BatchRequest request, CancellationToken cancellationToken)
    {
        _context = context;
        _request = request;
        int count = request.Count;
        Count = count;
        _byIndex = new SpawnOutcome[count];
        _inOrder = new List<SpawnOutcome>(count);
        if (request.Native is NativeBackend native)
        {
            int proxies = Math.Max(1, context.ProxyCount);
            _partSize = Math.Clamp((count + (PartsPerProxy * proxies) - 1) / (PartsPerProxy * proxies), MinPartSize, MaxPartSize);
            _maxInFlight = PartsInFlightPerProxy * proxies;
            ObjectDisposedException.ThrowIf(!context.TryAddSessionReference(native, out _lease), context);
        }
        else
        {
            // ipspawn starts a part's instances in parallel itself: a few large parts, for outcomes as they complete.
            int maxSpawns = context.Kernel!.MaxSpawns; // from sysfs: may be below MinPartSize
            _partSize = Math.Clamp((count + PartsPerProxy - 1) / PartsPerProxy, Math.Min(MinPartSize, maxSpawns), maxSpawns);
            _maxInFlight = PartsInFlightPerProxy;
        }

        DescriptorBudget.Refresh();
        if (cancellationToken.CanBeCanceled)
        {
            _registration = cancellationToken.UnsafeRegister(static state => ((SpawnSession)state!).Cancel(), this);
        }

        lock (_gate)
        {
            Pump();
        }
    }

    /// <summary>How many instances the batch has.</summary>
    public int Count { get; }

    /// <summary>Completes with the result once every instance has started, failed or been canceled (never faults for those).</summary>
    public Task<SpawnBatchResult> Completion => _completion.Task;

    /// <summary>Whether every instance has its outcome.</summary>
    public bool IsCompleted => _completion.Task.IsCompleted;

    /// <summary>
    /// Stops launching: instances not yet handed to a proxy fail with <c>ECANCELED</c>; those in flight complete and
    /// started processes are never killed. Does nothing once the session is complete; may be called any number of times.
    /// </summary>
    public void Cancel()
    {
        lock (_gate)
        {
            if (_finished || _canceled)
            {
                return;
            }

            _canceled = true;
            foreach (Part part in _inFlight)
            {
                if (part.Native != IntPtr.Zero)
                {
                    Interop.PSpawnCore.SessionCancel(part.Native);
                }
            }

            Pump();
        }
    }

    /// <summary>Awaits <see cref="Completion"/>: <c>var result = await context.StartBatch(instances);</c>.</summary>
    /// <returns>The awaiter of <see cref="Completion"/>.</returns>
    public TaskAwaiter<SpawnBatchResult> GetAwaiter() => Completion.GetAwaiter();

    /// <summary>
    /// Enumerates every instance's outcome as its part completes (all of them, from the first, on every enumeration).
    /// </summary>
    /// <param name="cancellationToken">Cancels the session (<see cref="Cancel"/>): the enumeration goes on with the
    /// outcomes of the parts in flight and the canceled instances, then ends, so no started process is missed.</param>
    /// <returns>The enumerator.</returns>
    public async IAsyncEnumerator<SpawnOutcome> GetAsyncEnumerator(CancellationToken cancellationToken = default)
    {
        CancellationTokenRegistration registration = cancellationToken.CanBeCanceled
            ? cancellationToken.UnsafeRegister(static state => ((SpawnSession)state!).Cancel(), this)
            : default;
        try
        {
            int next = 0;
            while (true)
            {
                SpawnOutcome[] ready;
                Task progress;
                bool finished;
                lock (_gate)
                {
                    ready = next < _inOrder.Count ? _inOrder.GetRange(next, _inOrder.Count - next).ToArray() : [];
                    next += ready.Length;
                    finished = _finished;
                    progress = _progress.Task;
                }

                foreach (SpawnOutcome outcome in ready)
                {
                    yield return outcome;
                }

                if (finished && ready.Length == 0)
                {
                    yield break;
                }

                if (!finished && ready.Length == 0)
                {
                    await progress.ConfigureAwait(false);
                }
            }
        }
        finally
        {
            registration.Dispose();
        }
    }

    /// <summary>Submits parts while there is room, fails the rest once canceled, finishes when nothing is left. Under the lock.</summary>
    private void Pump()
    {
        while (_next < Count)
        {
            if (_canceled)
            {
                FailRange(_next, Count - _next, Interop.Sys.ECANCELED);
                _next = Count;
                break;
            }

            if (_inFlight.Count >= _maxInFlight)
            {
                break;
            }

            int count = Math.Min(_partSize, Count - _next);
            _next += Submit(_next, count);
        }

        if (_next == Count && _inFlight.Count == 0 && !_finished)
        {
            Finish();
        }
    }

    /// <summary>Launches up to <paramref name="count"/> instances from <paramref name="start"/> as one part; how many it took.</summary>
    private unsafe int Submit(int start, int count)
    {
        Part part;
        if (_request.Kernel is KernelBatch kernel)
        {
            count = kernel.NextPart(start, count);
            KernelSessionHandle? session = KernelLauncher.Start(_context.Kernel!, kernel, start, count, nonBlocking: true, out int kernelErrno);
            if (session is null)
            {
                FailRange(start, count, kernelErrno != 0 ? kernelErrno : Interop.Sys.EIO); // ENOMEM, EMFILE
                return count;
            }

            part = new Part(this, start, count, IntPtr.Zero, session.Fd) { KernelSession = session };
            _inFlight.Add(part);
        }
        else
        {
            // The session's reference keeps the native context alive (even once the context is disposed).
            IntPtr native = IntPtr.Zero;
            int cgroupError = _request.ApplyCgroups(start, count); // a cgroup removed since the batch was prepared
            int result = cgroupError != 0 ? -1 : Interop.PSpawnCore.VectorAsync(&native, _request.Native!.Handle.Pointer, _request.Table.Pointer + start, count, _request.AttributesPointer);
            int errno = cgroupError != 0 ? cgroupError : result != 0 ? Marshal.GetLastPInvokeError() : 0;
            if (result != 0)
            {
                FailRange(start, count, errno != 0 ? errno : Interop.Sys.EIO); // EAGAIN (no thread), ENOMEM
                return count;
            }

            part = new Part(this, start, count, native, Interop.PSpawnCore.SessionFd(native));
            _inFlight.Add(part);
            if (_canceled)
            {
                Interop.PSpawnCore.SessionCancel(native);
            }
        }

        ExitWatcher? watcher = ExitWatcher.Instance;
        if (watcher is not null)
        {
            part.Key = watcher.NextKey();
            if (watcher.TryWatchReadable(part, part.Fd, part.Key, out _))
            {
                return count;
            }

            part.Key = 0;
        }

        // No epoll (never seen on Linux): one blocking wait for this part.
        _ = Task.Factory.StartNew(
            static state =>
            {
                var p = (Part)state!;
                if (p.KernelSession is KernelSessionHandle session)
                {
                    _ = HandlePoll.Wait(session, Interop.Sys.POLLIN, -1);
                }
                else
                {
                    _ = Interop.PSpawnCore.SessionWait(p.Native, -1);
                }

                p.Session.Complete(p);
            },
            part,
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);

        return count;
    }

    /// <summary>Collects a finished part (on a thread-pool thread), adopts its children and launches the next part.</summary>
    private unsafe void Complete(Part part)
    {
        IntPtr native;
        lock (_gate)
        {
            native = part.Native;
            part.Native = IntPtr.Zero; // Cancel no longer touches it
        }

        if (part.Key != 0)
        {
            ExitWatcher.Instance!.Disarm(part.Fd, part.Key);
        }

        int[] pids = new int[part.Count];
        int[] errors = new int[part.Count];
        if (part.KernelSession is KernelSessionHandle session)
        {
            KernelLauncher.ReadResults(session, pids, errors); // reading reaps the failed instances
            session.Dispose();
            KernelLauncher.RelaunchInterrupted(_context.Kernel!, _request.Kernel!, part.Start, pids, errors); // rare: blocks this pool thread briefly
            bool none = false;
            SpawnOutcome[] kernelOutcomes = _context.Adopt(pids, errors, part.Start, ref none, lease: null, SpawnBackend.Kernel);
            lock (_gate)
            {
                _inFlight.Remove(part);
                Append(kernelOutcomes);
                Pump();
            }

            return;
        }

        fixed (int* pidsPointer = pids)
        fixed (int* errorsPointer = errors)
        {
            if (Interop.PSpawnCore.SessionResults(native, pidsPointer, errorsPointer) < 0)
            {
                // Not done (cannot happen once the descriptor is readable): wait for it rather than lose a child.
                _ = Interop.PSpawnCore.SessionWait(native, -1);
                _ = Interop.PSpawnCore.SessionResults(native, pidsPointer, errorsPointer);
            }
        }

        Interop.PSpawnCore.SessionFree(native);
        bool held = true; // the session's reference
        SpawnOutcome[] outcomes = _context.Adopt(pids, errors, part.Start, ref held, _lease, _request.Backend);
        lock (_gate)
        {
            _inFlight.Remove(part);
            Append(outcomes);
            Pump();
        }
    }

    private void FailRange(int start, int count, int errno)
    {
        var outcomes = new SpawnOutcome[count];
        for (int k = 0; k < count; k++)
        {
            outcomes[k] = new SpawnOutcome(start + k, ErrorMapper.ToErrno(errno), _context.Path);
        }

        Append(outcomes);
    }

    private void Append(SpawnOutcome[] outcomes)
    {
        foreach (SpawnOutcome outcome in outcomes)
        {
            _byIndex[outcome.Index] = outcome;
        }

        _inOrder.AddRange(outcomes);
        TaskCompletionSource progress = _progress;
        _progress = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        progress.TrySetResult();
    }

    private void Finish()
    {
        _finished = true;
        _registration.Unregister(); // not Dispose: a Cancel running on another thread may be waiting for our lock
        _request.Dispose();
        if (_request.Native is NativeBackend native)
        {
            PSpawnContext.ReleaseSessionReference(native, _lease);
        }

        var result = new SpawnBatchResult(_byIndex, _context.Path, _request.WithOptions, _request.Backend);
        _context.LogBatch(result);
        _progress.TrySetResult();
        _completion.TrySetResult(result);
    }

    /// <summary>One native launch session: instances [Start, Start + Count) of the batch.</summary>
    private sealed class Part : IReadyTarget
    {
        public Part(SpawnSession session, int start, int count, IntPtr native, int fd)
        {
            Session = session;
            Start = start;
            Count = count;
            Native = native;
            Fd = fd;
        }

        public SpawnSession Session { get; }

        public int Start { get; }

        public int Count { get; }

        /// <summary>The pspawn_session_t*, until it is collected (then zero); zero for a kernel part.</summary>
        public IntPtr Native { get; set; }

        /// <summary>A kernel part's ipspawn session, or null.</summary>
        public KernelSessionHandle? KernelSession { get; init; }

        public int Fd { get; }

        public ulong Key { get; set; }

        /// <summary>On the epoll thread: collecting creates processes and pidfds, so it runs on the thread pool.</summary>
        public void OnReady() =>
            ThreadPool.UnsafeQueueUserWorkItem(static part => part.Session.Complete(part), this, preferLocal: false);
    }
}
