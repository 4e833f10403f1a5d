namespace PSpawn.Tests.Infrastructure;

/// <summary>Locates the repository and the fixture executables built by CMake (artifacts/native/bin).</summary>
public static class Fixtures
{
    private static readonly Lazy<string> s_repoRoot = new(FindRepoRoot);

    /// <summary>The directory holding PSpawn.sln.</summary>
    public static string RepoRoot => s_repoRoot.Value;

    public static string BinDirectory => Path.Combine(RepoRoot, "artifacts", "native", "bin");

    public static string LibDirectory => Path.Combine(RepoRoot, "artifacts", "native", "lib");

    public static string Noop => Get("noop");

    public static string NoopStatic => Get("noop_static");

    public static string Report => Get("report");

    public static string ThreadedCtor => Get("threaded_ctor");

    public static string SetuidNoop => Get("setuid_noop");

    /// <summary>Its own _start (never calls __libc_start_main); appends a byte to $PSPAWN_NOSTART_MARKER per run.</summary>
    public static string NoStart => Get("nostart");

    /// <summary>
    /// tests/PSpawn.TestHost's program (PSpawn.TestHost.dll, run with the dotnet host), built beside these tests in the
    /// same configuration.
    /// </summary>
    public static string TestHost
    {
        get
        {
            string testsOut = AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar);
            string framework = Path.GetFileName(testsOut);
            string configuration = Path.GetFileName(Path.GetDirectoryName(testsOut)!);
            string path = Path.Combine(RepoRoot, "tests", "PSpawn.TestHost", "bin", configuration, framework, "PSpawn.TestHost.dll");
            return File.Exists(path)
                ? path
                : throw new FileNotFoundException($"The test host is missing at {path}. Build the solution first (dotnet build PSpawn.sln).", path);
        }
    }

    /// <summary>The full path of a fixture; fails (does not skip) when it has not been built.</summary>
    public static string Get(string name)
    {
        string path = Path.Combine(BinDirectory, name);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException(
                $"Fixture '{name}' is missing at {path}. Build the solution first (dotnet build PSpawn.sln runs CMake).", path);
        }

        return path;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "PSpawn.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"No PSpawn.sln above {AppContext.BaseDirectory}.");
    }
}
