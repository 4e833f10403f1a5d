using System.Runtime.InteropServices;

namespace PSpawn;

internal static partial class Interop
{
    /// <summary>The few libc and Linux system calls the library needs (pidfds, epoll, waitpid, kill, close).</summary>
    internal static unsafe partial class Sys
    {
        private const string LibC = "libc";

        // errno values, flags and sizes of the C library are in SharedConstants.g.cs, written by the
        // build from the C library's own headers.

        // pidfd_open and pidfd_send_signal got glibc wrappers only in 2.36: call them through syscall(2)
        // so the library also runs on older distributions. syscall() is implemented in assembly and
        // reads its arguments from registers, so declaring a fixed argument list is safe.
        [LibraryImport(LibC, EntryPoint = "syscall", SetLastError = true)]
        internal static partial nint Syscall2(nint number, nint arg1, nint arg2);

        [LibraryImport(LibC, EntryPoint = "syscall", SetLastError = true)]
        private static partial nint Syscall4(nint number, nint arg1, nint arg2, nint arg3, nint arg4);

        /// <summary>pidfd_open(pid, 0): a close-on-exec file descriptor referring to the process.</summary>
        internal static int PidFdOpen(int pid) => (int)Syscall2(SYS_pidfd_open, pid, 0);

        /// <summary>pidfd_send_signal(pidfd, sig, NULL, 0).</summary>
        internal static int PidFdSendSignal(SafeHandle pidfd, int signal)
        {
            bool added = false;
            try
            {
                pidfd.DangerousAddRef(ref added);
                return (int)Syscall4(SYS_pidfd_send_signal, pidfd.DangerousGetHandle(), signal, 0, 0);
            }
            finally
            {
                if (added)
                {
                    pidfd.DangerousRelease();
                }
            }
        }

        /// <summary>struct pollfd.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct PollFd
        {
            public int Fd;
            public short Events;
            public short Revents;
        }

        [LibraryImport(LibC, EntryPoint = "fcntl", SetLastError = true)]
        internal static partial int Fcntl(int fd, int command, int argument);

        [LibraryImport(LibC, EntryPoint = "read", SetLastError = true)]
        internal static partial nint Read(int fd, byte* buffer, nuint count);

        [LibraryImport(LibC, EntryPoint = "write", SetLastError = true)]
        internal static partial nint Write(int fd, byte* buffer, nuint count);

        [LibraryImport(LibC, EntryPoint = "poll", SetLastError = true)]
        internal static partial int Poll(PollFd* fds, nuint count, int timeoutMs);

        [LibraryImport(LibC, EntryPoint = "getpgid", SetLastError = true)]
        internal static partial int GetPgid(int pid);

        [LibraryImport(LibC, EntryPoint = "getpgrp")]
        internal static partial int GetPgrp();

        [LibraryImport(LibC, EntryPoint = "close", SetLastError = true)]
        internal static partial int Close(int fd);

        [LibraryImport(LibC, EntryPoint = "kill", SetLastError = true)]
        internal static partial int Kill(int pid, int signal);

        [LibraryImport(LibC, EntryPoint = "waitpid", SetLastError = true)]
        internal static partial int WaitPid(int pid, int* wstatus, int options);

        /// <summary>The size of a siginfo_t (the same on every Linux architecture).</summary>

        /// <summary>The offset of si_pid in a siginfo_t filled by waitid (after three ints, aligned to 8 on 64-bit).</summary>
        internal static readonly int SigInfoPidOffset = IntPtr.Size == 8 ? 16 : 12;

        /// <summary>waitid(idtype, id, infop, options); <paramref name="info"/> points to <see cref="SigInfoSize"/> bytes.</summary>
        [LibraryImport(LibC, EntryPoint = "waitid", SetLastError = true)]
        internal static partial int WaitId(int idType, int id, byte* info, int options);

        /// <summary>struct rlimit (rlim_t is 64-bit on 64-bit Linux).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct RLimit
        {
            public nuint Current;
            public nuint Maximum;
        }

        [LibraryImport(LibC, EntryPoint = "getrlimit", SetLastError = true)]
        internal static partial int GetRLimit(int resource, RLimit* limit);

        [LibraryImport(LibC, EntryPoint = "eventfd", SetLastError = true)]
        internal static partial int EventFd(uint initialValue, int flags);

        [LibraryImport(LibC, EntryPoint = "epoll_create1", SetLastError = true)]
        internal static partial int EpollCreate1(int flags);

        /// <summary>epoll_ctl; <paramref name="evt"/> points to a buffer laid out as a kernel struct epoll_event (see <see cref="EpollEvent"/>).</summary>
        [LibraryImport(LibC, EntryPoint = "epoll_ctl", SetLastError = true)]
        internal static partial int EpollCtl(int epfd, int op, int fd, byte* evt);

        [LibraryImport(LibC, EntryPoint = "epoll_wait", SetLastError = true)]
        internal static partial int EpollWait(int epfd, byte* events, int maxEvents, int timeoutMs);

        /// <summary>
        /// struct epoll_event is packed on x86 and x86-64 (12 bytes, data at offset 4) and naturally aligned
        /// elsewhere (16 bytes, data at offset 8); its layout comes from the C library's header of the build.
        /// </summary>
        internal static class EpollEvent
        {
            internal const int Size = EpollEventSize;

            internal static void Write(byte* evt, uint events, ulong data)
            {
                *(uint*)evt = events;
                System.Runtime.CompilerServices.Unsafe.WriteUnaligned(evt + EpollEventDataOffset, data);
            }

            internal static ulong ReadData(byte* evt) =>
                System.Runtime.CompilerServices.Unsafe.ReadUnaligned<ulong>(evt + EpollEventDataOffset);
        }
    }
}
