using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;

namespace PSpawn;

/// <summary>
/// One dedicated thread, alive as long as the process, on which every native context is created. In zygote mode
/// the children's parent is the thread that created the proxy, and PR_SET_PDEATHSIG
/// (<see cref="SpawnOptions.KillOnParentDeath"/>) fires when that <em>thread</em> exits: a thread-pool thread
/// that retires would kill the children. Creating contexts here makes the signal mean "this process died".
/// </summary>
internal static class ContextCreationThread
{
    private static readonly BlockingCollection<Action> s_work = [];
    private static readonly Lazy<Thread> s_thread = new(Start, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Runs <paramref name="body"/> on the dedicated thread and returns its result (or rethrows its exception).</summary>
    public static T Invoke<T>(Func<T> body)
    {
        if (Thread.CurrentThread == s_thread.Value)
        {
            return body();
        }

        T result = default!;
        ExceptionDispatchInfo? failure = null;
        using var done = new ManualResetEventSlim();
        s_work.Add(() =>
        {
            try
            {
                result = body();
            }
#pragma warning disable CA1031 // Rethrown on the calling thread.
            catch (Exception e)
#pragma warning restore CA1031
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
            finally
            {
                done.Set();
            }
        });
        done.Wait();
        failure?.Throw();
        return result;
    }

    private static Thread Start()
    {
        var thread = new Thread(Run)
        {
            IsBackground = true,
            Name = "PSpawn context creator",
        };
        thread.Start();
        return thread;
    }

    private static void Run()
    {
        foreach (Action work in s_work.GetConsumingEnumerable())
        {
            work();
        }
    }
}
