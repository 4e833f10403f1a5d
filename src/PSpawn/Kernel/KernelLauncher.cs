using System.Runtime.InteropServices;

namespace PSpawn;

/// <summary>
/// Launches the parts of a <see cref="KernelBatch"/> with ipspawn and reads each session's results (one pid or -errno per
/// instance). ipspawn rather than pspawn: it starts the instances in parallel, pspawn waits for each exec in turn.
/// </summary>
internal static unsafe class KernelLauncher
{
    /// <summary>
    /// ERESTARTNOINTR, a kernel-internal errno that ipspawn reports for an instance whose clone found a signal pending for
    /// the caller (copy_process refuses to fork then, and a plain fork would be restarted by the kernel). In a .NET
    /// process that is SIGCHLD of an earlier instance (the runtime handles SIGCHLD, so it is queued, not discarded). The
    /// instance never existed, so <see cref="RelaunchInterrupted"/> launches it again in a new call.
    /// </summary>
    internal const int ERESTARTNOINTR = 513;

    /// <summary>How many times interrupted instances are relaunched before they are reported as EINTR.</summary>
    private const int MaxRelaunches = 100;

    /// <summary>Starts instances [start, start + count) as one launch session; null with <paramref name="errno"/> when the call failed as a whole.</summary>
    public static KernelSessionHandle? Start(KernelDetection kernel, KernelBatch batch, int start, int count, bool nonBlocking, out int errno)
    {
        Interop.KernelAbi.Args args;
        batch.Fill(&args, start, count, nonBlocking ? Interop.KernelAbi.SessionNonblock : 0);
        KernelSessionHandle session = Interop.Kernel.IPSpawn((nint)kernel.IPSpawnNumber, &args, sizeof(Interop.KernelAbi.Args));
        errno = session.IsInvalid ? Marshal.GetLastPInvokeError() : 0;
        if (session.IsInvalid)
        {
            session.Dispose();
            return null;
        }

        return session;
    }

    /// <summary>
    /// Reads every result of a session (waiting with poll until it is complete when the descriptor is non-blocking):
    /// <paramref name="pids"/>[k] &gt; 0, or -1 with <paramref name="errors"/>[k] the errno. A read that fails (never
    /// seen: the descriptor is ours) leaves the unread instances EIO.
    /// </summary>
    public static void ReadResults(KernelSessionHandle session, Span<int> pids, Span<int> errors)
    {
        int count = pids.Length;
        int[] raw = new int[count];
        int got = 0; // whole results
        fixed (int* buffer = raw)
        {
            while (got < count)
            {
                nint n = Interop.Kernel.ReadSession(session, (byte*)(buffer + got), (nuint)((count - got) * Interop.KernelAbi.ResultSize));
                if (n > 0)
                {
                    got += (int)(n / Interop.KernelAbi.ResultSize);
                    continue;
                }

                int errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
                if (errno == Interop.Sys.EINTR)
                {
                    continue;
                }

                if (errno == Interop.Sys.EAGAIN && HandlePoll.Wait(session, Interop.Sys.POLLIN, -1))
                {
                    continue;
                }

                break; // end of file early, or an error
            }
        }

        for (int k = 0; k < count; k++)
        {
            int value = k < got ? raw[k] : -Interop.Sys.EIO;
            pids[k] = value > 0 ? value : -1;
            errors[k] = value > 0 ? 0 : -value;
        }
    }

    /// <summary>
    /// Launches again, with blocking calls, the instances of the part at <paramref name="start"/> that failed with
    /// <see cref="ERESTARTNOINTR"/> (each new call returns to user space first, where the pending signal is handled),
    /// until none is left; after <see cref="MaxRelaunches"/> calls the rest are EINTR, never the kernel-internal errno.
    /// </summary>
    public static void RelaunchInterrupted(KernelDetection kernel, KernelBatch batch, int start, Span<int> pids, Span<int> errors)
    {
        for (int attempt = 0; attempt < MaxRelaunches; attempt++)
        {
            var retry = new List<int>();
            for (int k = 0; k < pids.Length; k++)
            {
                if (pids[k] <= 0 && errors[k] == ERESTARTNOINTR)
                {
                    retry.Add(k);
                }
            }

            if (retry.Count == 0)
            {
                return;
            }

            int[] indices = retry.Select(k => start + k).ToArray();
            int[] newPids = new int[indices.Length];
            int[] newErrors = new int[indices.Length];
            ulong* argv = (ulong*)NativeMemory.Alloc((nuint)indices.Length, sizeof(ulong));
            ulong* envp = (ulong*)NativeMemory.Alloc((nuint)indices.Length, sizeof(ulong));
            byte* masks = batch.HasPerInstanceMasks ? (byte*)NativeMemory.Alloc((nuint)indices.Length, Interop.PSpawnCore.CpuSetBytes) : null;
            try
            {
                Interop.KernelAbi.Args args;
                batch.FillSubset(&args, indices, argv, envp, masks);
                using KernelSessionHandle session = Interop.Kernel.IPSpawn((nint)kernel.IPSpawnNumber, &args, sizeof(Interop.KernelAbi.Args));
                if (session.IsInvalid)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    newPids.AsSpan().Fill(-1);
                    newErrors.AsSpan().Fill(errno != 0 ? errno : Interop.Sys.EIO);
                }
                else
                {
                    ReadResults(session, newPids, newErrors);
                }
            }
            finally
            {
                NativeMemory.Free(argv);
                NativeMemory.Free(envp);
                NativeMemory.Free(masks);
            }

            for (int j = 0; j < retry.Count; j++)
            {
                pids[retry[j]] = newPids[j];
                errors[retry[j]] = newErrors[j];
            }
        }

        for (int k = 0; k < pids.Length; k++)
        {
            errors[k] = pids[k] <= 0 && errors[k] == ERESTARTNOINTR ? Interop.Sys.EINTR : errors[k];
        }
    }

    /// <summary>Runs the whole batch, part after part, each launched in parallel and waited for; fills one result per instance.</summary>
    public static void Run(KernelDetection kernel, KernelBatch batch, Span<int> pids, Span<int> errors)
    {
        int start = 0;
        while (start < batch.Count)
        {
            int count = batch.NextPart(start, int.MaxValue);
            using (KernelSessionHandle? session = Start(kernel, batch, start, count, nonBlocking: false, out int errno))
            {
                if (session is null)
                {
                    pids.Slice(start, count).Fill(-1);
                    errors.Slice(start, count).Fill(errno != 0 ? errno : Interop.Sys.EIO);
                }
                else
                {
                    ReadResults(session, pids.Slice(start, count), errors.Slice(start, count));
                    RelaunchInterrupted(kernel, batch, start, pids.Slice(start, count), errors.Slice(start, count));
                }
            }

            start += count;
        }
    }
}

/// <summary>
/// An ipspawn launch-session descriptor (an anon inode, close-on-exec). Closing it before reading the results leaves
/// failed instances as zombies until this process exits, so every path reads the results first.
/// </summary>
internal sealed class KernelSessionHandle : SafeHandle
{
    /// <summary>For the interop marshaller (the descriptor is set by it).</summary>
    public KernelSessionHandle()
        : base(new IntPtr(-1), ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle.ToInt64() < 0;

    /// <summary>The descriptor number (for epoll registration; the handle must stay open meanwhile).</summary>
    public int Fd => (int)handle.ToInt64();

    protected override bool ReleaseHandle() => Interop.Sys.Close((int)handle.ToInt64()) == 0;
}
