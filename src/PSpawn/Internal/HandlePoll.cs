using System.Runtime.InteropServices;

namespace PSpawn;

/// <summary>poll(2) on the descriptor of a <see cref="SafeHandle"/>, kept alive for the duration of the call.</summary>
internal static class HandlePoll
{
    /// <summary>
    /// Waits until <paramref name="events"/> are ready on <paramref name="handle"/> or <paramref name="timeoutMs"/>
    /// passes (-1: no limit), retrying on EINTR. True when ready, or in error (the next operation reports it).
    /// </summary>
    /// <exception cref="ObjectDisposedException">The handle has been closed.</exception>
    public static unsafe bool Wait(SafeHandle handle, short events, int timeoutMs)
    {
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            var pollFd = new Interop.Sys.PollFd { Fd = (int)handle.DangerousGetHandle(), Events = events };
            int result;
            do
            {
                result = Interop.Sys.Poll(&pollFd, 1, timeoutMs);
            }
            while (result < 0 && Marshal.GetLastPInvokeError() == Interop.Sys.EINTR);

            return result != 0;
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
