using System.Runtime.InteropServices;

namespace PSpawn;

internal static partial class Interop
{
    /// <summary>
    /// The pspawn/ipspawn system calls, through libc's <c>syscall</c> (never libpspawn: a .NET launcher gets the kernel
    /// path without the native library). Their numbers are the running kernel's (<see cref="KernelDetection"/>).
    /// </summary>
    internal static unsafe partial class Kernel
    {
        private const string LibC = "libc";

        /// <summary>Any system call with a pointer and a size (for the ENOSYS probe).</summary>
        internal static nint Call(long number, void* args, nuint size) =>
            Sys.Syscall2((nint)number, (nint)args, (nint)size);

        /// <summary>ipspawn(args, size): the launch session (invalid, with errno, when the call failed as a whole).</summary>
        [LibraryImport(LibC, EntryPoint = "syscall", SetLastError = true)]
        internal static partial KernelSessionHandle IPSpawn(nint number, Interop.KernelAbi.Args* args, nint size);

        /// <summary>read(2) of a session's results.</summary>
        [LibraryImport(LibC, EntryPoint = "read", SetLastError = true)]
        internal static partial nint ReadSession(KernelSessionHandle session, byte* buffer, nuint count);

        [LibraryImport(LibC, EntryPoint = "sched_getaffinity", SetLastError = true)]
        internal static partial int SchedGetAffinity(int pid, nuint size, byte* mask);

        [LibraryImport(LibC, EntryPoint = "access", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial int Access(string path, int mode);

        [LibraryImport(LibC, EntryPoint = "getpid")]
        internal static partial int GetPid();
    }
}
