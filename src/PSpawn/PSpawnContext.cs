using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
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
