using System.Diagnostics;
using System.Globalization;
using System.IO.Pipes;
using System.Runtime.InteropServices;
using PSpawn;

// A separate .NET process for the scenarios the test host itself must not run (tests/PSpawn.Tests
// ChildProcessScenarioTests runs it). Every command prints "key=value" lines the test parses and exits 0 when the
// scenario behaved, 1 when it did not, 2 on bad usage.
//
//   live COUNT REPORT            COUNT children of the report fixture, all alive at once (each blocks reading one
//                                shared stdin pipe), then EOF for all of them, wait all, check every exit status
//   create-nofile LIMIT NOOP     lower the soft RLIMIT_NOFILE to LIMIT, create a context, report the outcome
//   pipes-nofile LIMIT REPORT    lower the soft RLIMIT_NOFILE to LIMIT, spawn piped children until EMFILE
//   credentials NOOP             create a context, change this process's supplementary groups, spawn (EPERM expected)
//   spawn-forever NOOP           print the proxy's pid, then SpawnN(100000) (the test SIGKILLs this process)
//   kill-launcher NOOP           as a child subreaper: run spawn-forever in a child, SIGKILL it after 300 ms, check
//                                that its proxy stops within 1 s and no children keep appearing; reap everything
return args.Length switch
{
    3 when args[0] == "live" => await Scenarios.Live(int.Parse(args[1], CultureInfo.InvariantCulture), args[2]),
    3 when args[0] == "create-nofile" => Scenarios.CreateWithLowNoFile(int.Parse(args[1], CultureInfo.InvariantCulture), args[2]),
    3 when args[0] == "pipes-nofile" => await Scenarios.PipesWithLowNoFile(int.Parse(args[1], CultureInfo.InvariantCulture), args[2]),
    2 when args[0] == "credentials" => Scenarios.CredentialsChanged(args[1]),
    2 when args[0] == "spawn-forever" => Scenarios.SpawnForever(args[1]),
    2 when args[0] == "kill-launcher" => await KillLauncher.Run(args[1]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: PSpawn.TestHost live COUNT REPORT | create-nofile LIMIT NOOP | pipes-nofile LIMIT REPORT | spawn-forever NOOP | kill-launcher NOOP");
    return 2;
}

internal static class Scenarios
{
    public static async Task<int> Live(int count, string report)
    {
        Console.WriteLine($"nofile={Native.SoftNoFile()}");
        await using var context = PSpawnContext.Create(report);
        using var stdin = new AnonymousPipeServerStream(PipeDirection.Out, HandleInheritability.None);
        var options = new SpawnOptions
        {
            StandardInput = StdioTarget.FromHandle(stdin.ClientSafePipeHandle),
            StandardOutput = StdioTarget.Null,
        };
        IReadOnlyList<SpawnedProcess> children = context.SpawnN(count, ["--report-stdin-echo"], options);
        stdin.DisposeLocalCopyOfClientHandle();
        int running = children.Count(c => !c.HasExited);
        Console.WriteLine($"spawned={children.Count}");
        Console.WriteLine($"running={running}");
        Console.WriteLine($"fds={Directory.GetFileSystemEntries("/proc/self/fd").Length}");

        // The runtime must still be able to do its work with every child alive: a thread, a timer, a file.
        var thread = new Thread(() => { }) { IsBackground = true };
        thread.Start();
        thread.Join();
        await Task.Delay(10);
        string tempFile = Path.GetTempFileName();
        Console.WriteLine($"temp-file={File.Exists(tempFile)}");
        File.Delete(tempFile); // tests leave nothing behind in /tmp

        // The last child has no pidfd (the budget was spent long before): Kill goes through kill(2) under the
        // process's lock, and the poller collects its status.
        SpawnedProcess victim = children[^1];
        victim.Kill(15);
        await victim.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Console.WriteLine($"killed-signal={victim.TerminatingSignal}");

        stdin.Dispose(); // EOF: every child exits
        await Task.WhenAll(children.Select(c => c.WaitForExitAsync())).WaitAsync(TimeSpan.FromSeconds(60));
        int collected = children.Count(c => c.HasExited && (c == victim ? c.TerminatingSignal == 15 : c.ExitCode == 0));
        Console.WriteLine($"collected={collected}");
        return children.Count == count && running == count && collected == count ? 0 : 1;
    }

    public static int CreateWithLowNoFile(int limit, string noop)
    {
        // Load everything the failure path needs (assemblies, the native libraries, Mono.Unix) while descriptors can
        // still be opened: with the limit lowered, not even an assembly can be loaded.
        using (PSpawnContext.Create(noop))
        {
        }

        try
        {
            using var missing = PSpawnContext.Create(noop + ".missing");
        }
        catch (PSpawnFileNotFoundException)
        {
        }

        Console.WriteLine($"fds={string.Join(',', Directory.GetFileSystemEntries("/proc/self/fd").Select(Path.GetFileName))}");
        Native.SetSoftNoFile(limit);
        int result = 1;
        try
        {
            using var context = PSpawnContext.Create(noop);
            Console.WriteLine("outcome=created");
            result = 0;
        }
        catch (Exception e) when (e is IPSpawnError error)
        {
            Console.WriteLine($"outcome={e.GetType().Name}");
            Console.WriteLine($"errno={error.Errno}");
            Console.WriteLine($"message={e.Message}");
            result = error.Errno is Mono.Unix.Native.Errno.EMFILE ? 0 : 1;
        }

        Native.SetSoftNoFile(4096);
        return result;
    }

    public static async Task<int> PipesWithLowNoFile(int limit, string report)
    {
        await using var context = PSpawnContext.Create(report);
        Native.SetSoftNoFile(limit);
        var options = new SpawnOptions { StandardInput = StdioTarget.Pipe, StandardOutput = StdioTarget.Null };
        var all = new List<SpawnedProcess>();
        PSpawnException? failure = null;
        for (int round = 0; round < 100 && failure is null; round++)
        {
            try
            {
                all.AddRange(context.SpawnN(50, ["--report-stdin-echo"], options));
            }
            catch (PSpawnException e)
            {
                failure = e;
                all.AddRange(e.StartedProcesses);
            }
        }

        Console.WriteLine($"errno={failure?.Errno.ToString() ?? "none"}");
        Console.WriteLine($"started={all.Count}");
        Console.WriteLine($"exception={failure?.GetType().Name}");
        Console.WriteLine($"message={failure?.Message}");

        // The runtime still works: a thread, then EOF to every child and every exit status.
        var thread = new Thread(() => { }) { IsBackground = true };
        thread.Start();
        thread.Join();
        foreach (SpawnedProcess child in all)
        {
            child.StandardInput.Dispose();
        }

        await Task.WhenAll(all.Select(c => c.WaitForExitAsync())).WaitAsync(TimeSpan.FromSeconds(60));
        int collected = all.Count(c => c.ExitCode == 0);
        Console.WriteLine($"collected={collected}");
        foreach (SpawnedProcess child in all)
        {
            child.Dispose();
        }

        return failure is { Errno: Mono.Unix.Native.Errno.EMFILE } && all.Count > 0 && collected == all.Count ? 0 : 1;
    }

    public static int CredentialsChanged(string noop)
    {
        using var context = PSpawnContext.Create(noop);
        context.Spawn([]).WaitForExit();
        uint[] groups = Native.Groups();
        Native.SetGroups([.. groups, 54321]); // glibc applies it to every thread of the process
        try
        {
            context.Spawn([]);
            Console.WriteLine("outcome=spawned");
            return 1;
        }
        catch (PSpawnException e)
        {
            Console.WriteLine($"outcome={e.GetType().Name}");
            Console.WriteLine($"errno={e.Errno}");
            Console.WriteLine($"message={e.Message}");
            return e.Errno == Mono.Unix.Native.Errno.EPERM ? 0 : 1;
        }
        finally
        {
            Native.SetGroups(groups);
        }
    }

    public static int SpawnForever(string noop)
    {
        using var context = PSpawnContext.Create(noop);
        Console.WriteLine($"proxy={context.ProxyProcessId}");
        Console.Out.Flush();
        context.SpawnN(100_000, []);
        Console.WriteLine("returned");
        return 1;
    }
}

internal static partial class Native
{
    private const int RLIMIT_NOFILE = 7;
    private const int PR_SET_CHILD_SUBREAPER = 36;

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    [LibraryImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    private static unsafe partial int GetRLimit(int resource, RLimit* limit);

    [LibraryImport("libc", EntryPoint = "setrlimit", SetLastError = true)]
    private static unsafe partial int SetRLimit(int resource, RLimit* limit);

    [LibraryImport("libc", EntryPoint = "prctl", SetLastError = true)]
    private static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [LibraryImport("libc", EntryPoint = "waitpid", SetLastError = true)]
    public static unsafe partial int WaitPid(int pid, int* status, int options);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "getgroups", SetLastError = true)]
    private static unsafe partial int GetGroups(int size, uint* list);

    [LibraryImport("libc", EntryPoint = "setgroups", SetLastError = true)]
    private static unsafe partial int SetGroupsNative(nuint size, uint* list);

    public static unsafe uint[] Groups()
    {
        uint[] groups = new uint[GetGroups(0, null)];
        fixed (uint* list = groups)
        {
            _ = GetGroups(groups.Length, list);
        }

        return groups;
    }

    public static unsafe void SetGroups(uint[] groups)
    {
        fixed (uint* list = groups)
        {
            if (SetGroupsNative((nuint)groups.Length, list) != 0)
            {
                throw new InvalidOperationException($"setgroups failed: {Marshal.GetLastPInvokeError()} (this scenario needs root or CAP_SETGID)");
            }
        }
    }

    public static unsafe ulong SoftNoFile()
    {
        RLimit limit;
        return GetRLimit(RLIMIT_NOFILE, &limit) == 0 ? limit.Current : 0;
    }

    public static unsafe void SetSoftNoFile(int value)
    {
        RLimit limit;
        if (GetRLimit(RLIMIT_NOFILE, &limit) != 0)
        {
            throw new InvalidOperationException("getrlimit failed");
        }

        limit.Current = Math.Min((ulong)value, limit.Maximum);
        if (SetRLimit(RLIMIT_NOFILE, &limit) != 0)
        {
            throw new InvalidOperationException($"setrlimit failed: {Marshal.GetLastPInvokeError()}");
        }
    }

    public static void BecomeSubreaper()
    {
        if (Prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        {
            throw new InvalidOperationException($"prctl(PR_SET_CHILD_SUBREAPER) failed: {Marshal.GetLastPInvokeError()}");
        }
    }
}

/// <summary>
/// Defect 2: SIGKILL a launcher in the middle of SpawnN(100000); its proxy must notice between forks and stop within
/// a second. This process is a child subreaper, so the killed launcher's proxy and children become its children: it
/// can watch the proxy, see whether children keep appearing, and reap every one of them.
/// </summary>
internal static class KillLauncher
{
    private const int SIGKILL = 9;
    private const int WNOHANG = 1;
    private const int ECHILD = 10;

    public static async Task<int> Run(string noop)
    {
        Native.BecomeSubreaper();
        var info = new ProcessStartInfo(Environment.ProcessPath!)
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        if (!Environment.ProcessPath!.EndsWith("PSpawn.TestHost", StringComparison.Ordinal))
        {
            info.ArgumentList.Add(typeof(KillLauncher).Assembly.Location); // run through the dotnet host
        }

        info.ArgumentList.Add("spawn-forever");
        info.ArgumentList.Add(noop);
        using var launcher = Process.Start(info)!;
        string? line = await launcher.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
        if (line is null || !line.StartsWith("proxy=", StringComparison.Ordinal) || !int.TryParse(line.AsSpan(6), out int proxy))
        {
            Console.WriteLine($"error=no proxy pid from the launcher ({line})");
            launcher.Kill();
            return 1;
        }

        Console.WriteLine($"launcher={launcher.Id}");
        Console.WriteLine($"proxy={proxy}");
        await Task.Delay(300);
        int before = ChildrenOf(launcher.Id);
        _ = Native.Kill(launcher.Id, SIGKILL);
        var clock = Stopwatch.StartNew();
        await launcher.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));

        // The proxy, re-parented to us, is a zombie (or gone) once it has stopped.
        double? stoppedMs = null;
        while (clock.Elapsed < TimeSpan.FromSeconds(1.5)) // not longer: a proxy that forks on uses up pids fast
        {
            if (!IsAlive(proxy))
            {
                stoppedMs = clock.Elapsed.TotalMilliseconds;
                break;
            }

            await Task.Delay(5);
        }

        Console.WriteLine($"children-before-kill={before}");
        Console.WriteLine($"proxy-stopped-ms={(stoppedMs is double ms ? ms.ToString("0", CultureInfo.InvariantCulture) : "never")}");
        if (stoppedMs is null)
        {
            _ = Native.Kill(proxy, SIGKILL); // leave the machine clean, and stop it forking
        }

        // Reap everything that was re-parented to us (the proxy and the launcher's children), then check that no new
        // child appears for a while.
        int reaped = await ReapAll(TimeSpan.FromSeconds(10));
        await Task.Delay(300);
        int late = await ReapAll(TimeSpan.FromSeconds(10));
        Console.WriteLine($"reaped={reaped}");
        Console.WriteLine($"appeared-after={late}");
        return stoppedMs is <= 1000 && late == 0 ? 0 : 1;
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            char state = stat[stat.LastIndexOf(')') + 2];
            return state is not ('Z' or 'X');
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>How many processes have <paramref name="parent"/> as their parent (from /proc).</summary>
    private static int ChildrenOf(int parent)
    {
        int count = 0;
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            try
            {
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1], CultureInfo.InvariantCulture) == parent)
                {
                    count++;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
            {
                // not a process, or gone
            }
        }

        return count;
    }

    private static unsafe int ReapOne()
    {
        int status;
        return Native.WaitPid(-1, &status, WNOHANG);
    }

    /// <summary>Reaps every child until none is left (ECHILD), waiting for running ones; the number reaped.</summary>
    private static async Task<int> ReapAll(TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        int reaped = 0;
        while (clock.Elapsed < limit)
        {
            int pid = ReapOne();

            if (pid > 0)
            {
                reaped++;
                continue;
            }

            if (pid < 0 && Marshal.GetLastPInvokeError() == ECHILD)
            {
                break;
            }

            await Task.Delay(5); // children still running
        }

        return reaped;
    }
}
