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

    /// <summary>The memory areas of a sleeping child of a context made with <paramref name="options"/>.</summary>
    private async Task<string[]> ChildAreas(PSpawnContextOptions options, string name)
    {
        using var context = PSpawnContext.Create(Fixtures.Report, options: options);
        string output = _temp.File(name);
        using SpawnedProcess process = context.Spawn([$"--report-out={output}", "--report-sleep-ms=60000"]);
        try
        {
            await Bounded.Until(() => File.Exists(output), "the report was written");
            return File.ReadAllLines($"/proc/{process.Id}/maps");
        }
        finally
        {
            process.Kill();
            await process.WaitForExitAsync().Within();
        }
    }

    [Fact]
    public async Task MergeText_gives_children_fewer_areas_none_writable_and_executable()
    {
        string[] plain = await ChildAreas(PSpawnContextOptions.Default, "plain.json");
        string[] merged = await ChildAreas(PSpawnContextOptions.Default with { MergeText = true }, "merged.json");
        static string Perms(string line) => line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
        static bool OfLibc(string line) => line.Contains("/libc.so", StringComparison.Ordinal);

        Assert.True(merged.Length < plain.Length, $"{merged.Length} areas merged, {plain.Length} without");
        Assert.DoesNotContain(merged, line => Perms(line) is "rwxp" or "rwxs");
        // libc: headers, text and read-only data become one r-x area; RELRO stays read-only, data writable.
        Assert.Equal(1, merged.Where(OfLibc).Count(line => Perms(line) == "r-xp"));
        Assert.Equal(1, merged.Where(OfLibc).Count(line => Perms(line) == "r--p"));
        Assert.Equal(3, plain.Where(OfLibc).Count(line => Perms(line) == "r--p"));
        Assert.Equal(plain.Where(OfLibc).Count(line => Perms(line) == "rw-p"), merged.Where(OfLibc).Count(line => Perms(line) == "rw-p"));
    }
}
