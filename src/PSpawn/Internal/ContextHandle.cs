using System.Runtime.InteropServices;

namespace PSpawn;

/// <summary>
/// Owns a pspawn_context_t. SafeHandle reference counting makes pspawn_context_destroy wait until no call on the
/// context is in flight (the native core forbids destroy racing with other calls), and lets relayed children
/// keep the proxy alive until their exit status has been collected.
/// </summary>
internal sealed unsafe class ContextHandle : SafeHandle
{
    public ContextHandle(Interop.PSpawnCore.Context* context)
        : base(IntPtr.Zero, ownsHandle: true)
    {
        SetHandle((IntPtr)context);
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>True once pspawn_context_destroy has run.</summary>
    public bool Destroyed { get; private set; }

    /// <summary>The context pointer; only valid between DangerousAddRef and DangerousRelease.</summary>
    public Interop.PSpawnCore.Context* Pointer => (Interop.PSpawnCore.Context*)handle;

    protected override bool ReleaseHandle()
    {
        var context = (Interop.PSpawnCore.Context*)handle;
        Interop.PSpawnCore.ContextDestroy(context);
        NativeMemory.Free(context);
        Destroyed = true;
        return true;
    }
}

/// <summary>
/// One reference on a <see cref="ContextHandle"/> shared by the relay-mode children of one spawn request:
/// released when the last of them has been reaped, so that destroying the context never loses an exit status.
/// </summary>
internal sealed class ContextLease
{
    private readonly PSpawnContext _owner;
    private int _remaining;

    /// <summary>Takes over a reference the caller already holds (from DangerousAddRef).</summary>
    public ContextLease(PSpawnContext owner, ContextHandle handle, int children)
    {
        _owner = owner;
        Handle = handle;
        _remaining = children;
    }

    public ContextHandle Handle { get; }

    /// <summary>Counts <paramref name="children"/> more children (of a launch session that holds the lease meanwhile).</summary>
    public void AddChildren(int children)
    {
        _owner.RelayChildrenStarted(children);
        Interlocked.Add(ref _remaining, children);
    }

    /// <summary>Gives up the share of a holder that is not a child (a launch session, once it is done).</summary>
    public void ReleaseHolder()
    {
        if (Interlocked.Decrement(ref _remaining) == 0)
        {
            Handle.DangerousRelease();
        }
    }

    public void Release()
    {
        _owner.RelayChildReaped();
        if (Interlocked.Decrement(ref _remaining) == 0)
        {
            Handle.DangerousRelease();
        }
    }
}

/// <summary>A pidfd (pidfd_open), closed on release.</summary>
internal sealed class PidFdHandle : SafeHandle
{
    public PidFdHandle(int fd)
        : base(new IntPtr(-1), ownsHandle: true)
    {
        SetHandle(new IntPtr(fd));
    }

    public override bool IsInvalid => handle.ToInt64() < 0;

    public int Fd => (int)handle;

    protected override bool ReleaseHandle() => Interop.Sys.Close((int)handle) == 0;
}
