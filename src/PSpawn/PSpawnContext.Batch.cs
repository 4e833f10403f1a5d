using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Mono.Unix.Native;

namespace PSpawn;

public sealed partial class PSpawnContext
{
    /// <summary>
    /// Spawns a batch in which every instance has its own arguments, environment changes and CPUs (pspawn_vector),
    /// fanned out to every proxy of the context. Returns when every instance has started or failed.
    /// </summary>
    /// <param name="instances">The instances, from 0 (an empty result) to <see cref="MaxSpawnCount"/>.</param>
    /// <param name="options">What applies to every instance (argv[0], the environment the instances' changes apply to,
    /// working directory, standard streams other than pipes, process group, limits, umask, parent-death signal, CPUs
    /// for instances without their own); null takes <see cref="SpawnOptions.Default"/>.</param>
    /// <returns>
    /// One outcome per instance: partial success is a result, not an exception. A failure of one instance (a CPU set
    /// the kernel refuses, a missing working directory, arguments too large for execve, a dead proxy) fails that
    /// instance only; <see cref="SpawnBatchResult.ThrowIfAnyFailed"/> turns failures into an exception.
    /// </returns>
    /// <exception cref="ArgumentException">Checked before anything is spawned: a null instance, argument or variable name,
    /// a CPU index out of 0 to 1023, an empty CPU set, conflicting options, or pipes (<see cref="StdioTarget.Pipe"/>,
    /// <see cref="SpawnOptions.OnOutputLine"/>, <see cref="SpawnOptions.OnErrorLine"/>), which a batch cannot create: use
    /// <see cref="SpawnN"/> for piped children.</exception>
    /// <exception cref="ObjectDisposedException">The context has been disposed.</exception>
    /// <exception cref="PSpawnKernelPathException">The context requires the kernel path (<see cref="KernelPath.Require"/>) and the
    /// options need more than the system calls can express (a working directory, redirection, limits, ...).</exception>
    public unsafe SpawnBatchResult SpawnBatch(IReadOnlyList<SpawnInstance> instances, SpawnOptions? options = null)
    {
        using BatchRequest request = PrepareBatch(instances, options);
        int count = request.Count;
        if (count == 0)
        {
            return new SpawnBatchResult([], Path, request.WithOptions, request.Backend);
        }

        int[] pids = new int[count];
        int[] errors = new int[count];
        DescriptorBudget.Refresh();
        if (request.Kernel is KernelBatch kernel)
        {
            KernelLauncher.Run(_kernel!, kernel, pids, errors);
            bool none = false;
            var kernelResult = new SpawnBatchResult(Adopt(pids, errors, 0, ref none, lease: null, SpawnBackend.Kernel), Path, request.WithOptions, SpawnBackend.Kernel);
            LogBatch(kernelResult);
            return kernelResult;
        }

        ContextHandle handle = request.Native!.Handle;
        int started;
        int errno = 0;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            fixed (int* pidsPointer = pids)
            fixed (int* errorsPointer = errors)
            {
                started = Interop.PSpawnCore.Vector(pidsPointer, errorsPointer, handle.Pointer, request.Table.Pointer, count, request.AttributesPointer);
                if (started < 0)
                {
                    errno = Marshal.GetLastPInvokeError();
                }
            }

            if (started < 0)
            {
                // The call was refused as a whole (never for what PrepareBatch checked): every instance has this error.
                pids.AsSpan().Fill(-1);
                errors.AsSpan().Fill(errno);
            }

            SpawnOutcome[] outcomes = Adopt(pids, errors, 0, ref added, lease: null, request.Backend);
            var result = new SpawnBatchResult(outcomes, Path, request.WithOptions, request.Backend);
            LogBatch(result);
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

    /// <summary>
    /// Starts an asynchronous launch session for a batch (see <see cref="SpawnBatch"/>) and returns at once. The session's
    /// <see cref="SpawnSession.Completion"/> gives the result; enumerating it (<c>await foreach</c>) gives every instance's
    /// outcome as its part of the batch completes. No thread waits for a session: the native sessions' descriptors are
    /// watched by the library's one epoll thread.
    /// </summary>
    /// <param name="instances">The instances (copied now: the list may change once this returns).</param>
    /// <param name="options">What applies to every instance, as for <see cref="SpawnBatch"/>.</param>
    /// <param name="cancellationToken">Cancels the launch: instances not yet handed to a proxy are not launched (their
    /// outcome is <c>ECANCELED</c>); started ones are never killed and are still reported. Cancellation is a result,
    /// not an exception.</param>
    /// <returns>The running session.</returns>
    /// <exception cref="ArgumentException">As for <see cref="SpawnBatch"/>, checked before anything is spawned.</exception>
    /// <exception cref="ObjectDisposedException">The context has been disposed.</exception>
    public SpawnSession StartBatch(IReadOnlyList<SpawnInstance> instances, SpawnOptions? options = null, CancellationToken cancellationToken = default)
    {
        BatchRequest request = PrepareBatch(instances, options);
        try
        {
            return new SpawnSession(this, request, cancellationToken);
        }
        catch
        {
            request.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Spawns a batch asynchronously (<see cref="StartBatch"/>) and returns its result once every instance has started,
    /// failed or been canceled.
    /// </summary>
    /// <param name="instances">The instances.</param>
    /// <param name="options">What applies to every instance, as for <see cref="SpawnBatch"/>.</param>
    /// <param name="cancellationToken">Stops launching (see <see cref="StartBatch"/>); the task still completes with the
    /// result, in which the instances not launched have <c>ECANCELED</c>.</param>
    /// <returns>The result.</returns>
    /// <exception cref="ArgumentException">As for <see cref="SpawnBatch"/>, thrown at once.</exception>
    /// <exception cref="ObjectDisposedException">The context has been disposed.</exception>
    public Task<SpawnBatchResult> SpawnBatchAsync(IReadOnlyList<SpawnInstance> instances, SpawnOptions? options = null, CancellationToken cancellationToken = default) =>
        StartBatch(instances, options, cancellationToken).Completion;

    private BatchRequest PrepareBatch(IReadOnlyList<SpawnInstance> instances, SpawnOptions? options)
    {
        ArgumentNullException.ThrowIfNull(instances);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        options ??= SpawnOptions.Default;
        ArgumentOutOfRangeException.ThrowIfGreaterThan(instances.Count, MaxSpawnCount, nameof(instances));
        ArgumentNullException.ThrowIfNull(options.Environment, nameof(options));
        if (options.HasNativeOptions)
        {
            options.ValidateNativeOptions(nameof(options));
        }

        bool[] piped = PipedStreams(options);
        if (piped[0] || piped[1] || piped[2])
        {
            throw new ArgumentException(
                "A batch cannot create pipes (StdioTarget.Pipe, OnOutputLine, OnErrorLine): use SpawnN for piped children, or redirect to a file or a descriptor.", nameof(options));
        }

        // Instances with their own cgroups need a zygote: the system calls place no child in a cgroup.
        string?[]? cgroups = InstanceCgroups(instances);
        bool kernel = cgroups is null && UseKernel(options, piped: false);
        Dictionary<string, string> environment = BuildEnvironmentVariables(options);
        NativeInstanceTable table = NativeInstanceTable.Create(instances, options.Argv0 ?? Path, environment, options, nameof(instances));
        try
        {
            if (kernel)
            {
                return new BatchRequest(table, KernelBatch.Create(table, Path, Core, _kernel!.MaxSpawns), table.Count > 0);
            }

            // CPU sets travel per instance (the table resolved the batch's sets by index), so a batch split into several
            // native sessions still puts instance i on CpuSetsPerInstance[i % count].
            NativeBackend native = EnsureNative();
            SpawnOptions rest = options with { Cpus = null, CpuSetsPerInstance = null };
            NativeSpawnAttributes? attributes = rest.HasNativeOptions || cgroups is not null ? NativeSpawnAttributes.Create(rest, Path) : null;
            var request = new BatchRequest(table, attributes, options.HasNativeOptions || table.Count > 0 || cgroups is not null, cgroups, native, BackendOf(native, attributes));
            if (request.ApplyCgroups(0, request.Count) is int errno and not 0)
            {
                attributes?.Dispose(); // the table goes below
                throw NativeSpawnAttributes.ExceptionForInstanceCgroups(cgroups!, errno, Path);
            }

            return request;
        }
        catch
        {
            table.Dispose();
            throw;
        }
    }

    /// <summary>The instances' own cgroups (validated), or null when none has one.</summary>
    private static string?[]? InstanceCgroups(IReadOnlyList<SpawnInstance> instances)
    {
        string?[]? cgroups = null;
        for (int i = 0; i < instances.Count; i++)
        {
            if (instances[i]?.Cgroup is string cgroup) // a null instance is NativeInstanceTable.Create's error
            {
                SpawnOptions.ValidateCgroupPath(cgroup, nameof(instances));
                cgroups ??= new string?[instances.Count];
                cgroups[i] = cgroup;
            }
        }

        return cgroups;
    }

    /// <summary>
    /// Turns native results into outcomes: a <see cref="SpawnedProcess"/> for every started instance, watched exactly as
    /// <see cref="SpawnN"/>'s children (a pidfd within the <see cref="DescriptorBudget"/>, else the <see cref="ExitPoller"/>).
    /// In relay mode the children need a reference on the context: <paramref name="lease"/> (a session's) counts them,
    /// else the caller's reference (<paramref name="added"/>) becomes their lease.
    /// </summary>
    internal unsafe SpawnOutcome[] Adopt(ReadOnlySpan<int> pids, ReadOnlySpan<int> errors, int firstIndex, ref bool added, ContextLease? lease, SpawnBackend backend)
    {
        if (backend is SpawnBackend.Zygote or SpawnBackend.Relay && added)
        {
            NoteRestarts(Interop.PSpawnCore.ContextRestarts(_native!.Handle.Pointer));
        }

        int startedCount = 0;
        foreach (int pid in pids)
        {
            startedCount += pid > 0 ? 1 : 0;
        }

        if (backend == SpawnBackend.Relay && startedCount > 0)
        {
            if (lease is not null)
            {
                lease.AddChildren(startedCount);
            }
            else if (added)
            {
                lease = new ContextLease(this, _native!.Handle, startedCount);
                RelayChildrenStarted(startedCount);
                added = false; // the lease owns the caller's reference now
            }
        }
        else
        {
            lease = null;
        }

        var outcomes = new SpawnOutcome[pids.Length];
        List<SpawnedProcess>? polled = null;
        int pollErrno = 0;
        for (int k = 0; k < pids.Length; k++)
        {
            if (pids[k] > 0)
            {
                var process = new SpawnedProcess(this, pids[k], lease);
                outcomes[k] = new SpawnOutcome(firstIndex + k, process, Path);
                if (!process.StartWatching(out int watchErrno))
                {
                    (polled ??= []).Add(process);
                    pollErrno = pollErrno != 0 ? pollErrno : watchErrno;
                }
            }
            else
            {
                int error = errors[k] != 0 ? errors[k] : Interop.Sys.EIO; // never seen: the native core reports every failure
                outcomes[k] = new SpawnOutcome(firstIndex + k, ErrorMapper.ToErrno(error), Path);
            }
        }

        if (polled is not null)
        {
            ExitPoller.AddRange(polled);
            if (pollErrno != 0 && Logger.IsEnabled(LogLevel.Debug))
            {
                string reason = ErrorMapper.Describe(ErrorMapper.ToErrno(pollErrno));
                int limit = DescriptorBudget.Limit;
                int reserve = DescriptorBudget.Reserve;
                Log.ExitWatchPolling(Logger, Path, polled.Count, startedCount, reason, limit, reserve);
            }
        }

        return outcomes;
    }

    /// <summary>Takes a reference on the native context for a launch session (false once disposed).</summary>
    internal bool TryAddSessionReference(NativeBackend native, out ContextLease? lease)
    {
        bool added = false;
        try
        {
            native.Handle.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
            lease = null;
            return false;
        }

        // In relay mode the session's reference is the lease its children share (released after the last of them and the session).
        lease = native.Mode == PSpawnMode.Relay ? new ContextLease(this, native.Handle, 1) : null;
        return true;
    }

    internal static void ReleaseSessionReference(NativeBackend native, ContextLease? lease)
    {
        if (lease is not null)
        {
            lease.ReleaseHolder();
        }
        else
        {
            native.Handle.DangerousRelease();
        }
    }

    /// <summary>The kernel's system calls, for a session of a kernel-served batch.</summary>
    internal KernelDetection? Kernel => _kernel;

    internal void LogBatch(SpawnBatchResult result)
    {
        if (result.Failed.Count == 0)
        {
            if (Logger.IsEnabled(LogLevel.Debug))
            {
                Log.Spawned(Logger, Path, result.Count);
            }
        }
        else if (Logger.IsEnabled(LogLevel.Debug))
        {
            Log.BatchSpawned(Logger, Path, result.Started.Count, result.Count, result.Failed.Count, result.CanceledCount);
        }
    }
}

/// <summary>A validated batch: its native instance table and attributes (or its layout for the kernel), freed together.</summary>
internal sealed class BatchRequest : IDisposable
{
    public BatchRequest(NativeInstanceTable table, NativeSpawnAttributes? attributes, bool withOptions, string?[]? cgroups, NativeBackend native, SpawnBackend backend)
    {
        Table = table;
        Attributes = attributes;
        WithOptions = withOptions;
        Cgroups = cgroups;
        Native = native;
        Backend = backend;
    }

    public BatchRequest(NativeInstanceTable table, KernelBatch kernel, bool withOptions)
    {
        Table = table;
        Kernel = kernel;
        WithOptions = withOptions;
        Backend = SpawnBackend.Kernel;
    }

    /// <summary>Each instance's own cgroup (null entries: the batch's), or null when none has one.</summary>
    public string?[]? Cgroups { get; }

    /// <summary>
    /// Points the attributes' per-instance cgroups at instances [start, start + count) (a session submits a batch in
    /// parts, each with its own pspawn_vector_async, which copies the attributes). Returns 0 or the errno.
    /// </summary>
    public int ApplyCgroups(int start, int count) =>
        Cgroups is null || Attributes is null ? 0 : Attributes.SetInstanceCgroups(Cgroups, start, count);

    public NativeInstanceTable Table { get; }

    /// <summary>The native context that serves the batch, or null when the kernel does.</summary>
    public NativeBackend? Native { get; }

    /// <summary>The batch laid out for ipspawn, or null when a native context serves it.</summary>
    public KernelBatch? Kernel { get; }

    public SpawnBackend Backend { get; }

    public NativeSpawnAttributes? Attributes { get; }

    public IntPtr AttributesPointer => Attributes?.Pointer ?? IntPtr.Zero;

    public int Count => Table.Count;

    /// <summary>Whether per-instance errors are to be explained as set-up failures in the child (always, for a batch).</summary>
    public bool WithOptions { get; }

    public void Dispose()
    {
        Attributes?.Dispose();
        Kernel?.Dispose();
        Table.Dispose();
    }
}
