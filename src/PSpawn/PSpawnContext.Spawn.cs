using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Mono.Unix.Native;

namespace PSpawn;

/// <summary>Spawn and SpawnN: one argument list for every instance, per-spawn options, pipes.</summary>
public sealed partial class PSpawnContext
{
    /// <summary>Spawns one instance.</summary>
    /// <param name="arguments">The arguments, without argv[0] (as <see cref="System.Diagnostics.ProcessStartInfo.ArgumentList"/>).</param>
    /// <param name="options">Options; null takes <see cref="SpawnOptions.Default"/>.</param>
    /// <returns>The new process.</returns>
    /// <exception cref="PSpawnProxyException">The proxy is dead or did not answer in time; the context is broken.</exception>
    /// <exception cref="PSpawnArgumentException">The arguments and environment are too large (<c>E2BIG</c>), or the
    /// native core rejected an option.</exception>
    /// <exception cref="ArgumentException">Options that can be checked up front are invalid (a CPU index out of 0 to 1023,
    /// an empty CPU set, conflicting process-group options, a soft limit above its hard limit, ...).</exception>
    /// <exception cref="PSpawnFileNotFoundException">A per-spawn option failed in the child with <c>ENOENT</c> (missing
    /// working directory or standard-input file); the child never ran <c>main</c>.</exception>
    /// <exception cref="PSpawnException">Another failure (for example <c>EAGAIN</c>), including a per-spawn option that
    /// failed in the child (<c>EINVAL</c> for a refused CPU set, <c>EPERM</c> for a refused limit or group).</exception>
    /// <exception cref="ObjectDisposedException">The context has been disposed.</exception>
    public SpawnedProcess Spawn(IReadOnlyList<string> arguments, SpawnOptions? options = null) =>
        SpawnCore(1, arguments, options)[0];

    /// <summary>Spawns <paramref name="count"/> instances with the same arguments, in one request to the proxy.</summary>
    /// <param name="count">How many, from 0 (an empty list) to <see cref="MaxSpawnCount"/>.</param>
    /// <param name="arguments">The arguments, without argv[0].</param>
    /// <param name="options">Options; null takes <see cref="SpawnOptions.Default"/>.</param>
    /// <returns>The new processes, in the order they were started.</returns>
    /// <exception cref="PSpawnException">Not every instance started. The ones that did are in
    /// <see cref="PSpawnException.StartedProcesses"/> and the error of each one that did not in
    /// <see cref="PSpawnException.FailedInstances"/> (the exception may also be a <see cref="PSpawnArgumentException"/>
    /// or <see cref="PSpawnFileNotFoundException"/> when none started).</exception>
    /// <exception cref="ArgumentException">Options that can be checked up front are invalid.</exception>
    /// <exception cref="ObjectDisposedException">The context has been disposed.</exception>
    public IReadOnlyList<SpawnedProcess> SpawnN(int count, IReadOnlyList<string> arguments, SpawnOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, MaxSpawnCount);
        return SpawnCore(count, arguments, options);
    }

    /// <summary>The most instances one <see cref="SpawnN"/> call may ask for (1,048,576, as the native core).</summary>
    public const int MaxSpawnCount = Interop.PSpawnCore.MaxSpawns;

    private unsafe SpawnedProcess[] SpawnCore(int count, IReadOnlyList<string> arguments, SpawnOptions? options)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        options ??= SpawnOptions.Default;
        if (count == 0)
        {
            return [];
        }

        bool[] piped = PipedStreams(options);
        if (UseKernel(options, piped[0] || piped[1] || piped[2]))
        {
            return SpawnThroughKernel(count, arguments, options);
        }

        NativeBackend native = EnsureNative();
        ContextHandle handle = native.Handle;
        var argv = new string[arguments.Count + 1];
        argv[0] = options.Argv0 ?? Path;
        for (int i = 0; i < arguments.Count; i++)
        {
            argv[i + 1] = arguments[i];
        }

        using NativeStringArray nativeArgv = NativeStringArray.Create(argv, nameof(arguments));
        using NativeStringArray nativeEnvp = NativeStringArray.Create(BuildEnvironment(options), nameof(options));

        // The fast path (no per-spawn option) calls pspawn_ne exactly as before: no attributes, no stdio array.
        bool withOptions = options.HasNativeOptions;
        NativeSpawnAttributes? attributes = null;
        if (withOptions)
        {
            options.ValidateNativeOptions(nameof(options));
            attributes = NativeSpawnAttributes.Create(options, Path);
        }

        int[] pids = new int[count];
        int[] errors = new int[count];
        // Pipe ends come back only for the streams that asked for one; every other slot must read -1 (the
        // native core leaves the array untouched when no stream is piped), so never trust an unwritten slot.
        int[]? stdioFds = piped[0] || piped[1] || piped[2] ? new int[3 * count] : null;
        stdioFds?.AsSpan().Fill(-1);
        int started = 0;
        int errno = 0;
        bool added = false;
        bool leased = false;
        var processes = new SpawnedProcess[count]; // returned as it is when every instance started
        int created = 0;
        List<SpawnedProcess>? polled = null;
        int pollErrno = 0;
        DescriptorBudget.Refresh(); // the application may have changed RLIMIT_NOFILE since the last call

        // Pipe ends stay in this process: start only as many instances as fit above the descriptor reserve
        // (the others fail with EMFILE, as if pipe2 had failed), so that pipes can never starve the runtime.
        int fitting = stdioFds is null ? count : FittingPipedInstances(count, piped);
        for (int i = fitting; i < count; i++)
        {
            errors[i] = Interop.Sys.EMFILE;
        }

        try
        {
            handle.DangerousAddRef(ref added);
            if (fitting > 0)
            {
                fixed (int* pidsPointer = pids)
                fixed (int* errorsPointer = errors)
                fixed (int* stdioPointer = stdioFds)
                {
                    started = attributes is null
                        ? Interop.PSpawnCore.SpawnNE(pidsPointer, errorsPointer, handle.Pointer, fitting, nativeArgv.Pointer, nativeEnvp.Pointer)
                        : Interop.PSpawnCore.SpawnNX(pidsPointer, errorsPointer, stdioPointer, handle.Pointer, fitting, nativeArgv.Pointer, nativeEnvp.Pointer, attributes.Pointer);
                    errno = started < fitting ? Marshal.GetLastPInvokeError() : 0;
                }
            }

            if (fitting < count && errno == 0)
            {
                errno = Interop.Sys.EMFILE;
            }

            if (native.Mode != PSpawnMode.Fallback)
            {
                NoteRestarts(Interop.PSpawnCore.ContextRestarts(handle.Pointer));
            }

            int startedCount = 0;
            foreach (int pid in pids)
            {
                if (pid > 0)
                {
                    startedCount++;
                }
            }

            // In relay mode the children's exit statuses live in the proxy: they keep the context alive (one
            // reference for the whole batch) until the last of them has been reaped.
            ContextLease? lease = null;
            if (native.Mode == PSpawnMode.Relay && startedCount > 0)
            {
                lease = new ContextLease(this, handle, startedCount);
                Interlocked.Add(ref _runningRelayChildren, startedCount);
                leased = true;
            }

            int? knownGroup = withOptions ? NativeSpawnAttributes.KnownProcessGroup(options) : null;
            for (int i = 0; i < count; i++)
            {
                int pid = pids[i];
                if (pid > 0)
                {
                    var process = new SpawnedProcess(this, pid, lease);
                    processes[created++] = process;
                    if (withOptions)
                    {
                        // Owned by the process from here on, so that no pipe end can leak.
                        process.AttachStdio(
                            PipeEnd(stdioFds, piped, i, 0), PipeEnd(stdioFds, piped, i, 1), PipeEnd(stdioFds, piped, i, 2), knownGroup == 0 ? pid : knownGroup);
                        process.StartLineCallbacks(options.OnOutputLine, options.OnErrorLine);
                    }

                    if (!process.StartWatching(out int watchErrno))
                    {
                        (polled ??= []).Add(process);
                        pollErrno = pollErrno != 0 ? pollErrno : watchErrno;
                    }
                }
            }
        }
        finally
        {
            attributes?.Dispose();
            if (added && !leased)
            {
                handle.DangerousRelease();
            }

            if (polled is not null)
            {
                // One wake-up of the poller for the whole batch.
                ExitPoller.AddRange(polled);
                if (pollErrno != 0 && Logger.IsEnabled(LogLevel.Debug))
                {
                    string reason = ErrorMapper.Describe(ErrorMapper.ToErrno(pollErrno));
                    int limit = DescriptorBudget.Limit;
                    int reserve = DescriptorBudget.Reserve;
                    Log.ExitWatchPolling(Logger, Path, polled.Count, created, reason, limit, reserve);
                }
            }
        }

        if (created == count)
        {
            Log.Spawned(Logger, Path, count);
            return processes;
        }

        int firstError = errno;
        for (int i = 0; i < count; i++)
        {
            if (pids[i] <= 0 && errors[i] != 0)
            {
                firstError = errors[i];
                break;
            }
        }

        var failed = new Dictionary<int, Errno>();
        for (int i = 0; i < count; i++)
        {
            if (pids[i] <= 0 && errors[i] != 0)
            {
                failed[i] = ErrorMapper.ToErrno(errors[i]);
            }
        }

        Errno e = ErrorMapper.ToErrno(firstError);
        Exception exception = ErrorMapper.ForSpawn(e, Path, count, Array.AsReadOnly(processes[..created]), withOptions, failed);
        string what = ErrorMapper.Describe(e);
        if (exception is PSpawnProxyException)
        {
            Log.ProxyFailed(Logger, Path, what);
        }

        Log.SpawnFailed(Logger, Path, created, count, what, exception);
        throw exception;
    }

    /// <summary>Spawn and SpawnN through the kernel: a batch of identical instances (one shared argv and envp), errors as SpawnN's.</summary>
    private SpawnedProcess[] SpawnThroughKernel(int count, IReadOnlyList<string> arguments, SpawnOptions options)
    {
        var instances = new SpawnInstance[count];
        Array.Fill(instances, new SpawnInstance(arguments));
        SpawnBatchResult result = SpawnBatch(instances, options);
        var processes = new SpawnedProcess[result.Started.Count];
        for (int i = 0; i < processes.Length; i++)
        {
            processes[i] = result.Started[i];
        }

        if (result.AllStarted)
        {
            return processes;
        }

        var failed = new Dictionary<int, Errno>(result.Failed.Count);
        foreach (SpawnOutcome outcome in result.Failed)
        {
            failed[outcome.Index] = outcome.Errno!.Value;
        }

        Errno e = result.Failed[0].Errno!.Value;
        Exception exception = ErrorMapper.ForSpawn(e, Path, count, Array.AsReadOnly(processes), withOptions: false, failed);
        Log.SpawnFailed(Logger, Path, processes.Length, count, ErrorMapper.Describe(e), exception);
        throw exception;
    }

    /// <summary>
    /// How many of <paramref name="count"/> piped instances fit above the descriptor reserve: each keeps one
    /// descriptor per piped stream here, and the native core briefly holds both ends of up to 64 instances' pipes.
    /// </summary>
    private static int FittingPipedInstances(int count, bool[] piped)
    {
        int perInstance = (piped[0] ? 1 : 0) + (piped[1] ? 1 : 0) + (piped[2] ? 1 : 0);
        const int InFlight = Interop.PSpawnCore.MaxPipedBatch; // instances whose pipes are made and sent at once
        long budget = DescriptorBudget.Available() / perInstance; // in instances
        // k instances hold k + min(k, InFlight) instances' worth of descriptors at the peak.
        long fitting = budget > 2 * InFlight ? budget - InFlight : budget / 2;
        return (int)Math.Clamp(fitting, 0, count);
    }

    /// <summary>Which of stdin, stdout and stderr get a pipe.</summary>
    private static bool[] PipedStreams(SpawnOptions options) =>
    [
        options.StandardInput.Kind == StdioKind.Pipe,
        options.StandardOutput.Kind == StdioKind.Pipe || options.OnOutputLine is not null,
        options.StandardError.Kind == StdioKind.Pipe || options.OnErrorLine is not null,
    ];

    /// <summary>The caller's pipe end of stream <paramref name="k"/> of instance <paramref name="i"/>, or -1.</summary>
    private static int PipeEnd(int[]? stdioFds, bool[] piped, int i, int k) =>
        stdioFds is not null && piped[k] ? stdioFds[(3 * i) + k] : -1;

    private static List<string> BuildEnvironment(SpawnOptions options) =>
        NativeStringArray.ToEnvironmentBlock(BuildEnvironmentVariables(options), nameof(options));

    private static Dictionary<string, string> BuildEnvironmentVariables(SpawnOptions options)
    {
        Dictionary<string, string> variables = options.InheritEnvironment
            ? NativeStringArray.CurrentEnvironment()
            : new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in options.Environment)
        {
            SpawnOptions.ValidateVariableName(name, nameof(options));
            if (value is null)
            {
                variables.Remove(name);
            }
            else
            {
                variables[name] = value;
            }
        }

        return variables;
    }
}
