using System.Collections.ObjectModel;

namespace PSpawn;

/// <summary>
/// Options of one spawn request (<see cref="PSpawnContext.Spawn"/> or <see cref="PSpawnContext.SpawnN"/>).
/// Immutable: derive variants with <c>with</c> expressions or <see cref="WithEnvironmentVariable"/>.
/// </summary>
/// <remarks>
/// The environment of a child is built in two steps: start from this process's environment
/// (<see cref="Environment.GetEnvironmentVariables()"/>, so <see cref="Environment.SetEnvironmentVariable(string, string)"/>
/// changes count, as with <see cref="System.Diagnostics.Process"/>) when <see cref="InheritEnvironment"/> is true, or
/// from an empty one; then apply <see cref="Environment"/>: a non-null value sets the variable, a null value
/// removes it. To replace the environment entirely, set <see cref="InheritEnvironment"/> to false and list the
/// variables in <see cref="Environment"/>. More options (standard streams, working directory, CPU affinity) are
/// planned; adding them will not change the meaning of these.
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

    internal static void ValidateVariableName(string name, string paramName)
    {
        ArgumentNullException.ThrowIfNull(name, paramName);
        if (name.Length == 0 || name.Contains('=', StringComparison.Ordinal) || name.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException($"'{name}' is not a valid environment variable name: it must be non-empty and contain neither '=' nor NUL.", paramName);
        }
    }
}
