using Mono.Unix.Native;

namespace PSpawn;

/// <summary>
/// The proxy (zygote) died or stopped answering: during start-up (<c>EPIPE</c>, <c>ETIMEDOUT</c>), or later
/// while serving a spawn request. A context whose proxy failed after start-up is broken: dispose it and create a new one.
/// </summary>
public sealed class PSpawnProxyException : PSpawnException
{
    /// <summary>Creates an exception with a default message.</summary>
    public PSpawnProxyException()
        : base("The PSpawn proxy failed.")
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    /// <param name="message">What went wrong.</param>
    public PSpawnProxyException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and the exception that caused it.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public PSpawnProxyException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates an exception for an error number reported about a proxy.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="errno">The error number (<c>EPIPE</c>: the proxy died; <c>ETIMEDOUT</c>: it did not answer in time).</param>
    /// <param name="executablePath">The executable the proxy serves.</param>
    /// <param name="duringStartup">True when the proxy failed while starting, false when it failed serving a request.</param>
    /// <param name="innerException">The cause, if any.</param>
    public PSpawnProxyException(string message, Errno errno, string? executablePath, bool duringStartup, Exception? innerException = null)
        : base(message, errno, executablePath, innerException)
    {
        DuringStartup = duringStartup;
    }

    /// <summary>True when the proxy failed while starting, false when it failed serving a spawn request.</summary>
    public bool DuringStartup { get; }
}
