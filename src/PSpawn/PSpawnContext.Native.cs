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

    /// <summary>Reads something of the native context under a reference on its handle; <paramref name="otherwise"/> when
    /// there is none yet (a kernel context) or it is disposed.</summary>
    private T ReadNative<T>(Func<ContextHandle, T> read, T otherwise)
    {
        ContextHandle? handle = Volatile.Read(ref _native)?.Handle;
        if (handle is null)
        {
            return otherwise;
        }

        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return read(handle);
        }
        catch (ObjectDisposedException)
        {
            return otherwise;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    /// <summary>The backend of the native context that serves a request with these attributes.</summary>
    private static SpawnBackend BackendOf(NativeBackend native, NativeSpawnAttributes? attributes) => native.Mode switch
    {
        PSpawnMode.Relay => SpawnBackend.Relay,
        PSpawnMode.Fallback => ServedByNativeKernel(native, attributes) ? SpawnBackend.Kernel : SpawnBackend.Exec,
        _ => SpawnBackend.Zygote,
    };

    /// <summary>Whether the native core's kernel backend takes such a request (fallback mode on a kernel with the calls).</summary>
    private static unsafe bool ServedByNativeKernel(NativeBackend native, NativeSpawnAttributes? attributes) =>
        Interop.PSpawnCore.RequestMode(native.Handle.Pointer, attributes?.Pointer ?? IntPtr.Zero) == Interop.PSpawnCore.ModeKernel;
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
