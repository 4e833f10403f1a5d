using System.Collections.ObjectModel;

namespace PSpawn;

/// <summary>
/// One instance of a batch (<see cref="PSpawnContext.SpawnBatch"/>, <see cref="PSpawnContext.StartBatch"/>): its own
/// arguments, environment changes and CPUs. Immutable: derive variants with <c>with</c> expressions or
/// <see cref="WithEnvironmentVariable"/>.
/// </summary>
/// <remarks>
/// The instance's environment is the batch's (from <see cref="SpawnOptions.InheritEnvironment"/> and
/// <see cref="SpawnOptions.Environment"/>) with <see cref="Environment"/> applied on top: a non-null value sets the
/// variable, a null value removes it. Everything else (argv[0], working directory, standard streams, limits, ...)
/// comes from the <see cref="SpawnOptions"/> of the batch.
/// </remarks>
public sealed record SpawnInstance
{
    private static readonly IReadOnlyDictionary<string, string?> s_noVariables =
        new ReadOnlyDictionary<string, string?>(new Dictionary<string, string?>(StringComparer.Ordinal));

    /// <summary>An instance with no arguments, the batch's environment and no CPU set of its own.</summary>
    public SpawnInstance()
    {
    }

    /// <summary>An instance with these arguments.</summary>
    /// <param name="arguments">The arguments, without argv[0] (as <see cref="System.Diagnostics.ProcessStartInfo.ArgumentList"/>).</param>
    public SpawnInstance(IReadOnlyList<string> arguments)
    {
        Arguments = arguments;
    }

    /// <summary>The arguments, without argv[0] (which <see cref="SpawnOptions.Argv0"/> sets for the whole batch). Default: none.</summary>
    public IReadOnlyList<string> Arguments { get; init; } = [];

    /// <summary>
    /// Changes to the batch's environment for this instance: a non-null value sets the variable, a null value removes it.
    /// Names are case-sensitive, non-empty and contain no '='. Default: no changes.
    /// </summary>
    public IReadOnlyDictionary<string, string?> Environment { get; init; } = s_noVariables;

    /// <summary>
    /// The CPUs (indices 0 to 1023) this instance may run on, or null (the default) for the batch's
    /// (<see cref="SpawnOptions.Cpus"/>, or <see cref="SpawnOptions.CpuSetsPerInstance"/> by the instance's index), else
    /// the proxy's affinity. A set the kernel refuses (an offline CPU, none allowed for this process) fails this instance
    /// alone, with <c>EINVAL</c>.
    /// </summary>
    public IReadOnlySet<int>? Cpus { get; init; }

    /// <summary>
    /// The cgroup v2 directory this instance is created in (as <see cref="SpawnOptions.Cgroup"/>, for this instance
    /// alone), or null (the default) for the batch's. Every path of the batch is opened before anything is spawned: a
    /// missing one is a <see cref="PSpawnFileNotFoundException"/> naming it, no permission a
    /// <see cref="PSpawnAccessDeniedException"/>, a cgroup v1 or non-cgroup directory a <see cref="PSpawnException"/>
    /// (<c>EOPNOTSUPP</c>).
    /// </summary>
    public string? Cgroup { get; init; }

    /// <summary>Returns a copy of this instance that also sets (or, with a null value, removes) one variable.</summary>
    /// <param name="name">The variable's name.</param>
    /// <param name="value">Its value, or null to remove it.</param>
    /// <returns>The new instance.</returns>
    public SpawnInstance WithEnvironmentVariable(string name, string? value)
    {
        SpawnOptions.ValidateVariableName(name, nameof(name));
        var variables = new Dictionary<string, string?>(Environment, StringComparer.Ordinal)
        {
            [name] = value,
        };
        return this with { Environment = new ReadOnlyDictionary<string, string?>(variables) };
    }
}
