using System.Reflection;
using System.Runtime.InteropServices;

namespace PSpawn;

/// <summary>
/// Finds libpspawn.so and libpspawn_proxy.so. They live in one directory, which is, in this order:
/// <list type="number">
/// <item>the directory named by the environment variable <c>PSPAWN_NATIVE_DIR</c> (it must hold libpspawn.so);</item>
/// <item>the application directory (<see cref="AppContext.BaseDirectory"/>): repository builds and tests, and
/// applications published for a runtime identifier;</item>
/// <item><c>runtimes/linux-&lt;arch&gt;/native/</c> under it: a NuGet consumer's build output;</item>
/// <item>each directory of the host's <c>NATIVE_DLL_SEARCH_DIRECTORIES</c>.</item>
/// </list>
/// The proxy library's full path is handed to the native core, which puts it in the proxy's LD_PRELOAD.
/// </summary>
internal static class NativeLibraryResolver
{
    internal const string DirectoryVariable = "PSPAWN_NATIVE_DIR";
    internal const string LauncherFileName = "libpspawn.so";
    internal const string ProxyFileName = "libpspawn_proxy.so";

    private static readonly Lazy<string?> s_directory = new(FindDirectory, LazyThreadSafetyMode.ExecutionAndPublication);
    private static int s_registered;

    /// <summary>Installs the <see cref="DllImportResolver"/> for this assembly (once).</summary>
    internal static void EnsureRegistered()
    {
        if (Interlocked.Exchange(ref s_registered, 1) == 0)
        {
            NativeLibrary.SetDllImportResolver(typeof(NativeLibraryResolver).Assembly, Resolve);
        }
    }

    /// <summary>Whether libpspawn.so was found (and <see cref="DirectoryVariable"/>, when set, names a directory holding it).</summary>
    internal static bool LauncherLibraryFound
    {
        get
        {
            try
            {
                return NativeDirectory is not null;
            }
            catch (DllNotFoundException)
            {
                return false;
            }
        }
    }

    /// <summary>The directory holding libpspawn.so, or null to leave it to the runtime's default probing.</summary>
    internal static string? NativeDirectory => s_directory.Value;

    /// <summary>The full path of libpspawn_proxy.so beside libpspawn.so, or null when it is not there
    /// (then the native core looks for it itself: $PSPAWN_PROXY_LIBRARY, else beside libpspawn.so).</summary>
    internal static string? ProxyLibraryPath
    {
        get
        {
            string? directory = NativeDirectory;
            if (directory is null)
            {
                return null;
            }

            string path = Path.Combine(directory, ProxyFileName);
            return File.Exists(path) ? path : null;
        }
    }

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (libraryName != Interop.PSpawnCore.LibraryName)
        {
            return IntPtr.Zero;
        }

        string? directory = NativeDirectory;
        return directory is null ? IntPtr.Zero : NativeLibrary.Load(Path.Combine(directory, LauncherFileName));
    }

    private static string? FindDirectory()
    {
        string? overridden = Environment.GetEnvironmentVariable(DirectoryVariable);
        if (!string.IsNullOrEmpty(overridden))
        {
            string full = Path.GetFullPath(overridden);
            if (!File.Exists(Path.Combine(full, LauncherFileName)))
            {
                throw new DllNotFoundException(
                    $"{DirectoryVariable} is set to '{overridden}', but that directory holds no {LauncherFileName}.");
            }

            return full;
        }

        foreach (string candidate in Candidates())
        {
            if (File.Exists(Path.Combine(candidate, LauncherFileName)))
            {
                return Path.GetFullPath(candidate);
            }
        }

        return null;
    }

    private static IEnumerable<string> Candidates()
    {
        string baseDirectory = AppContext.BaseDirectory;
        if (!string.IsNullOrEmpty(baseDirectory))
        {
            yield return baseDirectory;
            yield return Path.Combine(baseDirectory, "runtimes", RuntimeIdentifier, "native");
        }

        if (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") is string searchDirectories)
        {
            foreach (string directory in searchDirectories.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            {
                yield return directory;
            }
        }
    }

    private static string RuntimeIdentifier => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => "linux-x64",
        Architecture.Arm64 => "linux-arm64",
        Architecture.Arm => "linux-arm",
        Architecture.X86 => "linux-x86",
        var other => "linux-" + other.ToString().ToLowerInvariant(),
    };
}
