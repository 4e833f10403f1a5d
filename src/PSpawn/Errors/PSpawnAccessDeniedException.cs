using Mono.Unix.Native;

namespace PSpawn;

/// <summary>The path is not a regular file, or the caller may not execute it (<c>EACCES</c>).</summary>
public sealed class PSpawnAccessDeniedException : UnauthorizedAccessException, IPSpawnError
{
    /// <summary>Creates an exception with a default message.</summary>
    public PSpawnAccessDeniedException()
        : this("The executable may not be executed.")
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    /// <param name="message">What went wrong.</param>
    public PSpawnAccessDeniedException(string message)
        : base(message)
    {
        Errno = Errno.EACCES;
    }

    /// <summary>Creates an exception with a message and the exception that caused it.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public PSpawnAccessDeniedException(string message, Exception? innerException)
        : base(message, innerException)
    {
        Errno = Errno.EACCES;
    }

    /// <summary>Creates an exception about an executable that may not be executed.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="errno">The error number the native core reported.</param>
    /// <param name="executablePath">The path.</param>
    /// <param name="innerException">The cause, if any.</param>
    public PSpawnAccessDeniedException(string message, Errno errno, string? executablePath, Exception? innerException = null)
        : base(message, innerException)
    {
        Errno = errno;
        Path = executablePath;
    }

    /// <inheritdoc />
    public Errno Errno { get; }

    /// <inheritdoc />
    public string? Path { get; }
}
