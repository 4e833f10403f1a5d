using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace PSpawn;

/// <summary>
/// This process's end of a pipe to a child. The descriptor is made non-blocking; an asynchronous read or write
/// that would block arms a one-shot readiness wait on the shared epoll thread (<see cref="ExitWatcher"/>), so no
/// thread is blocked per stream and a child that stops writing (or reading) never stalls the others.
/// Synchronous calls wait with poll(2) on the calling thread. Disposing closes the descriptor.
/// </summary>
internal sealed class PipeEndStream : Stream
{
    private readonly SafeFileHandle _handle;
    private readonly bool _reading;
    private readonly ulong _key;
    private readonly Lock _gate = new();
    private TaskCompletionSource? _ready;
    private bool _inEpollSet;
    private int _disposed;

    /// <summary>Takes ownership of <paramref name="fd"/>.</summary>
    internal PipeEndStream(int fd, bool reading)
    {
        _handle = new SafeFileHandle(fd, ownsHandle: true);
        _reading = reading;
        int flags = Interop.Sys.Fcntl(fd, Interop.Sys.F_GETFL, 0);
        if (flags >= 0)
        {
            _ = Interop.Sys.Fcntl(fd, Interop.Sys.F_SETFL, flags | Interop.Sys.O_NONBLOCK);
        }

        _key = ExitWatcher.Instance?.NextKey() ?? 0;
    }

    public override bool CanRead => _reading && Volatile.Read(ref _disposed) == 0;

    public override bool CanWrite => !_reading && Volatile.Read(ref _disposed) == 0;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException("A pipe has no length.");

    public override long Position
    {
        get => throw new NotSupportedException("A pipe has no position.");
        set => throw new NotSupportedException("A pipe has no position.");
    }

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) =>
        cancellationToken.IsCancellationRequested ? Task.FromCanceled(cancellationToken) : Task.CompletedTask;

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("A pipe cannot seek.");

    public override void SetLength(long value) => throw new NotSupportedException("A pipe has no length.");

    public override int Read(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        return Read(buffer.AsSpan(offset, count));
    }

    public override int Read(Span<byte> buffer)
    {
        EnsureCan(reading: true);
        while (true)
        {
            nint n = TryTransfer(buffer, out int errno);
            if (n >= 0)
            {
                return (int)n;
            }

            PollOrThrow(errno, Interop.Sys.POLLIN);
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        ValidateBufferArguments(buffer, offset, count);
        return ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        EnsureCan(reading: true);
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<int>(cancellationToken);
        }

        nint n = TryTransfer(buffer.Span, out int errno);
        if (n >= 0)
        {
            return new ValueTask<int>((int)n);
        }

        return errno == Interop.Sys.EAGAIN ? ReadSlowAsync(buffer, cancellationToken) : ValueTask.FromException<int>(Error(errno));
    }

    public override void Write(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        Write(buffer.AsSpan(offset, count));
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        EnsureCan(reading: false);
        while (!buffer.IsEmpty)
        {
            nint n = TryTransfer(MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(buffer), buffer.Length), out int errno, write: true);
            if (n >= 0)
            {
                buffer = buffer[(int)n..];
                continue;
            }

            PollOrThrow(errno, Interop.Sys.POLLOUT);
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        ValidateBufferArguments(buffer, offset, count);
        return WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        EnsureCan(reading: false);
        while (!buffer.IsEmpty)
        {
            cancellationToken.ThrowIfCancellationRequested();
            nint n = TryWrite(buffer, out int errno);
            if (n >= 0)
            {
                buffer = buffer[(int)n..];
                continue;
            }

            if (errno != Interop.Sys.EAGAIN)
            {
                throw Error(errno);
            }

            await WaitReadyAsync(Interop.Sys.EPOLLOUT, Interop.Sys.POLLOUT, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Called by the epoll thread when the armed wait fired.</summary>
    internal void OnReady()
    {
        TaskCompletionSource? ready;
        lock (_gate)
        {
            ready = _ready;
            _ready = null;
        }

        ready?.TrySetResult();
    }

    protected override void Dispose(bool disposing)
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            TaskCompletionSource? ready;
            lock (_gate)
            {
                if (_inEpollSet && ExitWatcher.Instance is ExitWatcher watcher)
                {
                    bool added = false;
                    try
                    {
                        _handle.DangerousAddRef(ref added);
                        watcher.Disarm((int)_handle.DangerousGetHandle(), _key);
                    }
                    finally
                    {
                        if (added)
                        {
                            _handle.DangerousRelease();
                        }
                    }
                }

                ready = _ready;
                _ready = null;
            }

            ready?.TrySetException(new ObjectDisposedException(GetType().Name, "The pipe was closed."));
            _handle.Dispose();
        }

        base.Dispose(disposing);
    }

    private async ValueTask<int> ReadSlowAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            await WaitReadyAsync(Interop.Sys.EPOLLIN, Interop.Sys.POLLIN, cancellationToken).ConfigureAwait(false);
            nint n = TryTransfer(buffer.Span, out int errno);
            if (n >= 0)
            {
                return (int)n;
            }

            if (errno != Interop.Sys.EAGAIN)
            {
                throw Error(errno);
            }
        }
    }

    private unsafe nint TryWrite(ReadOnlyMemory<byte> buffer, out int errno)
    {
        using System.Buffers.MemoryHandle pin = buffer.Pin();
        return TryTransfer(new Span<byte>(pin.Pointer, buffer.Length), out errno, write: true);
    }

    /// <summary>One read(2) or write(2), retried on EINTR: the count, or -1 with errno.</summary>
    private unsafe nint TryTransfer(Span<byte> buffer, out int errno, bool write = false)
    {
        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            int fd = (int)_handle.DangerousGetHandle();
            fixed (byte* pointer = buffer)
            {
                nint n;
                do
                {
                    n = write
                        ? Interop.Sys.Write(fd, pointer, (nuint)buffer.Length)
                        : Interop.Sys.Read(fd, pointer, (nuint)buffer.Length);
                    errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
                }
                while (n < 0 && errno == Interop.Sys.EINTR);

                return n;
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

    /// <summary>Waits with poll(2) when <paramref name="errno"/> is EAGAIN; throws otherwise.</summary>
    private void PollOrThrow(int errno, short events)
    {
        if (errno != Interop.Sys.EAGAIN)
        {
            throw Error(errno);
        }

        Poll(events, -1);
    }

    /// <summary>poll(2) on the descriptor; true when it is ready (or in error: the next call reports it).</summary>
    private bool Poll(short events, int timeoutMs) => HandlePoll.Wait(_handle, events, timeoutMs);

    private async Task WaitReadyAsync(uint epollEvents, short pollEvents, CancellationToken cancellationToken)
    {
        ExitWatcher? watcher = ExitWatcher.Instance;
        if (watcher is null)
        {
            // No epoll (never seen on Linux): poll briefly, then yield.
            int delayMs = 1;
            while (!Poll(pollEvents, 0))
            {
                await Task.Delay(delayMs, cancellationToken).ConfigureAwait(false);
                delayMs = Math.Min(delayMs * 2, 50);
            }

            return;
        }

        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            _ready = ready;
            bool added = false;
            try
            {
                _handle.DangerousAddRef(ref added);
                if (!watcher.TryArm(this, (int)_handle.DangerousGetHandle(), epollEvents, _key, _inEpollSet, out int errno))
                {
                    _ready = null;
                    throw Error(errno);
                }

                _inEpollSet = true;
            }
            finally
            {
                if (added)
                {
                    _handle.DangerousRelease();
                }
            }
        }

        // A cancelled wait leaves the one-shot registration armed: when it fires it finds no waiter, which is harmless.
        using CancellationTokenRegistration registration = cancellationToken.UnsafeRegister(
            static (state, token) => ((TaskCompletionSource)state!).TrySetCanceled(token), ready);
        await ready.Task.ConfigureAwait(false);
    }

    private void EnsureCan(bool reading)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (reading != _reading)
        {
            throw new NotSupportedException(_reading ? "This pipe end is read-only." : "This pipe end is write-only.");
        }
    }

    private static IOException Error(int errno)
    {
        Mono.Unix.Native.Errno e = ErrorMapper.ToErrno(errno);
        return new IOException($"Pipe I/O failed: {ErrorMapper.Describe(e)}.", errno);
    }
}
