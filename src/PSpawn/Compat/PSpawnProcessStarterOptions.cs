namespace PSpawn;

/// <summary>Options of a <see cref="PSpawnProcessStarter"/>: how many contexts (zygotes) it keeps and for how long. Immutable.</summary>
public sealed record PSpawnProcessStarterOptions
{
    /// <summary>The defaults (those of <see cref="PSpawnProcessStarter.Shared"/>).</summary>
    public static PSpawnProcessStarterOptions Default { get; } = new();

    /// <summary>
    /// How many contexts (one per executable and loader environment, each with its proxies) may be alive at once; starting
    /// one more evicts the least recently used. Default 16; at least 1.
    /// </summary>
    public int MaxContexts { get; init; } = 16;

    /// <summary>
    /// A context not used for this long is evicted (its proxies stopped) by a timer; <see cref="Timeout.InfiniteTimeSpan"/>
    /// keeps contexts until they are evicted by <see cref="MaxContexts"/> or the starter is disposed. Default 30 seconds.
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The options of each context. Null (the default): <see cref="PSpawnContextOptions.Default"/> with
    /// <see cref="FallbackPolicy.PosixSpawn"/>, so executables a zygote cannot serve (static, set-user-ID, ...) are still
    /// started, by exec, and <see cref="PSpawnContextOptions.WatchImage"/>, so a library rebuilt between two starts is the one
    /// the next start gets (its stale context is replaced). <see cref="PSpawnContextOptions.ProxyEnvironment"/> is always
    /// replaced by the environment of the first start of the executable.
    /// </summary>
    public PSpawnContextOptions? ContextOptions { get; init; }

    /// <summary>The clock of the idle timer (a fake one can drive it by hand). Default <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxContexts, 1, nameof(MaxContexts));
        if (IdleTimeout != Timeout.InfiniteTimeSpan && IdleTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(IdleTimeout), IdleTimeout, "The idle timeout must be positive or Timeout.InfiniteTimeSpan.");
        }

        ArgumentNullException.ThrowIfNull(TimeProvider, nameof(TimeProvider));
        ContextOptions?.Validate();
    }
}
