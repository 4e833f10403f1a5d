namespace PSpawn;

/// <summary>
/// Watches the children that have no pidfd (the <see cref="DescriptorBudget"/> was spent, pidfd_open failed, or a
/// relay-mode exit whose status the proxy has not recorded yet): one background thread for all of them, started on
/// first use, no descriptor, no timer or thread per child.
/// </summary>
/// <remarks>
/// Each scan peeks every child with waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT), which neither blocks nor reaps
/// (relay-mode children, which are the proxy's, are checked in the proxy's exit-status table instead), and reaps
/// through <see cref="SpawnedProcess"/> only the ones that have exited, under the process's lock, so that
/// <see cref="SpawnedProcess.Kill(int)"/> without a pidfd can never signal a reused pid. Between scans the thread
/// sleeps <see cref="MinIntervalMs"/> after new children arrive, doubling up to <see cref="MaxIntervalMs"/> while
/// nothing exits (halving when something does). A child still running when descriptors are free again gets a pidfd
/// and moves to the <see cref="ExitWatcher"/>, so the poller empties itself when the pressure ends.
/// </remarks>
internal sealed class ExitPoller
{
    /// <summary>The shortest sleep between scans, right after children were added.</summary>
    public const int MinIntervalMs = 1;

    /// <summary>The longest sleep between scans: an unwatched child's exit is seen at most this late.</summary>
    public const int MaxIntervalMs = 100;

    private static readonly ExitPoller s_instance = new();

    private readonly object _gate = new();
    private readonly List<SpawnedProcess> _added = [];
    private Thread? _thread;
    private int _count;

    private ExitPoller()
    {
    }

    /// <summary>The children being polled (for tests and diagnostics).</summary>
    public static int Count => Volatile.Read(ref s_instance._count) + s_instance.AddedCount;

    private int AddedCount
    {
        get
        {
            lock (_gate)
            {
                return _added.Count;
            }
        }
    }

    /// <summary>Starts polling <paramref name="process"/>.</summary>
    public static void Add(SpawnedProcess process)
    {
        ExitPoller poller = s_instance;
        lock (poller._gate)
        {
            poller._added.Add(process);
            poller.EnsureStarted();
            Monitor.Pulse(poller._gate);
        }
    }

    /// <summary>Starts polling every process in <paramref name="processes"/> (one wake-up).</summary>
    public static void AddRange(List<SpawnedProcess> processes)
    {
        if (processes.Count == 0)
        {
            return;
        }

        ExitPoller poller = s_instance;
        lock (poller._gate)
        {
            poller._added.AddRange(processes);
            poller.EnsureStarted();
            Monitor.Pulse(poller._gate);
        }
    }

    private void EnsureStarted()
    {
        if (_thread is null)
        {
            _thread = new Thread(Run) { IsBackground = true, Name = "PSpawn exit poller" };
            _thread.Start();
        }
    }

    private void Run()
    {
        var polled = new List<SpawnedProcess>();
        int intervalMs = MinIntervalMs;
        while (true)
        {
            lock (_gate)
            {
                if (_added.Count == 0)
                {
                    if (polled.Count == 0)
                    {
                        Monitor.Wait(_gate);
                    }
                    else
                    {
                        Monitor.Wait(_gate, intervalMs);
                    }
                }

                if (_added.Count > 0)
                {
                    polled.AddRange(_added);
                    _added.Clear();
                    intervalMs = MinIntervalMs;
                }
            }

            int exited = 0;
            bool mayPromote = true;
            for (int i = polled.Count - 1; i >= 0; i--)
            {
                if (polled[i].PollExit(ref mayPromote))
                {
                    polled[i] = polled[^1];
                    polled.RemoveAt(polled.Count - 1);
                    exited++;
                }
            }

            Volatile.Write(ref _count, polled.Count);
            intervalMs = exited > 0 ? Math.Max(MinIntervalMs, intervalMs / 2) : Math.Min(MaxIntervalMs, intervalMs * 2);
        }
    }
}
