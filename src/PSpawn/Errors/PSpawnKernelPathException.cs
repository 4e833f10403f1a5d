using Mono.Unix.Native;

namespace PSpawn;

/// <summary>
/// <see cref="KernelPath.Require"/> could not be honoured: the kernel has no pspawn/ipspawn system calls
/// (<c>ENOSYS</c>, thrown by <see cref="PSpawnContext.Create"/>), or a context option or a request needs something they
/// cannot do, such as a working directory, standard-stream redirection, limits or a cgroup (<c>EOPNOTSUPP</c>).
/// </summary>
public sealed class PSpawnKernelPathException : PSpawnException
{
    /// <summary>Creates an exception with a default message.</summary>
    public PSpawnKernelPathException()
        : base("The kernel path (KernelPath.Require) is not available.")
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    /// <param name="message">What went wrong.</param>
    public PSpawnKernelPathException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and the exception that caused it.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public PSpawnKernelPathException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates an exception for an error number.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="errno"><c>ENOSYS</c>: no system calls; <c>EOPNOTSUPP</c>: they cannot express the request.</param>
    /// <param name="executablePath">The executable concerned.</param>
    public PSpawnKernelPathException(string message, Errno errno, string? executablePath)
        : base(message, errno, executablePath)
    {
    }
}
