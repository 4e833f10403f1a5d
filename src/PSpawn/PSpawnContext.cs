using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mono.Unix.Native;

namespace PSpawn;

/// <summary>
/// Spawns many instances of one executable through a zygote: the executable is started once with
/// libpspawn_proxy.so preloaded, stopped just before main (after the dynamic loader, relocations and library
/// constructors), and every spawn only forks that proxy and runs main with the new argument list and environment.
/// </summary>
/// <remarks>
/// <para>
/// Children are children of this process (in <see cref="PSpawnMode.Zygote"/> mode), exactly as after fork and exec:
/// <see cref="SpawnedProcess"/> observes them through pidfds. All members are thread-safe; many threads may call
/// <see cref="Spawn"/> and <see cref="SpawnN"/> at once. <see cref="Dispose"/> stops the proxy (after calls in
/// flight have finished); children already spawned keep running and stay waitable.
/// </para>
/// <para>
/// The native libraries are looked up in the directory named by the environment variable <c>PSPAWN_NATIVE_DIR</c>,
/// else next to the application, else in its <c>runtimes/linux-x64/native/</c> folder (a NuGet consumer's output).
/// </para>
/// <para>
/// This library never creates a <c>Mono.Unix.UnixSignal</c>: a live UnixSignal takes over the process's signal
/// handling (for SIGCHLD, that of System.Diagnostics.Process, whose WaitForExit then hangs), and its WaitOne is
/// broken in the Mono.Unix build available for .NET. Exits are observed through pidfds instead, which need no
/// signal handler at all. Mono.Unix is used only for errno and signal names and descriptions.
/// </para>
/// </remarks>
public sealed partial class PSpawnContext : IDisposable, IAsyncDisposable
{
    private readonly ContextHandle _handle;
    private int _disposed;
    private int _runningRelayChildren;
    private int _restarts;

    private PSpawnContext(ContextHandle handle, string path, int core, PSpawnContextOptions options, ILogger logger, PSpawnMode mode, Errno? fallbackReason)
    {
        _handle = handle;
        Path = path;
        Core = core;
        Options = options;
        Logger = logger;
        Mode = mode;
        FallbackReason = fallbackReason;
    }

    /// <summary>The full path of the executable this context spawns.</summary>
    public string Path { get; }

    /// <summary>The CPU the proxy (and so every child) is pinned to, or -1.</summary>
    public int Core { get; }

    /// <summary>The options the context was created with.</summary>
    public PSpawnContextOptions Options { get; }

    /// <summary>How this context spawns.</summary>
    public PSpawnMode Mode { get; }

    /// <summary>
    /// In <see cref="PSpawnMode.Fallback"/> mode, the error that prevented a zygote (<c>ENOTSUP</c>: statically linked,
    /// <c>EPERM</c>: set-user-ID or set-group-ID, <c>EDEADLK</c>: threads started by constructors, <c>ENOSYS</c>: no
    /// <c>__libc_start_main</c> (its own entry point), <c>ETIMEDOUT</c> or
    /// <c>EPIPE</c>: the proxy did not start); otherwise null.
    /// </summary>
    public Errno? FallbackReason { get; }

    /// <summary>The proxy's process ID; null in <see cref="PSpawnMode.Fallback"/> mode, once the proxy has failed, or after <see cref="Dispose"/>.</summary>
    public unsafe int? ProxyProcessId
    {
        get
        {
            if (Volatile.Read(ref _disposed) != 0)
            {
                return null;
            }

            bool added = false;
            try
            {
                _handle.DangerousAddRef(ref added);
                int pid = Interop.PSpawnCore.ContextProxyPid(_handle.Pointer);
                return pid > 0 ? pid : null;
            }
            catch (ObjectDisposedException)
            {
                return null;
            }
            finally
            {
                if (added)
                {
                    _handle.DangerousRelease();
                }
            }
        }
    }

    /// <summary>
    /// How many times a dead proxy has been restarted (by the spawn after its death; at most
    /// <see cref="PSpawnContextOptions.MaxRestarts"/>). Always 0 in <see cref="PSpawnMode.Fallback"/> mode; after
    /// <see cref="Dispose"/>, the last count seen.
    /// </summary>
    public unsafe int RestartCount
    {
        get
        {
            bool added = false;
            try
            {
                _handle.DangerousAddRef(ref added);
                return Math.Max(Volatile.Read(ref _restarts), Interop.PSpawnCore.ContextRestarts(_handle.Pointer));
            }
            catch (ObjectDisposedException)
            {
                return Volatile.Read(ref _restarts);
            }
            finally
            {
                if (added)
                {
                    _handle.DangerousRelease();
                }
            }
        }
    }

    /// <summary>
    /// How many proxies serve this context (<see cref="PSpawnContextOptions.ProxyCount"/>, or the native default); a batch is
    /// fanned out to all of them. 0 in <see cref="PSpawnMode.Fallback"/> mode and after <see cref="Dispose"/>.
    /// </summary>
    public unsafe int ProxyCount
    {
        get
        {
            bool added = false;
            try
            {
                _handle.DangerousAddRef(ref added);
                return Interop.PSpawnCore.ContextProxyCount(_handle.Pointer);
            }
            catch (ObjectDisposedException)
            {
                return 0;
            }
            finally
            {
                if (added)
                {
                    _handle.DangerousRelease();
                }
            }
        }
    }

    /// <summary>The version of the native core (libpspawn.so), "MAJOR.MINOR.PATCH".</summary>
    public static unsafe string NativeVersion
    {
        get
        {
            NativeLibraryResolver.EnsureRegistered();
            return Marshal.PtrToStringUTF8((IntPtr)Interop.PSpawnCore.Version()) ?? string.Empty;
        }
    }

    internal ILogger Logger { get; }

    internal ContextHandle Handle => _handle;

    /// <summary>Starts a proxy for the executable at <paramref name="path"/>.</summary>
    /// <param name="path">The executable (a file path, not a command name: PATH is not searched). Relative paths
    /// are resolved against the current directory now.</param>
    /// <param name="core">A CPU to pin the proxy, and so every child, to; -1 (the default) pins nothing.</param>
    /// <param name="options">Options; null takes <see cref="PSpawnContextOptions.Default"/>.</param>
    /// <returns>The context. Dispose it to stop the proxy.</returns>
    /// <exception cref="FileNotFoundException">The executable does not exist (a <see cref="PSpawnFileNotFoundException"/>).</exception>
    /// <exception cref="UnauthorizedAccessException">It is not a regular file or not executable by this user (a <see cref="PSpawnAccessDeniedException"/>).</exception>
    /// <exception cref="PSpawnUnsupportedExecutableException">A zygote cannot serve it (statically linked, set-user-ID or set-group-ID,
    /// threads started by its constructors, its own entry point instead of <c>__libc_start_main</c>, not an ELF executable) and <see cref="PSpawnContextOptions.FallbackPolicy"/> is
    /// <see cref="FallbackPolicy.Throw"/> (or the file is not an ELF executable).</exception>
    /// <exception cref="PSpawnProxyException">The proxy died or timed out during start-up.</exception>
    /// <exception cref="PSpawnException">Another failure of the native core (every exception carries <see cref="IPSpawnError.Errno"/> and <see cref="IPSpawnError.Path"/>).</exception>
    public static unsafe PSpawnContext Create(string path, int core = -1, PSpawnContextOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfLessThan(core, -1);
        options ??= PSpawnContextOptions.Default;
        options.Validate();
        ILogger logger = options.Logger ?? NullLogger.Instance;
        string fullPath = System.IO.Path.GetFullPath(path);

        NativeLibraryResolver.EnsureRegistered();
        string? proxyLibrary = options.ProxyLibraryPath ?? NativeLibraryResolver.ProxyLibraryPath;

        var proxyEnvironment = NativeStringArray.ToEnvironmentBlock(
            options.ProxyEnvironment ?? NativeStringArray.CurrentEnvironment(), nameof(options));

        var context = (Interop.PSpawnCore.Context*)NativeMemory.AllocZeroed((nuint)sizeof(Interop.PSpawnCore.Context));
        int result;
        int errno;
        byte* nativePath = null;
        byte* nativeProxyLibrary = null;
        try
        {
            nativePath = NativeStringArray.AllocUtf8(fullPath);
            nativeProxyLibrary = proxyLibrary is null ? null : NativeStringArray.AllocUtf8(proxyLibrary);
            using NativeStringArray proxyEnvp = NativeStringArray.Create(proxyEnvironment, nameof(options));

            Interop.PSpawnCore.ContextAttr attr;
            _ = Interop.PSpawnCore.ContextAttrInit(&attr);
            attr.Core = core;
            attr.StartupTimeoutMs = PSpawnContextOptions.ToMilliseconds(options.StartupTimeout);
            attr.RequestTimeoutMs = PSpawnContextOptions.ToMilliseconds(options.RequestTimeout);
            attr.MaxRestarts = options.MaxRestarts;
            attr.Proxies = options.ProxyCount ?? 0;
            if (options.SharedBufferSize is int bufferSize)
            {
                attr.BufferSize = (nuint)bufferSize;
            }

            if (options.FallbackPolicy == FallbackPolicy.PosixSpawn)
            {
                attr.Flags |= Interop.PSpawnCore.CtxFallback;
            }

            if (options.ForceRelayMode)
            {
                attr.Flags |= Interop.PSpawnCore.CtxRelay;
            }

            if (!options.BindNow)
            {
                attr.Flags |= Interop.PSpawnCore.CtxNoBindNow;
            }

            attr.ProxyLibrary = nativeProxyLibrary;
            attr.ProxyEnvp = proxyEnvp.Pointer;

            // On the dedicated creation thread: the children's parent thread must outlive them (see ContextCreationThread).
            nint contextAddress = (nint)context;
            nint pathAddress = (nint)nativePath;
            nint attrAddress = (nint)(&attr);
            (result, errno) = ContextCreationThread.Invoke(() =>
            {
                int r = Interop.PSpawnCore.ContextCreateEx(
                    (Interop.PSpawnCore.Context*)contextAddress, (byte*)pathAddress, (Interop.PSpawnCore.ContextAttr*)attrAddress);
                return (r, r != 0 ? Marshal.GetLastPInvokeError() : 0);
            });
        }
        catch
        {
            NativeMemory.Free(context);
            throw;
        }
        finally
        {
            if (nativePath is not null)
            {
                NativeStringArray.FreeUtf8(nativePath);
            }

            if (nativeProxyLibrary is not null)
            {
                NativeStringArray.FreeUtf8(nativeProxyLibrary);
            }
        }

        if (result != 0)
        {
            NativeMemory.Free(context);
            Errno e = ErrorMapper.ToErrno(errno);
            Exception exception = ErrorMapper.ForCreate(e, fullPath, proxyLibrary, options.StartupTimeout);
            Log.ContextCreateFailed(logger, fullPath, ErrorMapper.Describe(e), exception);
            throw exception;
        }

        var handle = new ContextHandle(context);
        int nativeMode = Interop.PSpawnCore.ContextMode(context);
        var mode = nativeMode switch
        {
            Interop.PSpawnCore.ModeRelay => PSpawnMode.Relay,
            Interop.PSpawnCore.ModeFallback => PSpawnMode.Fallback,
            _ => PSpawnMode.Zygote,
        };
        Errno? fallbackReason = null;
        if (mode == PSpawnMode.Fallback)
        {
            Errno reason = ErrorMapper.ToErrno(Interop.PSpawnCore.ContextFallbackReason(context));
            fallbackReason = reason;
            Log.FallbackToPosixSpawn(logger, fullPath, DescribeFallbackReason(reason));
        }
        else
        {
            int proxyPid = Interop.PSpawnCore.ContextProxyPid(context);
            Log.ProxyStarted(logger, fullPath, proxyPid, mode);
        }

        return new PSpawnContext(handle, fullPath, core, options, logger, mode, fallbackReason);
    }

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
    public const int MaxSpawnCount = 1 << 20;

    private unsafe SpawnedProcess[] SpawnCore(int count, IReadOnlyList<string> arguments, SpawnOptions? options)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        options ??= SpawnOptions.Default;
        if (count == 0)
        {
            return [];
        }

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
        bool[] piped = PipedStreams(options);
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
            _handle.DangerousAddRef(ref added);
            if (fitting > 0)
            {
                fixed (int* pidsPointer = pids)
                fixed (int* errorsPointer = errors)
                fixed (int* stdioPointer = stdioFds)
                {
                    started = attributes is null
                        ? Interop.PSpawnCore.SpawnNE(pidsPointer, errorsPointer, _handle.Pointer, fitting, nativeArgv.Pointer, nativeEnvp.Pointer)
                        : Interop.PSpawnCore.SpawnNX(pidsPointer, errorsPointer, stdioPointer, _handle.Pointer, fitting, nativeArgv.Pointer, nativeEnvp.Pointer, attributes.Pointer);
                    errno = started < fitting ? Marshal.GetLastPInvokeError() : 0;
                }
            }

            if (fitting < count && errno == 0)
            {
                errno = Interop.Sys.EMFILE;
            }

            if (Mode != PSpawnMode.Fallback)
            {
                NoteRestarts(Interop.PSpawnCore.ContextRestarts(_handle.Pointer));
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
            if (Mode == PSpawnMode.Relay && startedCount > 0)
            {
                lease = new ContextLease(this, _handle, startedCount);
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
                _handle.DangerousRelease();
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

    /// <summary>
    /// How many of <paramref name="count"/> piped instances fit above the descriptor reserve: each keeps one
    /// descriptor per piped stream here, and the native core briefly holds both ends of up to 64 instances' pipes.
    /// </summary>
    private static int FittingPipedInstances(int count, bool[] piped)
    {
        int perInstance = (piped[0] ? 1 : 0) + (piped[1] ? 1 : 0) + (piped[2] ? 1 : 0);
        const int InFlight = 64; // PSP_MAX_PIPED_BATCH: instances whose pipes are made and sent at once
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

    private static string DescribeFallbackReason(Errno reason) => reason switch
    {
        Errno.EOPNOTSUPP => "statically linked (ENOTSUP)",
        Errno.EPERM => "set-user-ID or set-group-ID (EPERM)",
        Errno.EDEADLK => "its constructors start threads (EDEADLK)",
        Errno.ENOSYS => "it does not start through __libc_start_main (ENOSYS)",
        Errno.ETIMEDOUT => "the proxy did not complete start-up in time (ETIMEDOUT)",
        Errno.EPIPE => "the proxy died during start-up (EPIPE)",
        _ => ErrorMapper.Describe(reason),
    };

    /// <summary>Logs a restart the native core did during a spawn (once per increase of the count).</summary>
    private unsafe void NoteRestarts(int restarts)
    {
        int seen = Volatile.Read(ref _restarts);
        while (restarts > seen)
        {
            int previous = Interlocked.CompareExchange(ref _restarts, restarts, seen);
            if (previous == seen)
            {
                int proxyPid = Interop.PSpawnCore.ContextProxyPid(_handle.Pointer);
                Log.ProxyRestarted(Logger, Path, proxyPid, restarts, Options.MaxRestarts);
                return;
            }

            seen = previous;
        }
    }

    internal void RelayChildReaped() => Interlocked.Decrement(ref _runningRelayChildren);

    internal void RelayChildrenStarted(int children) => Interlocked.Add(ref _runningRelayChildren, children);

    /// <summary>
    /// Stops and reaps the proxy once no call on this context is in flight. Children already spawned keep
    /// running and stay waitable; in <see cref="PSpawnMode.Relay"/> mode the proxy holds their exit statuses,
    /// so it is stopped only after the last of them has exited and been reaped.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        int? proxyPid = null;
        if (Mode != PSpawnMode.Fallback)
        {
            bool added = false;
            try
            {
                _handle.DangerousAddRef(ref added);
                unsafe
                {
                    int pid = Interop.PSpawnCore.ContextProxyPid(_handle.Pointer);
                    proxyPid = pid > 0 ? pid : null;
                }
            }
            finally
            {
                if (added)
                {
                    _handle.DangerousRelease();
                }
            }
        }

        _handle.Dispose();
        if (Mode == PSpawnMode.Fallback)
        {
            Log.FallbackContextDisposed(Logger, Path);
        }
        else if (_handle.Destroyed)
        {
            Log.ProxyStopped(Logger, Path, proxyPid ?? -1);
        }
        else
        {
            int running = Volatile.Read(ref _runningRelayChildren);
            Log.ProxyStopDeferred(Logger, Path, proxyPid ?? -1, running);
        }
    }

    /// <summary>Disposes the context (see <see cref="Dispose"/>); stopping the proxy takes milliseconds, so this completes synchronously.</summary>
    /// <returns>A completed task.</returns>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
