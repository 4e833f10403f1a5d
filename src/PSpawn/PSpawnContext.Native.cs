using Mono.Unix.Native;

namespace PSpawn;

/// <summary>The native context (libpspawn): created at <see cref="Create"/>, or on first need in <see cref="PSpawnMode.Kernel"/> mode.</summary>
public sealed partial class PSpawnContext
{
    /// <summary>
    /// The native context, created now if the context has none yet (a <see cref="PSpawnMode.Kernel"/> context meeting a
    /// request the kernel cannot serve): the first such request pays the proxies' start-up and gets its errors.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The context has been disposed.</exception>
    private NativeBackend EnsureNative()
    {
        NativeBackend? native = Volatile.Read(ref _native);
        if (native is not null)
        {
            return native;
        }

        lock (_nativeGate)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            native = _native;
            if (native is null)
            {
                native = CreateNative(Path, Core, Options, Logger);
                Volatile.Write(ref _native, native);
                LogNativeStarted();
            }

            return native;
        }
    }

    /// <summary>The mode of the native context serving a request (created if needed).</summary>
    private static SpawnBackend BackendOf(NativeBackend native) => native.Mode switch
    {
        PSpawnMode.Relay => SpawnBackend.Relay,
        PSpawnMode.Fallback => SpawnBackend.Exec,
        _ => SpawnBackend.Zygote,
    };
}

/// <summary>A created native context: its handle, its mode and, in fallback mode, why.</summary>
internal sealed class NativeBackend
{
    public NativeBackend(ContextHandle handle, PSpawnMode mode, Errno? fallbackReason)
    {
        Handle = handle;
        Mode = mode;
        FallbackReason = fallbackReason;
    }

    public ContextHandle Handle { get; }

    public PSpawnMode Mode { get; }

    public Errno? FallbackReason { get; }
}
