using System.IO.Compression;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

/// <summary>
/// Packs the library, builds a separate console application (tests/PackageConsumer) that references the
/// package from a local feed with its own package folder, runs it, and checks it spawned through the zygote.
/// Slow (pack, restore, build): one test.
/// </summary>
public sealed class PackageConsumerTests
{
    private const string Version = "0.0.0-consumer-test";
    private static readonly TimeSpan s_buildLimit = TimeSpan.FromMinutes(8);
    private static readonly TimeSpan s_runLimit = TimeSpan.FromMinutes(1);

    [Fact]
    public async Task Packed_library_works_in_a_fresh_console_app()
    {
        using var temp = new TempDirectory("pspawn-consumer-");
        string feed = Directory.CreateDirectory(temp.File("feed")).FullName;
        string packages = Directory.CreateDirectory(temp.File("packages")).FullName;
        string app = Directory.CreateDirectory(temp.File("app")).FullName;

        // 1. Pack. The native libraries were built by the build that produced these tests.
        CommandRunner.Result pack = await CommandRunner.Run(
            CommandRunner.DotNet,
            ["pack", Path.Combine(Fixtures.RepoRoot, "src", "PSpawn", "PSpawn.csproj"), "-c", "Release", "-o", feed,
             "--artifacts-path", temp.File("pack"), $"-p:Version={Version}", "-p:PSpawnSkipNativeBuild=true", "--disable-build-servers"],
            Fixtures.RepoRoot, null, s_buildLimit);
        Assert.True(pack.ExitCode == 0, $"dotnet pack failed: {pack}");

        string nupkg = Path.Combine(feed, $"PSpawn.{Version}.nupkg");
        Assert.True(File.Exists(nupkg), $"no {nupkg}: {pack}");
        Assert.True(File.Exists(Path.Combine(feed, $"PSpawn.{Version}.snupkg")), "no symbols package");
        using (ZipArchive zip = ZipFile.OpenRead(nupkg))
        {
            var entries = zip.Entries.Select(e => e.FullName).ToHashSet();
            Assert.Contains("lib/net10.0/PSpawn.dll", entries);
            Assert.Contains("lib/net10.0/PSpawn.xml", entries);
            Assert.Contains("runtimes/linux-x64/native/libpspawn.so", entries);
            Assert.Contains("runtimes/linux-x64/native/libpspawn_proxy.so", entries);
            Assert.Contains("README.md", entries);
            using var nuspec = new StreamReader(zip.GetEntry("PSpawn.nuspec")!.Open());
            string text = await nuspec.ReadToEndAsync();
            Assert.Contains("<license type=\"expression\">MIT</license>", text, StringComparison.Ordinal);
            Assert.Contains("<readme>README.md</readme>", text, StringComparison.Ordinal);
        }

        // 2. A fresh console project from the template folder, restoring from the local feed only.
        string template = Path.Combine(Fixtures.RepoRoot, "tests", "PackageConsumer");
        foreach (string file in Directory.GetFiles(template))
        {
            File.Copy(file, Path.Combine(app, Path.GetFileName(file)));
        }

        var environment = new Dictionary<string, string?>
        {
            ["PSPAWN_CONSUMER_FEED"] = feed,
            ["PSPAWN_CONSUMER_PACKAGES"] = packages,
            ["PSPAWN_NATIVE_DIR"] = null,
            ["PSPAWN_PROXY_LIBRARY"] = null,
        };
        CommandRunner.Result build = await CommandRunner.Run(
            CommandRunner.DotNet,
            ["build", Path.Combine(app, "PackageConsumer.csproj"), "-c", "Release", $"-p:PSpawnVersion={Version}", "--disable-build-servers"],
            app, environment, s_buildLimit);
        Assert.True(build.ExitCode == 0, $"building the consumer failed: {build}");
        Assert.True(Directory.Exists(Path.Combine(packages, "pspawn", Version)), "PSpawn was not restored into the consumer's own package folder");

        string output = Path.Combine(app, "bin", "Release", "net10.0");
        string consumer = Path.Combine(output, "PackageConsumer.dll");
        Assert.True(File.Exists(Path.Combine(output, "runtimes", "linux-x64", "native", "libpspawn.so")));
        Assert.True(File.Exists(Path.Combine(output, "runtimes", "linux-x64", "native", "libpspawn_proxy.so")));
        Assert.False(File.Exists(Path.Combine(output, "libpspawn.so")), "the consumer must find the library under runtimes/");

        // 3. Run it: noop, then report with an exit code (and the children are the consumer's children).
        CommandRunner.Result noop = await CommandRunner.Run(CommandRunner.DotNet, [consumer, Fixtures.Noop], app, environment, s_runLimit);
        Assert.True(noop.ExitCode == 0, $"the consumer failed: {noop}");
        Assert.Contains("mode: Zygote", noop.Output, StringComparison.Ordinal);
        Assert.Contains("exit codes: 0,0,0,0", noop.Output, StringComparison.Ordinal);

        string reportFile = temp.File("report.json");
        CommandRunner.Result report = await CommandRunner.Run(
            CommandRunner.DotNet, [consumer, Fixtures.Report, "--report-exit=7", $"--report-out={reportFile}"], app, environment, s_runLimit);
        Assert.True(report.ExitCode == 0, $"the consumer failed: {report}");
        Assert.Contains("mode: Zygote", report.Output, StringComparison.Ordinal);
        Assert.Contains("exit codes: 7,7,7,7", report.Output, StringComparison.Ordinal);
        Assert.Equal(report.ProcessId, ReportOutput.Read(reportFile).Ppid);

        // 4. A process that ignores SIGCHLD (where .NET reaps every child itself) gets relay mode, and the
        //    exit statuses still arrive.
        CommandRunner.Result ignoring = await CommandRunner.Run(
            "/bin/bash", ["-c", "trap '' CHLD; exec \"$0\" \"$@\"", CommandRunner.DotNet, consumer, Fixtures.Report, "--report-exit=3", $"--report-out={reportFile}"],
            app, environment, s_runLimit);
        Assert.True(ignoring.ExitCode == 0, $"the consumer failed with SIGCHLD ignored: {ignoring}");
        Assert.Contains("mode: Relay", ignoring.Output, StringComparison.Ordinal);
        Assert.Contains("exit codes: 3,3,3,3", ignoring.Output, StringComparison.Ordinal);

        // 5. PSPAWN_NATIVE_DIR overrides where the libraries are looked for.
        string empty = Directory.CreateDirectory(temp.File("empty")).FullName;
        CommandRunner.Result wrongDir = await CommandRunner.Run(
            CommandRunner.DotNet, [consumer, Fixtures.Noop], app, new Dictionary<string, string?>(environment) { ["PSPAWN_NATIVE_DIR"] = empty }, s_runLimit);
        Assert.NotEqual(0, wrongDir.ExitCode);
        Assert.Contains("PSPAWN_NATIVE_DIR", wrongDir.Output, StringComparison.Ordinal);

        CommandRunner.Result repoDir = await CommandRunner.Run(
            CommandRunner.DotNet, [consumer, Fixtures.Noop], app, new Dictionary<string, string?>(environment) { ["PSPAWN_NATIVE_DIR"] = Fixtures.LibDirectory }, s_runLimit);
        Assert.True(repoDir.ExitCode == 0, $"the consumer failed with PSPAWN_NATIVE_DIR: {repoDir}");
        Assert.Contains("exit codes: 0,0,0,0", repoDir.Output, StringComparison.Ordinal);
    }
}
