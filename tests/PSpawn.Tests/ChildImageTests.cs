using System.Text;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

/// <summary>What ps, top and pkill -f see of a child: its own argv and environment, not the proxy's.</summary>
public sealed class ChildImageTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static string[] ProcStrings(int pid, string name)
    {
        string text = Encoding.UTF8.GetString(File.ReadAllBytes($"/proc/{pid}/{name}"));
        return text.Length == 0 ? [] : text.TrimEnd('\0').Split('\0');
    }

    [Fact]
    public async Task Proc_cmdline_and_environ_of_a_child_are_the_ones_it_was_given()
    {
        var proxyEnvironment = new Dictionary<string, string> { ["SECRET"] = "create-time", ["PATH"] = "/usr/bin:/bin" };
        using var context = PSpawnContext.Create(
            Fixtures.Report, options: new PSpawnContextOptions { ProxyEnvironment = proxyEnvironment });
        string output = _temp.File("image.json");
        var exact = new Dictionary<string, string> { ["A"] = "1", ["SECRET"] = "per-spawn" };
        using SpawnedProcess process = context.Spawn(
            ["with space", $"--report-out={output}", "--report-sleep-ms=60000"], SpawnOptions.WithExactEnvironment(exact));
        try
        {
            await Bounded.Until(() => File.Exists(output), "the report was written");
            ReportOutput report = ReportOutput.Read(output);

            Assert.Equal(report.Argv, ProcStrings(process.Id, "cmdline"));
            Assert.Contains("with space", report.Argv);
            string[] environ = ProcStrings(process.Id, "environ");
            Assert.Equal(report.Env, environ);
            Assert.Equal(["A=1", "SECRET=per-spawn"], environ.Order(StringComparer.Ordinal));
        }
        finally
        {
            process.Kill();
            await process.WaitForExitAsync().Within();
        }
    }
}
