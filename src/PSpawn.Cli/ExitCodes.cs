namespace PSpawn.Cli;

/// <summary>
/// The exit status of <c>pspawn</c>. <c>run</c> otherwise exits with the aggregated status of the instances:
/// 0 when every instance exited with 0, else the status of the lowest-ranked instance that failed (its exit code,
/// or 128 + n when signal n killed it).
/// </summary>
internal static class ExitCodes
{
    public const int Success = 0;

    /// <summary>Bad command line (unknown option, bad value, missing PROGRAM) or a bad Slurm environment.</summary>
    public const int Usage = 2;

    /// <summary><c>--timeout</c> expired: the instances still running were stopped.</summary>
    public const int TimedOut = 124;

    /// <summary>At least one instance could not be started (its error is printed and in the JSON summary), or the
    /// launcher could not be set up.</summary>
    public const int SpawnFailed = 125;

    /// <summary>PROGRAM exists but cannot be executed (permission, not an executable).</summary>
    public const int CannotExecute = 126;

    /// <summary>PROGRAM was not found (through PATH when it has no '/').</summary>
    public const int NotFound = 127;

    /// <summary>128 + the signal (SIGINT 2 → 130, SIGTERM 15 → 143) when pspawn itself was interrupted.</summary>
    public static int Interrupted(int signal) => 128 + signal;
}
