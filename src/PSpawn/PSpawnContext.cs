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
    private readonly Lock _nativeGate = new();
    private readonly KernelDetection? _kernel;
    private NativeBackend? _native;
    private int _disposed;
    private int _runningRelayChildren;
    private int _restarts;

    private PSpawnContext(NativeBackend? native, KernelDetection? kernel, string path, int core, PSpawnContextOptions options, ILogger logger)
    {
        _native = native;
        _kernel = kernel;
        Path = path;
        Core = core;
        Options = options;
        Logger = logger;
    }

    /// <summary>The full path of the executable this context spawns.</summary>
    public string Path { get; }

    /// <summary>The CPU the proxy (and so every child) is pinned to, or -1.</summary>
    public int Core { get; }

    /// <summary>The options the context was created with.</summary>
    public PSpawnContextOptions Options { get; }

    /// <summary>
    /// How this context spawns: <see cref="PSpawnMode.Kernel"/> when the kernel's system calls serve it
    /// (<see cref="PSpawnContextOptions.KernelPath"/>; the requests they cannot express go to a zygote created on first
    /// need, and <see cref="SpawnBatchResult.Backend"/> says which served a batch), else the zygote's mode.
    /// </summary>
    public PSpawnMode Mode => _kernel is not null ? PSpawnMode.Kernel : _native!.Mode;

    /// <summary>
    /// In <see cref="PSpawnMode.Fallback"/> mode, the error that prevented a zygote (<c>ENOTSUP</c>: statically linked,
    /// <c>EPERM</c>: set-user-ID or set-group-ID, <c>EDEADLK</c>: threads started by constructors, <c>ENOSYS</c>: no
    /// <c>__libc_start_main</c> (its own entry point), <c>ETIMEDOUT</c> or
    /// <c>EPIPE</c>: the proxy did not start); in <see cref="PSpawnMode.Kernel"/> mode, that of the zygote created for
    /// the requests the kernel could not serve, if it fell back; otherwise null.
    /// </summary>
    public Errno? FallbackReason => Volatile.Read(ref _native)?.FallbackReason;

    /// <summary>The proxy's process ID; null in <see cref="PSpawnMode.Fallback"/> mode, once the proxy has failed, or after <see cref="Dispose"/>.</summary>
    public unsafe int? ProxyProcessId
    {
        get
        {
            if (Volatile.Read(ref _disposed) != 0)
            {
                return null;
            }

            ContextHandle? handle = Volatile.Read(ref _native)?.Handle;
            if (handle is null)
            {
                return null;
            }

            bool added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                int pid = Interop.PSpawnCore.ContextProxyPid(handle.Pointer);
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
                    handle.DangerousRelease();
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
            ContextHandle? handle = Volatile.Read(ref _native)?.Handle;
            if (handle is null)
            {
                return Volatile.Read(ref _restarts);
            }

            bool added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                return Math.Max(Volatile.Read(ref _restarts), Interop.PSpawnCore.ContextRestarts(handle.Pointer));
            }
            catch (ObjectDisposedException)
            {
                return Volatile.Read(ref _restarts);
            }
            finally
            {
                if (added)
                {
                    handle.DangerousRelease();
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
            ContextHandle? handle = Volatile.Read(ref _native)?.Handle;
            if (handle is null)
            {
                return 0;
            }

            bool added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                return Interop.PSpawnCore.ContextProxyCount(handle.Pointer);
            }
            catch (ObjectDisposedException)
            {
                return 0;
            }
            finally
            {
                if (added)
                {
                    handle.DangerousRelease();
                }
            }
        }
    }

    /// <summary>How many instances the warm pool's parked children have served so far (the rest were forked); 0 without a pool and after <see cref="Dispose"/>.</summary>
    public unsafe long PoolClaimCount =>
        ReadNative(handle => Math.Max(0, (long)Interop.PSpawnCore.ContextPoolClaims(handle.Pointer)), 0L);

    /// <summary>
    /// The process ids of the warm pool's children parked right now, over all proxies (<see cref="PSpawnContextOptions.WarmPool"/>):
    /// children of this process that have not reached <c>main</c> and are never reported as spawned until a spawn claims them.
    /// Parked children that died are reaped by this call, as by every spawn. Empty without a pool and after <see cref="Dispose"/>.
    /// </summary>
    public unsafe IReadOnlyList<int> ParkedProcessIds => ReadNative<IReadOnlyList<int>>(
        handle =>
        {
            int[] pids = new int[Interop.PSpawnCore.PoolMax * Math.Max(1, Interop.PSpawnCore.ContextProxyCount(handle.Pointer))];
            fixed (int* p = pids)
            {
                int n = Interop.PSpawnCore.ContextPoolPids(handle.Pointer, p, pids.Length);
                return n <= 0 ? Array.Empty<int>() : pids.AsSpan(0, Math.Min(n, pids.Length)).ToArray();
            }
        },
        Array.Empty<int>());

    /// <summary>
    /// Bytes of library replicas written for this context (<see cref="PSpawnContextOptions.NumaReplicas"/>), over every node: their
    /// disk use under <c>$TMPDIR</c> (memory, where that is a tmpfs) and at most their page cache. 0 without replicas or after
    /// <see cref="Dispose"/>.
    /// </summary>
    public unsafe long ReplicaBytes =>
        ReadNative(handle => Math.Max(0, Interop.PSpawnCore.ContextReplicaBytes(handle.Pointer)), 0L);

    /// <summary>
    /// The NUMA node each proxy is bound to, in creation order (see <see cref="PSpawnContextOptions.Numa"/>); -1 for a proxy bound
    /// to no node (<see cref="NumaPlacement.Off"/>, or a single-node machine under <see cref="NumaPlacement.Auto"/>). Empty in
    /// <see cref="PSpawnMode.Fallback"/> mode and after <see cref="Dispose"/>.
    /// </summary>
    public unsafe IReadOnlyList<int> ProxyNodes
    {
        get
        {
            ContextHandle? handle = Volatile.Read(ref _native)?.Handle;
            if (handle is null)
            {
                return [];
            }

            bool added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                int count = Interop.PSpawnCore.ContextProxyNodes(handle.Pointer, null, 0);
                if (count <= 0)
                {
                    return [];
                }

                int[] nodes = new int[count];
                fixed (int* pointer = nodes)
                {
                    count = Interop.PSpawnCore.ContextProxyNodes(handle.Pointer, pointer, nodes.Length);
                }

                return count <= 0 ? [] : Array.AsReadOnly(nodes[..Math.Min(count, nodes.Length)]);
            }
            catch (ObjectDisposedException)
            {
                return [];
            }
            finally
            {
                if (added)
                {
                    handle.DangerousRelease();
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

    /// <summary>The native context, or null while none has been created (<see cref="PSpawnMode.Kernel"/> mode).</summary>
    internal ContextHandle? Handle => Volatile.Read(ref _native)?.Handle;

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
    /// <exception cref="PSpawnKernelPathException"><see cref="PSpawnContextOptions.KernelPath"/> is <see cref="KernelPath.Require"/> and
    /// the kernel has no pspawn/ipspawn system calls (<c>ENOSYS</c>), or an option of the context needs a zygote
    /// (<see cref="PSpawnContextOptions.Cgroup"/>, <see cref="PSpawnContextOptions.ForceRelayMode"/>; <c>EOPNOTSUPP</c>).</exception>
    public static PSpawnContext Create(string path, int core = -1, PSpawnContextOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfLessThan(core, -1);
        options ??= PSpawnContextOptions.Default;
        options.Validate();
        ILogger logger = options.Logger ?? NullLogger.Instance;
        string fullPath = System.IO.Path.GetFullPath(path);

        if (ChooseKernel(fullPath, options, logger) is KernelDetection kernel)
        {
            CheckExecutable(fullPath, logger);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(core, Interop.PSpawnCore.CpuSetSize);
            Log.KernelPathUsed(logger, fullPath, kernel.AbiVersion, kernel.PSpawnNumber, kernel.IPSpawnNumber);
            return new PSpawnContext(null, kernel, fullPath, core, options, logger);
        }

        var created = new PSpawnContext(CreateNative(fullPath, core, options, logger), null, fullPath, core, options, logger);
        created.LogNativeStarted();
        return created;
    }

    /// <summary>Creates the native context (starts the proxies), or throws what the native core reported.</summary>
    private static unsafe NativeBackend CreateNative(string fullPath, int core, PSpawnContextOptions options, ILogger logger)
    {

        NativeLibraryResolver.EnsureRegistered();
        if (options.Cgroup is string cgroup)
        {
            NativeSpawnAttributes.ProbeCgroup(cgroup, fullPath);
        }

        string? proxyLibrary = options.ProxyLibraryPath ?? NativeLibraryResolver.ProxyLibraryPath;

        var proxyEnvironment = NativeStringArray.ToEnvironmentBlock(
            options.ProxyEnvironment ?? NativeStringArray.CurrentEnvironment(), nameof(options));

        var context = (Interop.PSpawnCore.Context*)NativeMemory.AllocZeroed((nuint)sizeof(Interop.PSpawnCore.Context));
        int result;
        int errno;
        byte* nativePath = null;
        byte* nativeProxyLibrary = null;
        byte* nativeCgroup = null;
        try
        {
            nativePath = NativeStringArray.AllocUtf8(fullPath);
            nativeProxyLibrary = proxyLibrary is null ? null : NativeStringArray.AllocUtf8(proxyLibrary);
            nativeCgroup = options.Cgroup is null ? null : NativeStringArray.AllocUtf8(options.Cgroup);
            using NativeStringArray proxyEnvp = NativeStringArray.Create(proxyEnvironment, nameof(options));

            Interop.PSpawnCore.ContextAttr attr;
            _ = Interop.PSpawnCore.ContextAttrInit(&attr);
            attr.Core = core;
            attr.StartupTimeoutMs = PSpawnContextOptions.ToMilliseconds(options.StartupTimeout);
            attr.RequestTimeoutMs = PSpawnContextOptions.ToMilliseconds(options.RequestTimeout);
            attr.MaxRestarts = options.MaxRestarts;
            attr.Proxies = options.ProxyCount ?? 0;
            attr.Numa = options.NativeNuma;
            attr.NumaMemory = options.NativeNumaMemory;
            attr.NumaSpread = options.NativeNumaSpread;
            attr.Cgroup = nativeCgroup;
            attr.Pool = options.WarmPool?.Size ?? 0;
            attr.PoolIdleMs = options.WarmPool?.NativeIdleMs ?? 0;
            // The native core's own kernel backend (AUTO: it replaces the exec backend in fallback mode). Require is decided
            // here, never passed down (a native context always has its zygote or exec backend).
            attr.Kernel = options.KernelPath == KernelPath.Forbid ? Interop.PSpawnCore.KernelForbid : Interop.PSpawnCore.KernelAuto;
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

            if (options.DeferredForkPoint)
            {
                attr.Flags |= Interop.PSpawnCore.CtxDeferred;
            }

            if (options.NumaReplicas)
            {
                attr.Flags |= Interop.PSpawnCore.CtxNumaReplicas;
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

            if (nativeCgroup is not null)
            {
                NativeStringArray.FreeUtf8(nativeCgroup);
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

        return new NativeBackend(handle, mode, fallbackReason);
    }

    /// <summary>Logs the proxies of the native context just created.</summary>
    private unsafe void LogNativeStarted()
    {
        NativeBackend native = _native!;
        if (native.Mode != PSpawnMode.Fallback && Logger.IsEnabled(LogLevel.Information))
        {
            int proxyPid = Interop.PSpawnCore.ContextProxyPid(native.Handle.Pointer);
            string nodes = string.Join(',', ProxyNodes);
            string topology = DescribeTopology();
            Log.ProxyStarted(Logger, Path, proxyPid, native.Mode, ProxyCount, nodes, topology);
        }
    }

    /// <summary>The NUMA nodes this process may use, for the log ("node 0: 2 CPUs [0,1], ..."); never throws.</summary>
    private static string DescribeTopology()
    {
        try
        {
            return string.Join("; ", PSpawnTopology.Read());
        }
        catch (PSpawnException e)
        {
            return $"unknown ({e.Errno})";
        }
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
                int proxyPid = Interop.PSpawnCore.ContextProxyPid(_native!.Handle.Pointer);
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

        NativeBackend? native;
        lock (_nativeGate)
        {
            native = _native; // none is created after this (EnsureNative checks _disposed under the lock)
        }

        if (native is null)
        {
            Log.KernelContextDisposed(Logger, Path);
            return;
        }

        ContextHandle handle = native.Handle;
        int? proxyPid = null;
        if (native.Mode != PSpawnMode.Fallback)
        {
            bool added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                unsafe
                {
                    int pid = Interop.PSpawnCore.ContextProxyPid(handle.Pointer);
                    proxyPid = pid > 0 ? pid : null;
                }
            }
            finally
            {
                if (added)
                {
                    handle.DangerousRelease();
                }
            }
        }

        handle.Dispose();
        if (native.Mode == PSpawnMode.Fallback)
        {
            Log.FallbackContextDisposed(Logger, Path);
        }
        else if (handle.Destroyed)
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
