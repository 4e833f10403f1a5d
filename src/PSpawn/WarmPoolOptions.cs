namespace PSpawn;

/// <summary>The warm pool of a context (<see cref="PSpawnContextOptions.WarmPool"/>): how many children each proxy keeps
/// parked before <c>main</c>, and when an idle pool is ended.</summary>
public sealed class WarmPoolOptions
{
    /// <summary>The most children one proxy may keep parked (the native PSPAWN_POOL_MAX).</summary>
    public const int MaxSize = Interop.PSpawnCore.PoolMax;

    /// <summary>Parked children per proxy, 1 to <see cref="MaxSize"/>. Default 4.</summary>
    public int Size { get; init; } = 4;

    /// <summary>
    /// After this long without a spawn, the parked children are ended (memory back) and the pool is refilled on the next spawn.
    /// Null (the default): never.
    /// </summary>
    public TimeSpan? IdleTrim { get; init; }

    internal int NativeIdleMs => IdleTrim is TimeSpan idle ? PSpawnContextOptions.ToMilliseconds(idle) : 0;

    internal void Validate()
    {
        if (Size < 1 || Size > MaxSize)
        {
            throw new ArgumentOutOfRangeException(nameof(Size), Size, $"The warm pool holds 1 to {MaxSize} children per proxy.");
        }

        if (IdleTrim is TimeSpan idle && (idle <= TimeSpan.Zero || idle.TotalMilliseconds > int.MaxValue))
        {
            throw new ArgumentOutOfRangeException(nameof(IdleTrim), idle, "The idle trim time must be positive and at most int.MaxValue milliseconds.");
        }
    }
}
