using Mono.Unix.Native;

namespace PSpawn;

/// <summary>
/// The native core rejected an argument: <c>E2BIG</c> when the argument list and environment do not fit the
/// shared buffer (see <see cref="PSpawnContextOptions.SharedBufferSize"/>) or exceed execve's limits, in every mode
/// (one string of at most 131072 bytes with its terminator; all strings, the path and one pointer per string within
/// a quarter of RLIMIT_STACK, at most 6 MiB and at least 128 KiB); <c>EINVAL</c> for
/// another bad argument (for example a CPU core the process may not use).
/// </summary>
public sealed class PSpawnArgumentException : ArgumentException, IPSpawnError
{
    /// <summary>Creates an exception with a default message.</summary>
    public PSpawnArgumentException()
        : this("The PSpawn native core rejected an argument.")
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    /// <param name="message">What went wrong.</param>
    public PSpawnArgumentException(string message)
        : base(message)
    {
        Errno = Errno.EINVAL;
    }

    /// <summary>Creates an exception with a message and the exception that caused it.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public PSpawnArgumentException(string message, Exception? innerException)
        : base(message, innerException)
    {
        Errno = Errno.EINVAL;
    }

    /// <summary>Creates an exception for an error number the native core reported.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="paramName">The parameter concerned, if any.</param>
    /// <param name="errno">The error number.</param>
    /// <param name="executablePath">The executable concerned.</param>
    /// <param name="innerException">The cause, if any.</param>
    public PSpawnArgumentException(string message, string? paramName, Errno errno, string? executablePath, Exception? innerException = null)
        : base(message, paramName, innerException)
    {
        Errno = errno;
        Path = executablePath;
    }

    /// <inheritdoc />
    public Errno Errno { get; }

    /// <inheritdoc />
    public string? Path { get; }
}
