using System.Collections.ObjectModel;

namespace PSpawn;

/// <summary>
/// Options of one spawn request (<see cref="PSpawnContext.Spawn"/> or <see cref="PSpawnContext.SpawnN"/>).
/// Immutable: derive variants with <c>with</c> expressions or <see cref="WithEnvironmentVariable"/>.
/// </summary>
/// <remarks>
/// <para>
/// The environment of a child is built in two steps: start from this process's environment
/// (<see cref="Environment.GetEnvironmentVariables()"/>, so <see cref="Environment.SetEnvironmentVariable(string, string)"/>
/// changes count, as with <see cref="System.Diagnostics.Process"/>) when <see cref="InheritEnvironment"/> is true, or
/// from an empty one; then apply <see cref="Environment"/>: a non-null value sets the variable, a null value
/// removes it. To replace the environment entirely, set <see cref="InheritEnvironment"/> to false and list the
/// variables in <see cref="Environment"/>.
/// </para>
/// <para>
/// The other options (standard streams, working directory, CPUs, process group, resource limits, umask,
/// parent-death signal) are applied in the child before <c>main</c>, in posix_spawn's order: session or process
/// group, resource limits, umask, working directory, CPU affinity, standard streams, parent-death signal. If one
/// fails, the child never runs <c>main</c> and the error is that spawn's, as posix_spawn reports exec failures:
/// <see cref="PSpawnContext.Spawn"/> throws an exception whose <see cref="IPSpawnError.Errno"/> says what failed
/// (<c>ENOENT</c> for a missing working directory or stdin file, <c>EINVAL</c> for a CPU set the kernel refuses,
/// <c>EPERM</c> for a hard limit above this process's), and <see cref="PSpawnContext.SpawnN"/> reports the instances
/// that did start in <see cref="PSpawnException.StartedProcesses"/>. With none of these options set a spawn costs
/// exactly what it did without them. In <see cref="PSpawnMode.Fallback"/> mode (posix_spawn), <see cref="Umask"/>,
/// <see cref="ResourceLimits"/> and <see cref="KillOnParentDeath"/> cannot be applied and fail with <c>ENOTSUP</c>.
/// </para>
/// </remarks>
public sealed record SpawnOptions
{
    private static readonly IReadOnlyDictionary<string, string?> s_noVariables =
        new ReadOnlyDictionary<string, string?>(new Dictionary<string, string?>(StringComparer.Ordinal));

    /// <summary>The defaults: argv[0] is the executable's path, the environment is this process's.</summary>
    public static SpawnOptions Default { get; } = new();

    /// <summary>argv[0] of the children. Null (the default) uses the executable's full path (<see cref="PSpawnContext.Path"/>).</summary>
    public string? Argv0 { get; init; }

    /// <summary>Whether the environment starts from this process's environment (default) or from an empty one.</summary>
    public bool InheritEnvironment { get; init; } = true;

    /// <summary>
    /// Changes applied to the starting environment: a non-null value sets the variable, a null value removes it.
    /// Names are case-sensitive, non-empty and contain no '='. Default: no changes.
    /// </summary>
    public IReadOnlyDictionary<string, string?> Environment { get; init; } = s_noVariables;

    /// <summary>The child's standard input (default: <see cref="StdioTarget.Inherit"/>).</summary>
    public StdioTarget StandardInput { get; init; } = StdioTarget.Inherit;

    /// <summary>The child's standard output (default: <see cref="StdioTarget.Inherit"/>).</summary>
    public StdioTarget StandardOutput { get; init; } = StdioTarget.Inherit;

    /// <summary>The child's standard error (default: <see cref="StdioTarget.Inherit"/>).</summary>
    public StdioTarget StandardError { get; init; } = StdioTarget.Inherit;

    /// <summary>
    /// Called with each line the child writes to its standard output (without the line terminator), on a
    /// thread-pool thread, one line at a time per child. Setting it pipes standard output
    /// (<see cref="StandardOutput"/> must be <see cref="StdioTarget.Inherit"/> or <see cref="StdioTarget.Pipe"/>), and the
    /// pipe is read asynchronously by the library, so <see cref="SpawnedProcess.StandardOutput"/> is not available.
    /// <see cref="SpawnedProcess.WaitForExitAsync(CancellationToken)"/> then also waits until every line has been delivered.
    /// An exception thrown by the callback is logged and the next lines are still delivered.
    /// </summary>
    public Action<string>? OnOutputLine { get; init; }

    /// <summary>As <see cref="OnOutputLine"/>, for standard error.</summary>
    public Action<string>? OnErrorLine { get; init; }

    /// <summary>The child's working directory; null (the default) keeps the proxy's, which was this process's when the context was created.
    /// A relative path is relative to that directory. A directory the child cannot enter is that spawn's error (for example <c>ENOENT</c>).</summary>
    public string? WorkingDirectory { get; init; }

    /// <summary>
    /// The CPUs (indices 0 to 1023) every child may run on (sched_setaffinity before <c>main</c>); null (the default) keeps the
    /// proxy's affinity. A set the kernel refuses (no online CPU allowed for this process) is that spawn's error, <c>EINVAL</c>.
    /// Cannot be combined with <see cref="CpuSetsPerInstance"/>.
    /// </summary>
    public IReadOnlySet<int>? Cpus { get; init; }

    /// <summary>
    /// One CPU set per instance, used round-robin: instance i of a <see cref="PSpawnContext.SpawnN"/> call runs on
    /// <c>CpuSetsPerInstance[i % Count]</c> ("instance i on core i"). Null (the default) for none. Cannot be combined with <see cref="Cpus"/>.
    /// </summary>
    public IReadOnlyList<IReadOnlySet<int>>? CpuSetsPerInstance { get; init; }

    /// <summary>Whether the child leads a new process group (setpgid(0, 0)), so that
    /// <see cref="SpawnedProcess.Kill(int, bool)"/> can signal it and its descendants at once.</summary>
    public bool NewProcessGroup { get; init; }

    /// <summary>A process group the child joins (setpgid(0, pgid)); it must exist in this session. Null (the default) for none.</summary>
    public int? JoinProcessGroup { get; init; }

    /// <summary>Whether the child starts a new session (setsid), and so leads a new process group without a controlling terminal.</summary>
    public bool NewSession { get; init; }

    /// <summary>Resource limits set in the child (up to 16). Default: none.</summary>
    public IReadOnlyList<ResourceLimit> ResourceLimits { get; init; } = [];

    /// <summary>The child's umask (permission bits only); null (the default) keeps the proxy's.</summary>
    public UnixFileMode? Umask { get; init; }

    /// <summary>
    /// Whether the child is killed (SIGKILL) when this process dies (PR_SET_PDEATHSIG). The kernel sends that
    /// signal when the parent <em>thread</em> exits: in zygote mode the children's parent is the thread that created
    /// the context, so <see cref="PSpawnContext.Create"/> creates every native context on one dedicated thread that
    /// lives as long as the process, which makes this option reliable whatever thread the caller uses. In
    /// <see cref="PSpawnMode.Relay"/> mode the proxy is the parent (children die with it, and it dies with this
    /// process); in <see cref="PSpawnMode.Fallback"/> mode this option is not supported (<c>ENOTSUP</c>).
    /// </summary>
    public bool KillOnParentDeath { get; init; }

    /// <summary>
    /// A cgroup v2 directory (under the cgroup2 mount) every child of this spawn is created in (clone3 with CLONE_INTO_CGROUP, so
    /// its limits, such as <c>pids.max</c> and <c>memory.max</c>, apply from the fork on). It is opened before the request: a
    /// missing directory is a <see cref="PSpawnFileNotFoundException"/>, no permission a <see cref="PSpawnAccessDeniedException"/>,
    /// a cgroup v1 directory or another file a <see cref="PSpawnException"/> (<c>EOPNOTSUPP</c>, <c>ENOTDIR</c>). The kernel may
    /// still refuse an instance (<c>EBUSY</c>: a cgroup with controllers in <c>cgroup.subtree_control</c>; <c>EAGAIN</c>:
    /// <c>pids.max</c> reached): that instance's error. Null (the default): <see cref="PSpawnContextOptions.Cgroup"/>, else the cgroup
    /// this process is in at spawn time. Not supported in <see cref="PSpawnMode.Fallback"/> mode (<c>ENOTSUP</c>).
    /// </summary>
    public string? Cgroup { get; init; }

    /// <summary>
    /// Whether children of per-node proxies (<see cref="PSpawnContextOptions.Numa"/>) keep the proxy's memory policy, so their
    /// memory is local to the proxy's node. Default false: they reset it to the default policy before <c>main</c>, as a fork and
    /// exec child of this process would have. No effect where the proxy is bound to no node.
    /// </summary>
    public bool NumaLocalMemory { get; init; }

    /// <summary>Returns a copy of these options that also sets (or, with a null value, removes) one variable.</summary>
    /// <param name="name">The variable's name.</param>
    /// <param name="value">Its value, or null to remove it.</param>
    /// <returns>The new options.</returns>
    public SpawnOptions WithEnvironmentVariable(string name, string? value)
    {
        ValidateVariableName(name, nameof(name));
        var variables = new Dictionary<string, string?>(Environment, StringComparer.Ordinal)
        {
            [name] = value,
        };
        return this with { Environment = new ReadOnlyDictionary<string, string?>(variables) };
    }

    /// <summary>Options whose environment is exactly <paramref name="variables"/> (nothing is inherited).</summary>
    /// <param name="variables">The complete environment of the children.</param>
    /// <returns>The new options.</returns>
    public static SpawnOptions WithExactEnvironment(IEnumerable<KeyValuePair<string, string>> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var copy = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var (name, value) in variables)
        {
            copy[name] = value;
        }

        return new SpawnOptions { InheritEnvironment = false, Environment = new ReadOnlyDictionary<string, string?>(copy) };
    }

    /// <summary>Whether any option beyond argv[0] and the environment is set (false: the fast path, no attributes).</summary>
    internal bool HasNativeOptions =>
        StandardInput.Kind != StdioKind.Inherit || StandardOutput.Kind != StdioKind.Inherit || StandardError.Kind != StdioKind.Inherit ||
        OnOutputLine is not null || OnErrorLine is not null || WorkingDirectory is not null || Cpus is not null ||
        CpuSetsPerInstance is not null || NewProcessGroup || JoinProcessGroup is not null || NewSession ||
        ResourceLimits.Count > 0 || Umask is not null || KillOnParentDeath || Cgroup is not null || NumaLocalMemory;

    /// <summary>Checks what can be checked before a spawn; throws <see cref="ArgumentException"/>.</summary>
    internal void ValidateNativeOptions(string paramName)
    {
        ArgumentNullException.ThrowIfNull(StandardInput, paramName);
        ArgumentNullException.ThrowIfNull(StandardOutput, paramName);
        ArgumentNullException.ThrowIfNull(StandardError, paramName);
        ArgumentNullException.ThrowIfNull(ResourceLimits, paramName);
        if (StandardInput.Kind == StdioKind.File && StandardInput.FileMode is not (FileMode.Open or FileMode.OpenOrCreate))
        {
            throw new ArgumentException($"Standard input is opened read-only: FileMode.{StandardInput.FileMode} is not allowed (use Open or OpenOrCreate).", paramName);
        }

        if (OnOutputLine is not null && StandardOutput.Kind is not (StdioKind.Inherit or StdioKind.Pipe))
        {
            throw new ArgumentException($"OnOutputLine needs standard output piped, but it is redirected to {StandardOutput}.", paramName);
        }

        if (OnErrorLine is not null && StandardError.Kind is not (StdioKind.Inherit or StdioKind.Pipe))
        {
            throw new ArgumentException($"OnErrorLine needs standard error piped, but it is redirected to {StandardError}.", paramName);
        }

        if (WorkingDirectory is not null && (WorkingDirectory.Length == 0 || WorkingDirectory.Contains('\0', StringComparison.Ordinal)))
        {
            throw new ArgumentException("The working directory must be non-empty and contain no NUL character.", paramName);
        }

        if (Cpus is not null && CpuSetsPerInstance is not null)
        {
            throw new ArgumentException("Set either Cpus or CpuSetsPerInstance, not both.", paramName);
        }

        if (Cpus is not null)
        {
            ValidateCpuSet(Cpus, "Cpus", paramName);
        }

        if (CpuSetsPerInstance is not null)
        {
            if (CpuSetsPerInstance.Count == 0)
            {
                throw new ArgumentException("CpuSetsPerInstance is empty.", paramName);
            }

            for (int i = 0; i < CpuSetsPerInstance.Count; i++)
            {
                ValidateCpuSet(CpuSetsPerInstance[i], $"CpuSetsPerInstance[{i}]", paramName);
            }
        }

        int groupOptions = (NewProcessGroup ? 1 : 0) + (JoinProcessGroup is not null ? 1 : 0) + (NewSession ? 1 : 0);
        if (groupOptions > 1)
        {
            throw new ArgumentException("NewProcessGroup, JoinProcessGroup and NewSession exclude each other.", paramName);
        }

        if (JoinProcessGroup is <= 0)
        {
            throw new ArgumentException($"JoinProcessGroup must be a positive process group ID, not {JoinProcessGroup}.", paramName);
        }

        if (ResourceLimits.Count > 16)
        {
            throw new ArgumentException($"At most 16 resource limits, not {ResourceLimits.Count}.", paramName);
        }

        foreach (ResourceLimit limit in ResourceLimits)
        {
            if (!Enum.IsDefined(limit.Resource))
            {
                throw new ArgumentException($"Unknown resource {(int)limit.Resource}.", paramName);
            }

            if (limit.Soft > limit.Hard)
            {
                throw new ArgumentException($"The soft limit of {limit.Resource} ({limit.Soft}) is above its hard limit ({limit.Hard}).", paramName);
            }
        }

        if (Umask is UnixFileMode mask && ((int)mask & ~0x1FF) != 0)
        {
            throw new ArgumentException("Umask may only hold permission bits (0 to 0777).", paramName);
        }

        ValidateCgroupPath(Cgroup, paramName);
    }

    internal static void ValidateCgroupPath(string? path, string paramName)
    {
        if (path is not null && (path.Length == 0 || path.Contains('\0', StringComparison.Ordinal)))
        {
            throw new ArgumentException("The cgroup path must be null (the default) or non-empty, without a NUL character.", paramName);
        }
    }

    internal static void ValidateCpuSet(IReadOnlySet<int>? set, string what, string paramName)
    {
        if (set is null)
        {
            throw new ArgumentException($"{what} is null.", paramName);
        }

        if (set.Count == 0)
        {
            throw new ArgumentException($"{what} is empty: a process must be allowed at least one CPU.", paramName);
        }

        foreach (int cpu in set)
        {
            if (cpu is < 0 or >= Interop.PSpawnCore.CpuSetSize)
            {
                throw new ArgumentOutOfRangeException(paramName, cpu, $"{what} holds CPU {cpu}: CPU indices go from 0 to {Interop.PSpawnCore.CpuSetSize - 1}.");
            }
        }
    }

    internal static void ValidateVariableName(string name, string paramName)
    {
        ArgumentNullException.ThrowIfNull(name, paramName);
        if (name.Length == 0 || name.Contains('=', StringComparison.Ordinal) || name.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException($"'{name}' is not a valid environment variable name: it must be non-empty and contain neither '=' nor NUL.", paramName);
        }
    }
}
