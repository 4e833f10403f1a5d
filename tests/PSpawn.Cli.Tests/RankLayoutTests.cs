namespace PSpawn.Cli.Tests;

/// <summary>The rank arithmetic of <c>pspawn run</c> alone and under Slurm (one pspawn task per node, or several).</summary>
public sealed class RankLayoutTests
{
    private static Dictionary<string, string> Slurm(int procId, int nTasks, int nodeId, int nNodes, int localId = 0) => new()
    {
        ["SLURM_PROCID"] = $"{procId}",
        ["SLURM_NTASKS"] = $"{nTasks}",
        ["SLURM_NODEID"] = $"{nodeId}",
        ["SLURM_NNODES"] = $"{nNodes}",
        ["SLURM_LOCALID"] = $"{localId}",
        ["SLURM_JOB_ID"] = "42",
    };

    [Fact]
    public void Alone_ranks_are_0_to_N_minus_1_and_no_Slurm_variable_is_set()
    {
        RankLayout layout = RankLayout.From(4, new Dictionary<string, string> { ["SLURM_JOB_ID"] = "7" }); // an sbatch script, no step
        Assert.False(layout.UnderSlurm);
        Assert.Equal([0, 1, 2, 3], Enumerable.Range(0, 4).Select(layout.Rank));
        Assert.Equal(4, layout.Size);
        Dictionary<string, string?> variables = layout.Variables(2);
        Assert.Equal("2", variables["PSPAWN_RANK"]);
        Assert.Equal("4", variables["PSPAWN_SIZE"]);
        Assert.Equal("2", variables["PSPAWN_LOCAL_RANK"]);
        Assert.DoesNotContain(variables.Keys, k => k.StartsWith("SLURM_", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(0, new[] { 0, 1, 2, 3 })]
    [InlineData(1, new[] { 4, 5, 6, 7 })]
    [InlineData(2, new[] { 8, 9, 10, 11 })]
    public void Three_nodes_one_task_each_give_global_ranks_node_times_N_plus_local(int node, int[] ranks)
    {
        RankLayout layout = RankLayout.From(4, Slurm(procId: node, nTasks: 3, nodeId: node, nNodes: 3));
        Assert.True(layout.UnderSlurm);
        Assert.Equal(12, layout.Size);
        Assert.Equal(ranks, Enumerable.Range(0, 4).Select(layout.Rank));
        for (int local = 0; local < 4; local++)
        {
            Dictionary<string, string?> v = layout.Variables(local);
            Assert.Equal($"{ranks[local]}", v["SLURM_PROCID"]);
            Assert.Equal($"{ranks[local]}", v["PSPAWN_RANK"]);
            Assert.Equal($"{local}", v["SLURM_LOCALID"]);
            Assert.Equal($"{local}", v["PSPAWN_LOCAL_RANK"]);
            Assert.Equal("12", v["SLURM_NTASKS"]);
            Assert.Equal("12", v["SLURM_NPROCS"]);
            Assert.Equal("12", v["PSPAWN_SIZE"]);
            Assert.False(v.ContainsKey("SLURM_NODEID"), "the node stays the node");
        }

        Assert.Equal($"r{ranks[3]}-of-12-l3", layout.Substitute("r{rank}-of-{size}-l{local_rank}", 3));
    }

    [Fact]
    public void Two_tasks_per_node_keep_ranks_unique_and_local_ids_per_node()
    {
        // srun -N 2 --ntasks-per-node=2: task 3 is the second task (SLURM_LOCALID 1) of node 1.
        RankLayout layout = RankLayout.From(5, Slurm(procId: 3, nTasks: 4, nodeId: 1, nNodes: 2, localId: 1));
        Assert.Equal(20, layout.Size);
        Assert.Equal([15, 16, 17, 18, 19], Enumerable.Range(0, 5).Select(layout.Rank));
        Assert.Equal(["5", "6", "7", "8", "9"], Enumerable.Range(0, 5).Select(i => layout.Variables(i)["SLURM_LOCALID"]));
    }

    [Fact]
    public void Every_rank_of_a_job_is_given_exactly_once()
    {
        const int nodes = 7, n = 13;
        var all = new List<int>();
        for (int node = 0; node < nodes; node++)
        {
            RankLayout layout = RankLayout.From(n, Slurm(node, nodes, node, nodes));
            all.AddRange(Enumerable.Range(0, n).Select(layout.Rank));
            Assert.Equal(nodes * n, layout.Size);
        }

        Assert.Equal(Enumerable.Range(0, nodes * n), all.Order());
    }

    [Fact]
    public void No_slurm_ignores_the_step()
    {
        RankLayout layout = RankLayout.From(2, Slurm(1, 2, 1, 2), ignoreSlurm: true);
        Assert.False(layout.UnderSlurm);
        Assert.Equal([0, 1], Enumerable.Range(0, 2).Select(layout.Rank));
    }

    [Theory]
    [InlineData("SLURM_PROCID", "x")]
    [InlineData("SLURM_PROCID", "-1")]
    [InlineData("SLURM_PROCID", "3")]
    [InlineData("SLURM_NTASKS", "0")]
    [InlineData("SLURM_NODEID", "5")]
    public void Inconsistent_Slurm_variables_are_usage_errors(string name, string value)
    {
        Dictionary<string, string> environment = Slurm(1, 3, 1, 3);
        environment[name] = value;
        Assert.Throws<UsageException>(() => RankLayout.From(4, environment));
    }

    [Fact]
    public void Too_many_ranks_are_refused()
    {
        Assert.Throws<UsageException>(() => RankLayout.From(1 << 20, Slurm(0, 1 << 12, 0, 1 << 12)));
    }
}
