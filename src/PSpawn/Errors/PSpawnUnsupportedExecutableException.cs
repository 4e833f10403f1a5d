using Mono.Unix.Native;

namespace PSpawn;

/// <summary>Why an executable cannot be served by a zygote.</summary>
public enum UnsupportedExecutableReason
{
    /// <summary>The reason is not known.</summary>
    Unknown = 0,

    /// <summary>Statically linked: the dynamic loader never runs, so LD_PRELOAD is ignored (<c>ENOTSUP</c>).</summary>
    StaticallyLinked = 1,

    /// <summary>Set-user-ID or set-group-ID: the loader drops LD_PRELOAD in secure-execution mode (<c>EPERM</c>).</summary>
    SetUserOrGroupId = 2,

    /// <summary>The executable's constructors start threads: forking a multi-threaded process is unsafe (<c>EDEADLK</c>).</summary>
    ThreadedConstructors = 3,

    /// <summary>Not an ELF executable for this machine: an empty file, a script, another architecture (<c>ENOEXEC</c>).</summary>
    NotAnElfExecutable = 4,

    /// <summary>
    /// The executable does not start through glibc's <c>__libc_start_main</c> (its own <c>_start</c>, as with
    /// <c>-nostartfiles</c> or Go's internal linker), so the zygote could not stop it before <c>main</c>; it is
    /// refused before any of its code runs (<c>ENOSYS</c>).
    /// </summary>
    NoStandardEntryPoint = 5,
}

/// <summary>
/// The executable exists and may be executed, but a zygote cannot serve it. Except for
/// <see cref="UnsupportedExecutableReason.NotAnElfExecutable"/>, creating the context with
/// <see cref="FallbackPolicy.PosixSpawn"/> makes it spawn with posix_spawn instead.
/// </summary>
public sealed class PSpawnUnsupportedExecutableException : PSpawnException
{
    /// <summary>Creates an exception with a default message.</summary>
    public PSpawnUnsupportedExecutableException()
        : base("The executable cannot be served by a PSpawn zygote.")
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    /// <param name="message">What went wrong.</param>
    public PSpawnUnsupportedExecutableException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and the exception that caused it.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public PSpawnUnsupportedExecutableException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates an exception that says why the executable cannot be served.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="reason">Why.</param>
    /// <param name="errno">The error number the native core reported.</param>
    /// <param name="executablePath">The executable.</param>
    /// <param name="innerException">The cause, if any.</param>
    public PSpawnUnsupportedExecutableException(string message, UnsupportedExecutableReason reason, Errno errno, string? executablePath, Exception? innerException = null)
        : base(message, errno, executablePath, innerException)
    {
        Reason = reason;
    }

    /// <summary>Why the executable cannot be served by a zygote.</summary>
    public UnsupportedExecutableReason Reason { get; }

    /// <summary>True when <see cref="FallbackPolicy.PosixSpawn"/> would have made the context usable.</summary>
    public bool CanFallBack => Reason is UnsupportedExecutableReason.StaticallyLinked
        or UnsupportedExecutableReason.SetUserOrGroupId
        or UnsupportedExecutableReason.ThreadedConstructors
        or UnsupportedExecutableReason.NoStandardEntryPoint;
}
