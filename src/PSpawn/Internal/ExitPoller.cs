namespace PSpawn;

/// <summary>
/// Watches the children that have no pidfd (the <see cref="DescriptorBudget"/> was spent, pidfd_open failed, or a
/// relay-mode exit whose status the proxy has not recorded yet): one background thread for all of them, started on
/// first use, no descriptor, no timer or thread per child.
/// </summary>
/// <remarks>
/// Each tick first asks the kernel once whether any child of this process has exited and is unreaped
/// (waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT), which neither blocks nor reaps); only when one of ours has (or a
/// foreign exited child might hide ours, or relay-mode children are polled, or a second has passed) does it scan the
/// polled children one by one with waitid(P_PID, pid, ..., WNOWAIT) (relay-mode children, which are the proxy's, in
/// the proxy's exit-status table), reaping through <see cref="SpawnedProcess"/> only those that have exited, under
/// the process's lock, so that <see cref="SpawnedProcess.Kill(int)"/> without a pidfd can never signal a reused pid.
/// Ticks are <see cref="MinIntervalMs"/> apart after new children arrive or exits, doubling up to
/// <see cref="MaxIntervalMs"/> while nothing exits. A child still running when descriptors are free again gets a
/// pidfd during a scan and moves to the <see cref="ExitWatcher"/>, so the poller empties itself when the pressure
/// ends. Measured cost (docs/benchmarks.md): about 0.3 % of a core per 1,000 children polled.
/// </remarks>
internal sealed class ExitPoller
{
    /// <summary>The shortest sleep between scans, right after children were added.</summary>
    public const int MinIntervalMs = 1;

    /// <summary>The longest sleep between two checks (and between scans while they are needed): an unwatched
    /// child's exit is seen at most this late.</summary>
    public const int MaxIntervalMs = 100;

    /// <summary>Every polled child is checked on its own at least this often.</summary>
    public const int FullScanMs = 1000;

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
        var byPid = new Dictionary<int, SpawnedProcess>(); // this process's own children among them (not relay mode)
        int tickMs = MinIntervalMs;
        int scanMs = MinIntervalMs;
        long lastScan = 0;
        while (true)
        {
            bool added = false;
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
                        Monitor.Wait(_gate, tickMs);
                    }
                }

                if (_added.Count > 0)
                {
                    foreach (SpawnedProcess process in _added)
                    {
                        polled.Add(process);
                        if (!process.IsRelayChild)
                        {
                            byPid[process.Id] = process;
                        }
                    }

                    _added.Clear();
                    added = true;
                    tickMs = scanMs = MinIntervalMs;
                }
            }

            // Cheap check first: one waitid(P_ALL, WNOWAIT) names an exited, unreaped child of this process if there is
            // one. It is O(children) inside the kernel (~0.25 µs each here) but one system call, 4x cheaper than asking
            // for every child on its own, so a tick where nothing exited does only this. (Asking again after each
            // reap would be quadratic in a burst of exits: one scan serves the whole burst instead.)
            int pid = PeekExitedChild();
            bool ours = pid > 0 && byPid.ContainsKey(pid);
            bool hidden = pid > 0 && !ours; // watched through a pidfd, or not PSpawn's: it may hide ours
            bool relay = byPid.Count < polled.Count;

            // Full scan: each child on its own (relay-mode children are checked in the proxy's table), which also
            // moves running children to a pidfd when descriptors are free again. Due at once after additions or when
            // one of ours exited; at the scan back-off while a foreign exited child may hide ours or relay-mode
            // children are polled; and every second regardless (a child reaped by other code, the pidfd promotion).
            long now = Environment.TickCount64;
            bool due = added || ours || now - lastScan >= ((hidden || relay) ? scanMs : FullScanMs);
            int done = 0;
            if (due)
            {
                lastScan = now;
                bool mayPromote = true;
                for (int i = polled.Count - 1; i >= 0; i--)
                {
                    SpawnedProcess process = polled[i];
                    if (process.PollExit(ref mayPromote))
                    {
                        polled[i] = polled[^1];
                        polled.RemoveAt(polled.Count - 1);
                        byPid.Remove(process.Id);
                        done++;
                    }
                }

                scanMs = done > 0 ? Math.Max(MinIntervalMs, scanMs / 2) : Math.Min(MaxIntervalMs, scanMs * 2);
            }

            Volatile.Write(ref _count, polled.Count);
            tickMs = done > 0 ? MinIntervalMs : Math.Min(MaxIntervalMs, tickMs * 2);
        }
    }

    /// <summary>waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT): the pid of an exited, unreaped child of this process, or 0.</summary>
    private static unsafe int PeekExitedChild()
    {
        byte* info = stackalloc byte[Interop.Sys.SigInfoSize];
        new Span<byte>(info, Interop.Sys.SigInfoSize).Clear();
        int result = Interop.Sys.WaitId(Interop.Sys.P_ALL, 0, info, Interop.Sys.WEXITED | Interop.Sys.WNOHANG | Interop.Sys.WNOWAIT);
        return result == 0 ? *(int*)(info + Interop.Sys.SigInfoPidOffset) : 0;
    }
}
