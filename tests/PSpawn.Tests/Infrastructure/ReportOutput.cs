using System.Text;
using System.Text.Json;

namespace PSpawn.Tests.Infrastructure;

/// <summary>What the report fixture wrote (one JSON object; see tests/fixtures/README).</summary>
public sealed class ReportOutput
{
    private ReportOutput(JsonElement root)
    {
        Root = root;
        Argv = Strings(root, "argv_hex");
        Env = Strings(root, "env_hex");
        Pid = root.GetProperty("pid").GetInt32();
        Ppid = root.GetProperty("ppid").GetInt32();
        Fds = root.GetProperty("fds").EnumerateArray().Select(e => e.GetInt32()).ToArray();
    }

    public JsonElement Root { get; }

    /// <summary>argv, decoded exactly from the hex dump of the bytes.</summary>
    public IReadOnlyList<string> Argv { get; }

    /// <summary>environ, decoded exactly from the hex dump of the bytes.</summary>
    public IReadOnlyList<string> Env { get; }

    public IReadOnlyDictionary<string, string> EnvDictionary =>
        Env.Select(e => e.Split('=', 2)).ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : string.Empty, StringComparer.Ordinal);

    public int Pid { get; }

    public int Ppid { get; }

    public IReadOnlyList<int> Fds { get; }

    /// <summary>Reads the report file written with --report-out (atomically, so it is complete when present).</summary>
    public static ReportOutput Read(string path)
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        return new ReportOutput(document.RootElement.Clone());
    }

    /// <summary>Parses the JSON the fixture wrote to its standard output (without --report-out).</summary>
    public static ReportOutput Parse(string json)
    {
        using var document = JsonDocument.Parse(json);
        return new ReportOutput(document.RootElement.Clone());
    }

    public int Number(string name) => Root.GetProperty(name).GetInt32();

    public string Text(string name) => Root.GetProperty(name).GetString()!;

    public int[] Numbers(string name) => Root.GetProperty(name).EnumerateArray().Select(e => e.GetInt32()).ToArray();

    private static string[] Strings(JsonElement root, string name) =>
        root.GetProperty(name).EnumerateArray()
            .Select(e => Encoding.UTF8.GetString(Convert.FromHexString(e.GetString()!)))
            .ToArray();
}
