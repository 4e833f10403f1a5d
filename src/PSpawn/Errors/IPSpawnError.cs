using Mono.Unix.Native;

namespace PSpawn;

/// <summary>
/// Implemented by every exception PSpawn throws for a failure of the native core, whatever its base type
/// (<see cref="FileNotFoundException"/>, <see cref="UnauthorizedAccessException"/>, <see cref="ArgumentException"/>
/// or <see cref="PSpawnException"/>): the error number and the executable concerned.
/// </summary>
public interface IPSpawnError
{
    /// <summary>The error number the native core reported (its name is the enum member's name, e.g. <c>ENOENT</c>).</summary>
    Errno Errno { get; }

    /// <summary>The full path of the executable the failed operation was about, when known.</summary>
    string? Path { get; }
}
