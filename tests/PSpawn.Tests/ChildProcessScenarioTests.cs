using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

/// <summary>
/// Scenarios that must run in a separate .NET process (tests/PSpawn.TestHost): a lowered RLIMIT_NOFILE would starve
/// this test host, and a launcher killed with SIGKILL cannot be this process. The host prints key=value lines.
/// </summary>
[Collection(nameof(ChildProcessScenarioTests))]
[CollectionDefinition(nameof(ChildProcessScenarioTests), DisableParallelization = true)]
public sealed class ChildProcessScenarioTests
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(120);

    private static Task<CommandRunner.Result> RunHost(int? noFileLimit, params string[] arguments)
    {
        if (noFileLimit is int limit)
        {
            // ulimit -n sets the soft and hard limit before the runtime starts (the runtime raises the soft limit
            // to the hard one at start-up, so the hard limit has to be lowered too).
            return CommandRunner.Run(
                "/bin/sh",
                ["-c", $"ulimit -n {limit} && exec \"$0\" \"$@\"", CommandRunner.DotNet, Fixtures.TestHost, .. arguments],
                Fixtures.RepoRoot, null, s_limit);
        }

        return CommandRunner.Run(CommandRunner.DotNet, [Fixtures.TestHost, .. arguments], Fixtures.RepoRoot, null, s_limit);
    }

    private static Dictionary<string, string> Values(CommandRunner.Result result) =>
        result.Output.Split('\n')
            .Select(line => line.TrimEnd('\r').Split('=', 2))
            .Where(pair => pair.Length == 2)
            .GroupBy(pair => pair[0], StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Last()[1], StringComparer.Ordinal);

    /// <summary>
    /// Defect 9: every live child held a pidfd, so 3,000 of them under ulimit -n 256 left the runtime without
    /// descriptors and it aborted ("Out of memory.", exit 134). The children beyond the descriptor budget are now
    /// watched by the shared poller: all 3,000 are alive at once (blocked reading one shared stdin pipe), the runtime
    /// can still start a thread and open a file, a child without a pidfd can be killed, and every exit status is
    /// collected.
    /// </summary>
    [Fact]
    public async Task Three_thousand_live_children_under_ulimit_256_are_all_collected()
    {
        CommandRunner.Result result = await RunHost(256, "live", "3000", Fixtures.Report);
        Dictionary<string, string> values = Values(result);
        Assert.True(result.ExitCode == 0, $"the host failed: {result}");
        Assert.Equal("256", values["nofile"]);
        Assert.Equal("3000", values["running"]);
        Assert.Equal("3000", values["collected"]);
        Assert.Equal("15", values["killed-signal"]); // Kill of a child without a pidfd
        Assert.True(int.Parse(values["fds"], System.Globalization.CultureInfo.InvariantCulture) <= 256 - DescriptorBudget.MinimumReserve + 1, $"the reserve was used: {result}"); // + the listing's own
    }

    /// <summary>
    /// Piped children under ulimit -n 256 until the descriptors run out: the spawn that does not fit is a
    /// PSpawnException with Errno EMFILE listing the instances that did start, the runtime survives (it used to
    /// abort), and every started child is waitable.
    /// </summary>
    [Fact]
    public async Task Piped_spawns_under_ulimit_256_fail_with_EMFILE_and_lose_nothing()
    {
        CommandRunner.Result result = await RunHost(256, "pipes-nofile", "256", Fixtures.Report);
        Dictionary<string, string> values = Values(result);
        Assert.True(result.ExitCode == 0, $"the host failed: {result}");
        Assert.Equal("EMFILE", values["errno"]);
        Assert.Equal("PSpawnException", values["exception"]);
        Assert.Equal(values["started"], values["collected"]);
        Assert.Contains("RLIMIT_NOFILE", values["message"], StringComparison.Ordinal);
    }

    /// <summary>
    /// Context creation with the soft RLIMIT_NOFILE lowered to 8-12 after start-up is a PSpawnException with Errno
    /// EMFILE. (The native core used to say EINVAL at limits 7-10, F_DUPFD's minimum being 10; a .NET process holds
    /// descriptors 0-40 or so, so here the first descriptor the core opens already fails with EMFILE: the C test
    /// test_errors.low_descriptor_limit covers the EINVAL case.)
    /// </summary>
    [Theory]
    [InlineData(8)]
    [InlineData(10)]
    [InlineData(12)]
    public async Task Context_creation_under_a_low_descriptor_limit_is_EMFILE(int limit)
    {
        CommandRunner.Result result = await RunHost(null, "create-nofile", limit.ToString(System.Globalization.CultureInfo.InvariantCulture), Fixtures.Noop);
        Dictionary<string, string> values = Values(result);
        Assert.True(result.ExitCode == 0, $"the host failed: {result}");
        Assert.Equal("EMFILE", values["errno"]);
        Assert.Equal("PSpawnException", values["outcome"]);
    }

    /// <summary>
    /// A process whose credentials changed since its context was created gets EPERM from a spawn (the proxy has the
    /// old ones), with a message that says so. Needs root (setgroups), as the tests run. Changing credentials affects every thread, hence the separate process.
    /// </summary>
    [Fact]
    public async Task Spawn_after_a_credential_change_is_EPERM_saying_so()
    {
        CommandRunner.Result result = await RunHost(null, "credentials", Fixtures.Noop);
        Dictionary<string, string> values = Values(result);
        Assert.True(result.ExitCode == 0, $"the host failed: {result}");
        Assert.Equal("EPERM", values["errno"]);
        Assert.Contains("credentials", values["message"], StringComparison.Ordinal);
        Assert.Contains("changed since the context was created", values["message"], StringComparison.Ordinal);
    }

    /// <summary>
    /// Defect 2: a .NET launcher killed with SIGKILL in the middle of SpawnN(100000) must not leave its proxy forking
    /// on: the proxy stops within a second and no children keep appearing. The host runs the launcher under itself
    /// as a child subreaper (so this test process is not one), watches the re-parented proxy, and reaps everything.
    /// </summary>
    [Fact]
    public async Task Killed_launcher_stops_its_proxy_within_a_second()
    {
        CommandRunner.Result result = await RunHost(null, "kill-launcher", Fixtures.Noop);
        Dictionary<string, string> values = Values(result);
        Assert.True(values.ContainsKey("proxy-stopped-ms"), $"no measurement: {result}");
        Assert.True(result.ExitCode == 0, $"the proxy outlived its launcher or children kept appearing: {result}");
        Assert.Equal("0", values["appeared-after"]);
    }
}
