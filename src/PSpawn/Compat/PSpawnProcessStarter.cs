using System.Diagnostics;
using System.Text;

namespace PSpawn;

/// <summary>
/// Starts <see cref="ProcessStartInfo"/>s as <see cref="Process.Start(ProcessStartInfo)"/> does on Unix, but through a cache
/// of <see cref="PSpawnContext"/>s: the first start of an executable creates its context (its zygote proxies), later starts
/// only fork a proxy. Thread-safe: starts of different executables, and of the same one, run in parallel (no global lock).
/// </summary>
/// <remarks>
/// Contexts are keyed by the resolved executable path and the variables that steer the dynamic loader (<c>LD_*</c>,
/// <c>GLIBC_TUNABLES</c>) in the start's environment, and checked against the file's identity (device, inode, change and
/// modification times) at every start, so a rebuilt executable gets a new context. At most
/// <see cref="PSpawnProcessStarterOptions.MaxContexts"/> are alive (least recently used evicted first), a context idle for
/// <see cref="PSpawnProcessStarterOptions.IdleTimeout"/> is evicted, and <see cref="Dispose"/> stops them all. Evicting
/// a context never affects the processes it started.
/// </remarks>
public sealed class PSpawnProcessStarter : IDisposable, IAsyncDisposable
{
    private const int ScriptRecursionLimit = 4; // BINPRM_MAX_RECURSION: deeper nesting is ELOOP for execve
    private const int ELOOP = 40;
    private const int MaxAttempts = 16; // retries of a start whose context was evicted or lost its proxies meanwhile
    private static readonly Lazy<PSpawnProcessStarter> s_shared = new(() => new PSpawnProcessStarter(PSpawnProcessStarterOptions.Default, shared: true));

    private readonly ContextCache _cache;
    private readonly PSpawnContextOptions _contextOptions;
    private readonly bool _shared;

    /// <summary>Creates a starter with its own cache.</summary>
    /// <param name="options">Options; null takes <see cref="PSpawnProcessStarterOptions.Default"/>.</param>
    public PSpawnProcessStarter(PSpawnProcessStarterOptions? options = null)
        : this(options ?? PSpawnProcessStarterOptions.Default, shared: false)
    {
    }

    private PSpawnProcessStarter(PSpawnProcessStarterOptions options, bool shared)
    {
        options.Validate();
        Options = options;
        // WatchImage: a library rebuilt between two starts is the one the next start gets (a stale context is replaced below).
        _contextOptions = options.ContextOptions ?? PSpawnContextOptions.Default with { FallbackPolicy = FallbackPolicy.PosixSpawn, WatchImage = true };
        _cache = new ContextCache(options);
        _shared = shared;
    }

    /// <summary>The starter used by <see cref="PSpawnProcess.Start(ProcessStartInfo)"/> and <see cref="ProcessStartInfoExtensions.StartWithPSpawn"/>, with the default options. It cannot be disposed.</summary>
    public static PSpawnProcessStarter Shared => s_shared.Value;

    /// <summary>The options the starter was created with.</summary>
    public PSpawnProcessStarterOptions Options { get; }

    /// <summary>How many contexts are alive (created and not evicted); each holds its proxy processes.</summary>
    public int ContextCount => _cache.LiveContexts.Count;

    /// <summary>The live contexts (tests look at their proxies).</summary>
    internal IReadOnlyList<PSpawnContext> Contexts => _cache.LiveContexts;

    /// <summary>Starts the process described by <paramref name="startInfo"/>, as <see cref="Process.Start(ProcessStartInfo)"/> would.</summary>
    /// <param name="startInfo">What to start. <see cref="ProcessStartInfo.UseShellExecute"/> must be false, <see cref="ProcessStartInfo.UserName"/> empty.</param>
    /// <returns>The started process.</returns>
    /// <exception cref="System.ComponentModel.Win32Exception">The process could not be started (the file is missing, not executable, a
    /// directory, the working directory is missing, ...), with the <see cref="System.ComponentModel.Win32Exception.NativeErrorCode"/> Process reports.</exception>
    /// <exception cref="InvalidOperationException">The start info is inconsistent (no file name, an encoding without its redirection, Arguments and ArgumentList).</exception>
    /// <exception cref="PSpawnStartInfoNotSupportedException">UseShellExecute or UserName is set.</exception>
    /// <exception cref="ObjectDisposedException">The starter has been disposed.</exception>
    public PSpawnProcess Start(ProcessStartInfo startInfo)
    {
        StartFailures.ThrowIfInvalid(startInfo);
        string? workingDirectory = string.IsNullOrWhiteSpace(startInfo.WorkingDirectory) ? null : startInfo.WorkingDirectory;
        string? resolved = ExecutableResolver.Resolve(startInfo.FileName);
        if (resolved is null)
        {
            throw StartFailures.ErrorStarting(Interop.Sys.ENOENT, startInfo.FileName, workingDirectory);
        }

        var arguments = new List<string>();
        if (!string.IsNullOrEmpty(startInfo.Arguments))
        {
            CommandLineSplitter.Split(startInfo.Arguments, arguments);
        }
        else
        {
            arguments.AddRange(startInfo.ArgumentList);
        }

        (Dictionary<string, string?> environment, string loaderEnvironment) = ChildEnvironment(startInfo);
        SpawnedProcess spawned = Spawn(resolved, startInfo.FileName, arguments, environment, loaderEnvironment, startInfo, workingDirectory);
        return new PSpawnProcess(spawned, startInfo);
    }

    /// <summary>Evicts every context (stopping its proxies) without disposing the starter; later starts create new ones.</summary>
    public void Clear() => _cache.Clear();

    /// <summary>Stops every context's proxies; later starts throw <see cref="ObjectDisposedException"/>. Processes already started are not affected.</summary>
    /// <exception cref="InvalidOperationException">This is <see cref="Shared"/>, which lives as long as the process (use <see cref="Clear"/>).</exception>
    public void Dispose()
    {
        if (_shared)
        {
            throw new InvalidOperationException("PSpawnProcessStarter.Shared cannot be disposed (other code uses it); call Clear() to stop its proxies.");
        }

        _cache.Dispose();
    }

    /// <summary>As <see cref="Dispose"/>; stopping proxies takes milliseconds, so this completes synchronously.</summary>
    /// <returns>A completed task.</returns>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// The child's whole environment (the start info's dictionary; a variable whose value is null is left out, as
    /// Process leaves it out), and the loader variables in it, which key the context.
    /// </summary>
    private static (Dictionary<string, string?> Environment, string Loader) ChildEnvironment(ProcessStartInfo startInfo)
    {
        var environment = new Dictionary<string, string?>(startInfo.Environment.Count, StringComparer.Ordinal);
        StringBuilder? loader = null;
        foreach (KeyValuePair<string, string?> variable in startInfo.Environment)
        {
            if (variable.Value is null)
            {
                continue;
            }

            environment[variable.Key] = variable.Value;
            if (variable.Key.StartsWith("LD_", StringComparison.Ordinal) || variable.Key == "GLIBC_TUNABLES")
            {
                (loader ??= new StringBuilder()).Append(variable.Key).Append('=').Append(variable.Value).Append('\0');
            }
        }

        return (environment, loader?.ToString() ?? string.Empty);
    }

    private SpawnedProcess Spawn(
        string path, string argv0, List<string> arguments, Dictionary<string, string?> environment, string loaderEnvironment,
        ProcessStartInfo startInfo, string? workingDirectory)
    {
        string reported = path; // Process names the file it passed to execve, not an interpreter
        for (int depth = 0; ; depth++)
        {
            if (Interop.Sys.Stat(path, out Interop.Sys.FileStatus status) != 0)
            {
                throw StartFailures.ErrorStarting(System.Runtime.InteropServices.Marshal.GetLastPInvokeError(), reported, workingDirectory);
            }

            if (depth == 0 && (status.Mode & Interop.Sys.S_IFMT) == Interop.Sys.S_IFDIR)
            {
                throw new System.ComponentModel.Win32Exception(StartFailures.DirectoryNotValid); // Process checks this before it forks
            }

            if ((status.Mode & Interop.Sys.S_IFMT) != Interop.Sys.S_IFREG || !ExecutableResolver.IsExecutable(status))
            {
                throw StartFailures.ErrorStarting(Interop.Sys.EACCES, reported, workingDirectory);
            }

            var key = new ContextKey(path, loaderEnvironment);
            var identity = FileIdentity.From(status);
            if (!_cache.IsKnownExecutable(key, identity))
            {
                ScriptInterpreter? script = ScriptInterpreter.Read(path, out int scriptErrno);
                if (scriptErrno != 0)
                {
                    throw StartFailures.ErrorStarting(scriptErrno, reported, workingDirectory);
                }

                if (script is ScriptInterpreter interpreter)
                {
                    if (depth == ScriptRecursionLimit)
                    {
                        throw StartFailures.ErrorStarting(ELOOP, reported, workingDirectory);
                    }

                    // execve of a script runs: interpreter [argument] script-path arguments (argv[0] is dropped).
                    arguments.Insert(0, path);
                    if (interpreter.Argument is string argument)
                    {
                        arguments.Insert(0, argument);
                    }

                    argv0 = interpreter.Interpreter;
                    path = Path.GetFullPath(interpreter.Interpreter, workingDirectory is null ? Directory.GetCurrentDirectory() : Path.GetFullPath(workingDirectory));
                    continue;
                }
            }

            return SpawnThroughCache(key, identity, reported, argv0, arguments, environment, startInfo, workingDirectory);
        }
    }

    private SpawnedProcess SpawnThroughCache(
        ContextKey key, FileIdentity identity, string reported, string argv0, List<string> arguments, Dictionary<string, string?> environment,
        ProcessStartInfo startInfo, string? workingDirectory)
    {
        var spawnOptions = new SpawnOptions
        {
            Argv0 = argv0,
            InheritEnvironment = false,
            Environment = environment,
            StandardInput = startInfo.RedirectStandardInput ? StdioTarget.Pipe : StdioTarget.Inherit,
            StandardOutput = startInfo.RedirectStandardOutput ? StdioTarget.Pipe : StdioTarget.Inherit,
            StandardError = startInfo.RedirectStandardError ? StdioTarget.Pipe : StdioTarget.Inherit,
        };
        string? fullWorkingDirectory = workingDirectory is null ? null : Path.GetFullPath(workingDirectory);
        for (int attempt = 0; ; attempt++)
        {
            ContextEntry entry = _cache.GetOrAdd(key, identity, () => PSpawnContext.Create(key.Path, options: _contextOptions with { ProxyEnvironment = NonNull(environment) }));
            try
            {
                PSpawnContext context;
                try
                {
                    context = entry.Context;
                }
                catch (Exception e) when (e is IPSpawnError)
                {
                    _cache.Remove(entry); // not cached: the next start tries again
                    throw StartFailures.FromPSpawn(e, reported, workingDirectory);
                }

                // Children start in the proxy's directory unless told otherwise: keep Process's rule (this process's current one).
                string? directory = fullWorkingDirectory;
                if (directory is null)
                {
                    string current = Directory.GetCurrentDirectory();
                    directory = current == entry.CreationDirectory ? null : current;
                }

                return context.Spawn(arguments, directory is null ? spawnOptions : spawnOptions with { WorkingDirectory = directory });
            }
            catch (ObjectDisposedException) when (entry.IsRetired && attempt < MaxAttempts)
            {
                // Evicted (idle timer, Clear) between the lookup and the spawn: nothing started; use a fresh context.
            }
            catch (PSpawnProxyException) when (attempt < MaxAttempts)
            {
                _cache.Remove(entry); // its proxies are gone for good: a fresh context
            }
            catch (Exception e) when (e is IPSpawnError)
            {
                throw StartFailures.FromPSpawn(e, reported, workingDirectory);
            }
            finally
            {
                _cache.Release(entry);
            }
        }
    }

    private static Dictionary<string, string> NonNull(Dictionary<string, string?> environment)
    {
        var copy = new Dictionary<string, string>(environment.Count, StringComparer.Ordinal);
        foreach (var (name, value) in environment)
        {
            copy[name] = value ?? string.Empty;
        }

        return copy;
    }
}
