using Mono.Unix.Native;

namespace PSpawn;

/// <summary>A failure of the native core that no more specific exception type describes.</summary>
public class PSpawnException : Exception, IPSpawnError
{
    private static readonly IReadOnlyDictionary<int, Errno> s_noFailures = new Dictionary<int, Errno>();

    private readonly IReadOnlyList<SpawnedProcess> _startedProcesses = [];
    private readonly IReadOnlyDictionary<int, Errno> _failedInstances = s_noFailures;

    /// <summary>Creates an exception with a default message.</summary>
    public PSpawnException()
        : this("The PSpawn native core reported an error.")
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    /// <param name="message">What went wrong.</param>
    public PSpawnException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and the exception that caused it.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public PSpawnException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates an exception for an error number reported about an executable.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="errno">The error number.</param>
    /// <param name="executablePath">The executable concerned, if known.</param>
    /// <param name="innerException">The cause, if any.</param>
    public PSpawnException(string message, Errno errno, string? executablePath, Exception? innerException = null)
        : base(message, innerException)
    {
        Errno = errno;
        Path = executablePath;
    }

    /// <inheritdoc />
    public Errno Errno { get; }

    /// <inheritdoc />
    public string? Path { get; }

    /// <summary>
    /// When <see cref="PSpawnContext.SpawnN"/> started some but not all instances, the ones that did start
    /// (they run and must be waited for or killed like any other); otherwise empty.
    /// </summary>
    public IReadOnlyList<SpawnedProcess> StartedProcesses
    {
        get => _startedProcesses;
        init => _startedProcesses = value ?? [];
    }

    /// <summary>
    /// When <see cref="PSpawnContext.SpawnN"/> did not start every instance: the error of each instance that failed,
    /// by its index in the request (0 to count - 1); the other instances are <see cref="StartedProcesses"/>, in
    /// index order. Empty when the request failed as a whole or nothing is known per instance.
    /// </summary>
    public IReadOnlyDictionary<int, Errno> FailedInstances
    {
        get => _failedInstances;
        init => _failedInstances = value ?? s_noFailures;
    }
}
