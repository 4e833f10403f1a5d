namespace PSpawn.Cli;

/// <summary>What happened to one instance (one line of the --json summary).</summary>
internal sealed class InstanceRecord
{
    public InstanceRecord(int rank, int localRank)
    {
        Rank = rank;
        LocalRank = localRank;
    }

    public int Rank { get; }

    public int LocalRank { get; }

    public SpawnedProcess? Process { get; set; }

    public int? Pid => Process?.Id;

    public DateTimeOffset? Start { get; set; }

    public DateTimeOffset? End { get; set; }

    /// <summary>The exit code when it exited normally.</summary>
    public int? ExitCode { get; set; }

    /// <summary>The signal that terminated it.</summary>
    public int? Signal { get; set; }

    /// <summary>Why it did not start (errno name and message), or null.</summary>
    public string? SpawnError { get; set; }

    /// <summary>The status a shell would report: the exit code, or 128 + the signal; null while running or never started.</summary>
    public int? Status => Signal is int signal ? 128 + signal : ExitCode;
}
