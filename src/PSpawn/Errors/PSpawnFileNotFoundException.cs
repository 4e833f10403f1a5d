using Mono.Unix.Native;

namespace PSpawn;

/// <summary>The executable does not exist (<c>ENOENT</c>).</summary>
public sealed class PSpawnFileNotFoundException : FileNotFoundException, IPSpawnError
{
    /// <summary>Creates an exception with a default message.</summary>
    public PSpawnFileNotFoundException()
        : this("The executable does not exist.")
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    /// <param name="message">What went wrong.</param>
    public PSpawnFileNotFoundException(string message)
        : base(message)
    {
        Errno = Errno.ENOENT;
    }

    /// <summary>Creates an exception with a message and the exception that caused it.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public PSpawnFileNotFoundException(string message, Exception? innerException)
        : base(message, innerException)
    {
        Errno = Errno.ENOENT;
    }

    /// <summary>Creates an exception about a missing executable.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="errno">The error number the native core reported.</param>
    /// <param name="executablePath">The executable.</param>
    /// <param name="innerException">The cause, if any.</param>
    public PSpawnFileNotFoundException(string message, Errno errno, string? executablePath, Exception? innerException = null)
        : base(message, executablePath, innerException)
    {
        Errno = errno;
        Path = executablePath;
    }

    /// <inheritdoc />
    public Errno Errno { get; }

    /// <inheritdoc />
    public string? Path { get; }
}
