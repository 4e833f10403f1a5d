using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace PSpawn;

/// <summary>What a standard stream (stdin, stdout or stderr) of a child is connected to.</summary>
public enum StdioKind
{
    /// <summary>The proxy's stream, which is this process's as it was when the context was created (the default).</summary>
    Inherit = 0,

    /// <summary>/dev/null.</summary>
    Null = 1,

    /// <summary>A file opened by the child (after its working directory is set): see <see cref="StdioTarget.File"/>.</summary>
    File = 2,

    /// <summary>A descriptor of this process, duplicated into every child: see <see cref="StdioTarget.FromHandle"/>.</summary>
    Handle = 3,

    /// <summary>A fresh pipe per child, whose other end appears on <see cref="SpawnedProcess"/>.</summary>
    Pipe = 4,
}

/// <summary>
/// Where one standard stream of a child goes: <see cref="Inherit"/>, <see cref="Null"/>, <see cref="File"/>,
/// <see cref="FromHandle"/> or <see cref="Pipe"/>. Immutable; use it in <see cref="SpawnOptions.StandardInput"/>,
/// <see cref="SpawnOptions.StandardOutput"/> and <see cref="SpawnOptions.StandardError"/>.
/// </summary>
public sealed class StdioTarget
{
    private const UnixFileMode DefaultPermissions =
        UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;

    private StdioTarget(StdioKind kind, string? path = null, FileMode fileMode = default, UnixFileMode permissions = default, SafeHandle? handle = null)
    {
        Kind = kind;
        Path = path;
        FileMode = fileMode;
        Permissions = permissions;
        Handle = handle;
    }

    /// <summary>The proxy's stream (the default): this process's stream as it was when the context was created.</summary>
    public static StdioTarget Inherit { get; } = new(StdioKind.Inherit);

    /// <summary>/dev/null.</summary>
    public static StdioTarget Null { get; } = new(StdioKind.Null);

    /// <summary>
    /// A fresh pipe per child. This process's end appears as <see cref="SpawnedProcess.StandardInput"/>,
    /// <see cref="SpawnedProcess.StandardOutput"/> or <see cref="SpawnedProcess.StandardError"/>, owned by the
    /// <see cref="SpawnedProcess"/> (closed by its <see cref="SpawnedProcess.Dispose"/>).
    /// </summary>
    public static StdioTarget Pipe { get; } = new(StdioKind.Pipe);

    /// <summary>What the stream is connected to.</summary>
    public StdioKind Kind { get; }

    /// <summary>For <see cref="StdioKind.File"/>: the path (relative paths are resolved against the child's working directory).</summary>
    public string? Path { get; }

    /// <summary>For <see cref="StdioKind.File"/>: how the file is opened.</summary>
    public FileMode FileMode { get; }

    /// <summary>For <see cref="StdioKind.File"/>: the permissions of a file the child creates (before its umask).</summary>
    public UnixFileMode Permissions { get; }

    /// <summary>For <see cref="StdioKind.Handle"/>: the descriptor of this process that is duplicated into the children.</summary>
    public SafeHandle? Handle { get; }

    /// <summary>
    /// A file the child opens before <c>main</c>, after changing to its working directory: read-only for stdin,
    /// write-only for stdout and stderr. A failure to open it (for example <c>ENOENT</c> or <c>EACCES</c>) is that
    /// spawn's error. <see cref="System.IO.FileMode"/> maps to open(2) flags: <c>CreateNew</c> = O_CREAT|O_EXCL,
    /// <c>Create</c> = O_CREAT|O_TRUNC, <c>Open</c> = none, <c>OpenOrCreate</c> = O_CREAT, <c>Truncate</c> = O_TRUNC,
    /// <c>Append</c> = O_CREAT|O_APPEND. For stdin only <c>Open</c> and <c>OpenOrCreate</c> are allowed.
    /// </summary>
    /// <param name="path">The file's path; relative to the child's working directory.</param>
    /// <param name="mode">How to open it (default: create or truncate).</param>
    /// <param name="permissions">The permissions of a created file, before the child's umask (default 0644).</param>
    /// <returns>The target.</returns>
    public static StdioTarget File(string path, FileMode mode = FileMode.Create, UnixFileMode permissions = DefaultPermissions)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (path.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException("The path contains a NUL character.", nameof(path));
        }

        if (!Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Not a FileMode.");
        }

        if (((int)permissions & ~0xFFF) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(permissions), permissions, "Only permission bits (0 to 07777) are allowed.");
        }

        return new StdioTarget(StdioKind.File, path, mode, permissions);
    }

    /// <summary>
    /// A descriptor of this process (a file, pipe, socket or terminal), duplicated into each child as the stream
    /// (passed with SCM_RIGHTS to the proxy). The handle must stay open until the spawn call returns; the caller
    /// keeps owning it (the children get duplicates).
    /// </summary>
    /// <param name="handle">An open descriptor, for example a <see cref="SafeFileHandle"/>.</param>
    /// <returns>The target.</returns>
    public static StdioTarget FromHandle(SafeHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        if (handle.IsInvalid)
        {
            throw new ArgumentException("The handle is invalid.", nameof(handle));
        }

        return new StdioTarget(StdioKind.Handle, handle: handle);
    }

    /// <summary>
    /// A raw descriptor of this process, duplicated into each child as the stream. It must stay open until the
    /// spawn call returns; the caller keeps owning it.
    /// </summary>
    /// <param name="fd">The descriptor (0 or more).</param>
    /// <returns>The target.</returns>
    public static StdioTarget FromDescriptor(int fd)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        return new StdioTarget(StdioKind.Handle, handle: new SafeFileHandle(fd, ownsHandle: false));
    }

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        StdioKind.File => $"File({Path}, {FileMode})",
        StdioKind.Handle => $"Handle({Handle?.DangerousGetHandle()})",
        _ => Kind.ToString(),
    };

    /// <summary>The open(2) flags of a <see cref="StdioKind.File"/> target for standard descriptor <paramref name="fd"/>.</summary>
    internal int OpenFlags(int fd)
    {
        int access = fd == 0 ? Interop.Sys.O_RDONLY : Interop.Sys.O_WRONLY;
        int creation = FileMode switch
        {
            FileMode.CreateNew => Interop.Sys.O_CREAT | Interop.Sys.O_EXCL,
            FileMode.Create => Interop.Sys.O_CREAT | Interop.Sys.O_TRUNC,
            FileMode.OpenOrCreate => Interop.Sys.O_CREAT,
            FileMode.Truncate => Interop.Sys.O_TRUNC,
            FileMode.Append => Interop.Sys.O_CREAT | Interop.Sys.O_APPEND,
            _ => 0,
        };
        return access | creation;
    }
}
