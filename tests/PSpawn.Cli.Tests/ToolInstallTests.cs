using System.Diagnostics;
using System.IO.Compression;
using PSpawn.Tests.Infrastructure;
using Xunit.Abstractions;

namespace PSpawn.Cli.Tests;

/// <summary>
/// Packs src/PSpawn.Cli as a .NET tool into a local feed, installs it with <c>dotnet tool install --tool-path</c> (its
/// own nuget.config and package folder, tests/ToolConsumer), and runs the installed <c>pspawn</c>. Slow: one test.
/// </summary>
public sealed class ToolInstallTests(ITestOutputHelper output)
{
    private const string Version = "0.0.0-tool-test";
    private static readonly TimeSpan s_buildLimit = TimeSpan.FromMinutes(8);

    [Fact]
    public async Task Installed_tool_runs_instances_through_the_zygote()
    {
        var stopwatch = Stopwatch.StartNew();
        using var temp = new TempDirectory("pspawn-tool-");
        string feed = Directory.CreateDirectory(temp.File("feed")).FullName;
        string packages = Directory.CreateDirectory(temp.File("packages")).FullName;
        string tools = temp.File("tools");

        CommandRunner.Result pack = await CommandRunner.Run(
            CommandRunner.DotNet,
            ["pack", Path.Combine(Fixtures.RepoRoot, "src", "PSpawn.Cli", "PSpawn.Cli.csproj"), "-c", "Release", "-o", feed,
             "--artifacts-path", temp.File("pack"), $"-p:Version={Version}", "-p:PSpawnSkipNativeBuild=true", "--disable-build-servers"],
            Fixtures.RepoRoot, null, s_buildLimit);
        Assert.True(pack.ExitCode == 0, $"dotnet pack failed: {pack}");
        string nupkg = Path.Combine(feed, $"PSpawn.Cli.{Version}.nupkg");
        using (ZipArchive zip = ZipFile.OpenRead(nupkg))
        {
            var entries = zip.Entries.Select(e => e.FullName).ToHashSet();
            Assert.Contains("tools/net10.0/any/DotnetToolSettings.xml", entries);
            Assert.Contains("tools/net10.0/any/PSpawn.Cli.dll", entries);
            Assert.Contains("tools/net10.0/any/PSpawn.dll", entries);
            Assert.Contains("tools/net10.0/any/libpspawn.so", entries);
            Assert.Contains("tools/net10.0/any/libpspawn_proxy.so", entries);
            Assert.Contains("README.md", entries);
            using var settings = new StreamReader(zip.GetEntry("tools/net10.0/any/DotnetToolSettings.xml")!.Open());
            Assert.Contains("<Command Name=\"pspawn\"", await settings.ReadToEndAsync(), StringComparison.Ordinal);
        }

        output.WriteLine($"pack: {stopwatch.Elapsed.TotalSeconds:0.0} s");

        string config = temp.File("nuget.config");
        File.Copy(Path.Combine(Fixtures.RepoRoot, "tests", "ToolConsumer", "nuget.config"), config);
        var environment = new Dictionary<string, string?>
        {
            ["PSPAWN_TOOL_FEED"] = feed,
            ["PSPAWN_TOOL_PACKAGES"] = packages,
            ["PSPAWN_NATIVE_DIR"] = null,
            ["PSPAWN_PROXY_LIBRARY"] = null,
            ["DOTNET_ROOT"] = Path.GetDirectoryName(Path.GetFullPath(ResolveDotNet())),
        };
        CommandRunner.Result install = await CommandRunner.Run(
            CommandRunner.DotNet, ["tool", "install", "--tool-path", tools, "--configfile", config, "PSpawn.Cli", "--version", Version],
            temp.Path, environment, s_buildLimit);
        Assert.True(install.ExitCode == 0, $"dotnet tool install failed: {install}");
        string pspawn = Path.Combine(tools, "pspawn");
        Assert.True(File.Exists(pspawn), $"no {pspawn}: {install}");
        Assert.Contains(Directory.GetFiles(tools, "libpspawn_proxy.so", SearchOption.AllDirectories), p => p.Contains("/.store/pspawn.cli/", StringComparison.Ordinal));
        output.WriteLine($"pack + install: {stopwatch.Elapsed.TotalSeconds:0.0} s");

        // The installed command, not the repository's build: instances of report through the zygote, with ranks.
        CommandRunner.Result run = await CommandRunner.Run(
            pspawn, ["run", "-n", "4", "--output", "none", "--json", temp.File("summary.json"), "--", Fixtures.Report, $"--report-out={temp.File("r{rank}.json")}", "--report-exit=0"],
            temp.Path, environment, TimeSpan.FromMinutes(1));
        Assert.True(run.ExitCode == 0, $"the installed pspawn failed: {run}");
        Assert.Contains("(Zygote,", run.Output, StringComparison.Ordinal);
        for (int rank = 0; rank < 4; rank++)
        {
            ReportOutput report = ReportOutput.Read(temp.File($"r{rank}.json"));
            Assert.Equal($"{rank}", report.EnvDictionary["PSPAWN_RANK"]);
            Assert.Equal(run.ProcessId, report.Ppid);
        }

        CommandRunner.Result failing = await CommandRunner.Run(
            pspawn, ["run", "-n", "2", "--output", "prefix", "--", "/bin/sh", "-c", "echo line-$PSPAWN_RANK; exit 7"], temp.Path, environment, TimeSpan.FromMinutes(1));
        Assert.True(failing.ExitCode == 7, failing.ToString());
        Assert.Contains("[1] line-1", failing.Output, StringComparison.Ordinal);

        CommandRunner.Result usage = await CommandRunner.Run(pspawn, ["run", "-n", "0", "--", "/bin/true"], temp.Path, environment, TimeSpan.FromMinutes(1));
        Assert.Equal(2, usage.ExitCode);
        output.WriteLine($"total: {stopwatch.Elapsed.TotalSeconds:0.0} s");
    }

    private static string ResolveDotNet()
    {
        string dotnet = CommandRunner.DotNet;
        if (dotnet.Contains('/', StringComparison.Ordinal))
        {
            return new FileInfo(dotnet).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? dotnet;
        }

        foreach (string directory in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':'))
        {
            string candidate = Path.Combine(directory, dotnet);
            if (File.Exists(candidate))
            {
                return new FileInfo(candidate).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? candidate;
            }
        }

        return "/usr/share/dotnet/dotnet";
    }
}
