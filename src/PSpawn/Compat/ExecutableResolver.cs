namespace PSpawn;

/// <summary>The identity of an executable file: a rebuilt or replaced file gets a new context.</summary>
internal readonly record struct FileIdentity(ulong Device, ulong Inode, long ModifiedSeconds, long ModifiedNanoseconds, long ChangedSeconds, long ChangedNanoseconds)
{
    internal static FileIdentity From(in Interop.Sys.FileStatus status) =>
        new(status.Device, status.Inode, status.ModifiedSeconds, status.ModifiedNanoseconds, status.ChangedSeconds, status.ChangedNanoseconds);
}

/// <summary>
/// Finds the file <see cref="System.Diagnostics.Process.Start(System.Diagnostics.ProcessStartInfo)"/> would execute on Unix
/// (with UseShellExecute false): a rooted name as it is; else the name next to this process's executable, then in the
/// current directory (any existing file), then in each non-empty PATH entry (an executable file).
/// </summary>
internal static class ExecutableResolver
{
    /// <summary>The path to execute, or null when nothing was found (Process then fails with ENOENT).</summary>
    internal static string? Resolve(string fileName)
    {
        if (Path.IsPathRooted(fileName))
        {
            return fileName; // whether or not it exists: execve reports what is wrong with it
        }

        string? processPath = Environment.ProcessPath;
        if (processPath is not null && Path.GetDirectoryName(processPath) is string processDirectory)
        {
            string besideProcess = Path.Combine(processDirectory, fileName);
            if (File.Exists(besideProcess))
            {
                return besideProcess;
            }
        }

        string inCurrentDirectory = Path.Combine(Directory.GetCurrentDirectory(), fileName);
        if (File.Exists(inCurrentDirectory))
        {
            return inCurrentDirectory;
        }

        return FindInPath(fileName);
    }

    private static string? FindInPath(string fileName)
    {
        string? path = Environment.GetEnvironmentVariable("PATH");
        if (path is null)
        {
            return null;
        }

        foreach (string directory in path.Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(directory, fileName);
            if (Interop.Sys.Stat(candidate, out Interop.Sys.FileStatus status) == 0 && IsExecutable(status))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>
    /// Whether this process may execute a file with this status, by its mode bits: not a directory; root may run anything
    /// with an execute bit; the owner needs the user bit, members of the file's group the group bit, others the other bit.
    /// </summary>
    internal static bool IsExecutable(in Interop.Sys.FileStatus status)
    {
        if ((status.Mode & Interop.Sys.S_IFMT) == Interop.Sys.S_IFDIR)
        {
            return false;
        }

        uint bits = status.Mode & (Interop.Sys.S_IXUSR | Interop.Sys.S_IXGRP | Interop.Sys.S_IXOTH);
        if (bits == 0)
        {
            return false;
        }

        uint euid = Interop.Sys.GetEUid();
        if (euid == 0 || bits == (Interop.Sys.S_IXUSR | Interop.Sys.S_IXGRP | Interop.Sys.S_IXOTH))
        {
            return true;
        }

        if (euid == status.Uid)
        {
            return (bits & Interop.Sys.S_IXUSR) != 0;
        }

        return IsMemberOfGroup(status.Gid) ? (bits & Interop.Sys.S_IXGRP) != 0 : (bits & Interop.Sys.S_IXOTH) != 0;
    }

    private static unsafe bool IsMemberOfGroup(uint gid)
    {
        if (Interop.Sys.GetEGid() == gid)
        {
            return true;
        }

        int count = Interop.Sys.GetGroups(0, null);
        if (count <= 0)
        {
            return false;
        }

        uint[] groups = new uint[count];
        fixed (uint* list = groups)
        {
            count = Interop.Sys.GetGroups(groups.Length, list);
        }

        return count > 0 && groups.AsSpan(0, Math.Min(count, groups.Length)).Contains(gid);
    }
}
