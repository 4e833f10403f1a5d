using System.Globalization;

namespace PSpawn.Cli;

/// <summary>
/// Where the instances of one <c>pspawn run</c> sit among all instances of the job. Alone, ranks are 0..N-1.
/// Under Slurm (<c>srun -N NODES --ntasks-per-node=1 pspawn run -n N</c>) each pspawn is one Slurm task, and its
/// instances get the global ranks <c>task × N + local</c> of a job of <c>tasks × N</c> instances, where task is
/// SLURM_PROCID (with one task per node, the node index SLURM_NODEID) and tasks is SLURM_NTASKS.
/// </summary>
internal sealed record RankLayout(int Count, int Offset, int Size, int LocalOffset, bool UnderSlurm)
{
    /// <summary>The variables of Slurm's task environment that <see cref="SlurmVariables"/> rewrites per instance.</summary>
    public static readonly IReadOnlyList<string> RewrittenSlurmVariables =
        ["SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS", "SLURM_NPROCS", "SLURM_STEP_NUM_TASKS"];

    /// <summary>The layout for <paramref name="count"/> local instances, reading Slurm's variables from
    /// <paramref name="environment"/> unless <paramref name="ignoreSlurm"/>.</summary>
    /// <exception cref="UsageException">Slurm's variables are inconsistent or the job is too large.</exception>
    public static RankLayout From(int count, IReadOnlyDictionary<string, string> environment, bool ignoreSlurm = false)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        if (ignoreSlurm || !environment.ContainsKey("SLURM_PROCID"))
        {
            return new RankLayout(count, 0, count, 0, false);
        }

        int task = Read(environment, "SLURM_PROCID", 0);
        int tasks = environment.ContainsKey("SLURM_NTASKS") ? Read(environment, "SLURM_NTASKS", 1) : task + 1;
        int localTask = environment.ContainsKey("SLURM_LOCALID") ? Read(environment, "SLURM_LOCALID", 0) : 0;
        if (task >= tasks)
        {
            throw new UsageException($"SLURM_PROCID={task} is not below SLURM_NTASKS={tasks}.");
        }

        if (environment.ContainsKey("SLURM_NODEID") && environment.ContainsKey("SLURM_NNODES"))
        {
            int node = Read(environment, "SLURM_NODEID", 0);
            int nodes = Read(environment, "SLURM_NNODES", 1);
            if (node >= nodes)
            {
                throw new UsageException($"SLURM_NODEID={node} is not below SLURM_NNODES={nodes}.");
            }
        }

        long size = (long)tasks * count;
        if (size > int.MaxValue)
        {
            throw new UsageException($"{tasks} Slurm tasks × {count} instances is too many ranks.");
        }

        return new RankLayout(count, checked(task * count), (int)size, checked(localTask * count), true);
    }

    /// <summary>The global rank of local instance <paramref name="local"/>.</summary>
    public int Rank(int local) => Offset + local;

    /// <summary>The variables every instance gets: PSPAWN_RANK/SIZE/LOCAL_RANK, and under Slurm the task variables an
    /// SPMD program reads (SLURM_PROCID = global rank, SLURM_LOCALID = rank on this node, SLURM_NTASKS = size).</summary>
    public Dictionary<string, string?> Variables(int local)
    {
        string rank = Rank(local).ToString(CultureInfo.InvariantCulture);
        string size = Size.ToString(CultureInfo.InvariantCulture);
        var variables = new Dictionary<string, string?>(StringComparer.Ordinal)
        {
            ["PSPAWN_RANK"] = rank,
            ["PSPAWN_SIZE"] = size,
            ["PSPAWN_LOCAL_RANK"] = local.ToString(CultureInfo.InvariantCulture),
        };
        if (UnderSlurm)
        {
            variables["SLURM_PROCID"] = rank;
            variables["SLURM_LOCALID"] = (LocalOffset + local).ToString(CultureInfo.InvariantCulture);
            variables["SLURM_NTASKS"] = size;
            variables["SLURM_NPROCS"] = size;
            variables["SLURM_STEP_NUM_TASKS"] = size;
        }

        return variables;
    }

    /// <summary>Replaces <c>{rank}</c>, <c>{size}</c> and <c>{local_rank}</c> in <paramref name="text"/>.</summary>
    public string Substitute(string text, int local) =>
        !text.Contains('{', StringComparison.Ordinal)
            ? text
            : text.Replace("{rank}", Rank(local).ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
                .Replace("{size}", Size.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
                .Replace("{local_rank}", local.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal);

    private static int Read(IReadOnlyDictionary<string, string> environment, string name, int minimum)
    {
        string text = environment[name];
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int value) || value < minimum)
        {
            throw new UsageException($"{name}='{text}' in the environment is not a number ≥ {minimum} (unset it or pass --no-slurm).");
        }

        return value;
    }
}
