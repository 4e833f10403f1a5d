using System.Globalization;
using System.Text.Json;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Cli.Tests;

/// <summary>
/// <c>pspawn run --deferred</c> on the <c>deferred</c> fixture: its start-up (summing <c>$DEFERRED_DATA</c>, one line
/// appended to <c>$DEFERRED_COUNT</c>) runs in the proxies only, and every instance returns from <c>pspawn_ready()</c>
/// with its own arguments and environment.
/// </summary>
public sealed class CliDeferredTests
{
    private static string Deferred => Fixtures.Get("deferred");

    private static string R(int rank) => rank.ToString(CultureInfo.InvariantCulture);

    [Theory]
    [InlineData("none", 1, null)]    // one launch session (StartBatch)
    [InlineData("prefix", 1, null)]  // one Spawn request per instance, with pipes
    [InlineData("none", 1, 3)]       // claims from a pool parked at pspawn_ready()
    [InlineData("none", null, null)] // the library's proxy count: one start-up per proxy
    public async Task Instances_start_from_pspawn_ready_with_their_own_arguments_and_the_start_up_runs_once_per_proxy(
        string output, int? proxies, int? pool)
    {
        using var temp = new TempDirectory("pspawn-cli-deferred-");
        string data = temp.File("data.txt");
        await File.WriteAllTextAsync(data, "40\n2\n");
        string count = temp.File("count.txt");
        string json = temp.File("summary.json");
        const int n = 5;
        List<string> arguments = ["run", "-n", R(n), "--deferred", "--output", output, "--json", json];
        if (proxies is int k)
        {
            arguments.AddRange(["--proxies", R(k)]);
        }

        if (pool is int p)
        {
            arguments.AddRange(["--pool", R(p)]);
        }

        // The instances' own DEFERRED_DATA names no file: an instance that ran the start-up itself would say "sum -1".
        arguments.AddRange(["--env", "DEFERRED_DATA=/nonexistent/data-{rank}", "--", Deferred, temp.File("{rank}.txt"), "rank={rank}", "of {size}"]);
        CliRunner.Result result = await CliRunner.Run(arguments, new Dictionary<string, string?>
        {
            ["DEFERRED_DATA"] = data, // what the start-up (the proxies) sees
            ["DEFERRED_COUNT"] = count,
        });
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("from pspawn_ready()", result.Stderr, StringComparison.Ordinal);

        using var summary = JsonDocument.Parse(await File.ReadAllBytesAsync(json));
        JsonElement root = summary.RootElement;
        Assert.True(root.GetProperty("deferred").GetBoolean());
        int proxyCount = root.GetProperty("proxies").GetInt32();
        Assert.Equal(proxies ?? proxyCount, proxyCount);
        var instancePids = root.GetProperty("instances").EnumerateArray().Select(i => i.GetProperty("pid").GetInt32()).ToHashSet();
        Assert.Equal(n, instancePids.Count);
        if (pool is int parked)
        {
            Assert.Equal(parked, root.GetProperty("pool").GetInt32());
            Assert.True(root.GetProperty("pool_claims").GetInt32() >= 1, result.ToString());
        }

        for (int rank = 0; rank < n; rank++)
        {
            string[] lines = await File.ReadAllLinesAsync(temp.File($"{R(rank)}.txt"));
            // The sum is the proxy's (parsed before pspawn_ready()); argv and environ are the instance's own.
            Assert.Equal(["ready 1", "sum 42", $"arg {Deferred}", $"arg {temp.File($"{R(rank)}.txt")}", $"arg rank={R(rank)}", $"arg of {R(n)}"],
                lines.TakeWhile(l => !l.StartsWith("env ", StringComparison.Ordinal)));
            Assert.Contains($"env PSPAWN_RANK={R(rank)}", lines);
            Assert.Contains($"env DEFERRED_DATA=/nonexistent/data-{R(rank)}", lines);
        }

        // The costly start-up ran once per proxy, in processes that are none of the instances.
        string[] starts = await File.ReadAllLinesAsync(count);
        Assert.Equal(proxyCount, starts.Length);
        Assert.All(starts, line =>
        {
            Assert.StartsWith("parsed ", line, StringComparison.Ordinal);
            Assert.DoesNotContain(int.Parse(line["parsed ".Length..], CultureInfo.InvariantCulture), instancePids);
        });
    }

    [Fact]
    public async Task Without_deferred_every_instance_runs_the_start_up_itself()
    {
        // The control for the test above: the same fixture and options, without --deferred.
        using var temp = new TempDirectory("pspawn-cli-deferred-");
        string count = temp.File("count.txt");
        CliRunner.Result result = await CliRunner.Run(
            ["run", "-n", "3", "--proxies", "1", "--output", "none", "--", Deferred, temp.File("{rank}.txt")],
            new Dictionary<string, string?> { ["DEFERRED_DATA"] = null, ["DEFERRED_COUNT"] = count });
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(3, (await File.ReadAllLinesAsync(count)).Length);
        Assert.Equal(["ready 0", "sum -1"], (await File.ReadAllLinesAsync(temp.File("2.txt"))).Take(2));
    }

    [Fact]
    public async Task A_program_that_never_calls_pspawn_ready_exits_125_and_is_not_run_per_instance()
    {
        // report returns from main without calling pspawn_ready(): context creation fails (EPIPE). No exec fallback
        // starts the instances (their main would run again): no report file is written.
        using var temp = new TempDirectory("pspawn-cli-deferred-");
        CliRunner.Result result = await CliRunner.Run(
            ["run", "-n", "2", "--deferred", "--output", "none", "--", Fixtures.Report, $"--report-out={temp.File("{rank}.json")}"]);
        Assert.True(result.ExitCode == 125, result.ToString());
        Assert.Contains("pspawn_ready()", result.Stderr, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(temp.Path));
    }

    [Theory]
    [InlineData("zero", "0", "must be above 0")]
    [InlineData("not a duration", "soon", "is not a duration")]
    [InlineData("above int.MaxValue ms", "1000h", "at most 24 days")]
    public async Task A_bad_startup_timeout_is_a_usage_error(string what, string value, string message)
    {
        CliRunner.Result result = await CliRunner.Run(["run", "-n", "2", "--deferred", "--startup-timeout", value, "--", Deferred]);
        Assert.True(result.ExitCode == 2, $"{what}: {result}");
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
        Assert.Contains("--help", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Startup_timeout_accepts_what_the_native_core_takes()
    {
        Assert.Equal(TimeSpan.FromMinutes(2), RunSettings.ParseStartupTimeout("2m"));
        Assert.Equal(TimeSpan.FromMilliseconds(int.MaxValue), RunSettings.ParseStartupTimeout($"{int.MaxValue}ms"));
        Assert.Throws<UsageException>(() => RunSettings.ParseStartupTimeout("0.5ms"));
    }
}
