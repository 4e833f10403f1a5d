namespace PSpawn.Cli;

/// <summary>Finds PROGRAM as a shell does: a name with '/' is a path, any other name is looked up in PATH.</summary>
internal static class ProgramResolver
{
    /// <summary>The full path, or an error with the exit status to report (127 not found, 126 not executable).</summary>
    public static (string? Path, int ExitCode, string? Error) Resolve(string program, string? pathVariable)
    {
        if (program.Length == 0)
        {
            return (null, ExitCodes.Usage, "PROGRAM is empty.");
        }

        if (program.Contains('/', StringComparison.Ordinal))
        {
            string full = Path.GetFullPath(program);
            if (!File.Exists(full))
            {
                return (null, Directory.Exists(full) ? ExitCodes.CannotExecute : ExitCodes.NotFound,
                    Directory.Exists(full) ? $"{program}: is a directory" : $"{program}: no such file");
            }

            return IsExecutable(full) ? (full, 0, null) : (null, ExitCodes.CannotExecute, $"{program}: permission denied (not executable)");
        }

        string? denied = null;
        foreach (string directory in (pathVariable ?? "/usr/local/bin:/usr/bin:/bin").Split(':'))
        {
            string candidate = Path.Combine(directory.Length == 0 ? "." : directory, program);
            if (File.Exists(candidate))
            {
                if (IsExecutable(candidate))
                {
                    return (Path.GetFullPath(candidate), 0, null);
                }

                denied ??= candidate;
            }
        }

        return denied is not null
            ? (null, ExitCodes.CannotExecute, $"{program}: permission denied ({denied} is not executable)")
            : (null, ExitCodes.NotFound, $"{program}: command not found in PATH");
    }

    private static bool IsExecutable(string path) =>
        (File.GetUnixFileMode(path) & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0;
}
