namespace PSpawn.Tests.Infrastructure;

/// <summary>Every wait in the tests is bounded, so that a bug can fail a test but never hang CI.</summary>
public static class Bounded
{
    /// <summary>The default limit for one wait.</summary>
    public static readonly TimeSpan Default = TimeSpan.FromSeconds(60);

    public static Task Within(this Task task, TimeSpan? limit = null) => task.WaitAsync(limit ?? Default);

    public static Task<T> Within<T>(this Task<T> task, TimeSpan? limit = null) => task.WaitAsync(limit ?? Default);

    /// <summary>Waits for every process, bounded.</summary>
    public static Task ExitAll(this IEnumerable<SpawnedProcess> processes, TimeSpan? limit = null) =>
        Task.WhenAll(processes.Select(p => p.WaitForExitAsync())).Within(limit);

    /// <summary>Runs synchronous test code on a worker thread, bounded.</summary>
    public static Task Run(Action body, TimeSpan? limit = null) => Task.Run(body).Within(limit);

    /// <summary>Polls <paramref name="condition"/> until it holds, or fails after <paramref name="limit"/>.</summary>
    public static async Task Until(Func<bool> condition, string what, TimeSpan? limit = null)
    {
        var deadline = DateTime.UtcNow + (limit ?? Default);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out waiting until {what}.");
            }

            await Task.Delay(10);
        }
    }
}
