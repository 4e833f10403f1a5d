using System.Globalization;
using System.Runtime.InteropServices;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

/// <summary>
/// The reliability tests (issue #6) count descriptors, threads, memory and children of the whole test process,
/// so nothing else may run meanwhile.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ReliabilityCollection
{
    public const string Name = "Reliability";
}

/// <summary>Measurements of this process and of others, through /proc and a few system calls.</summary>
public static partial class ReliabilityProbes
{
    public const int SIGSTOP = 19;
    public const int SIGCONT = 18;
    private const int WNOHANG = 1;
    private const int ECHILD = 10;

    [LibraryImport("libc", EntryPoint = "waitpid", SetLastError = true)]
    private static partial int WaitPid(int pid, out int status, int options);

    /// <summary>The Threads line of /proc/self/status.</summary>
    public static int ThreadCount() => (int)(StatusField("self", "Threads") ?? -1);

    /// <summary>VmRSS in kB of a process (or "self"), or null when it is gone.</summary>
    public static long? RssKb(string pid) => StatusField(pid, "VmRSS");

    /// <summary>/proc/PID/comm, or null when the process is gone.</summary>
    public static string? Comm(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/comm").TrimEnd('\n');
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// True when <paramref name="pid"/> is not (or no longer) a waitable child of this process: waitpid(WNOHANG)
    /// fails with ECHILD. Call it only for children the library has already reaped: it would otherwise steal an
    /// exit status (which is what the callers assert cannot happen).
    /// </summary>
    public static bool AlreadyReaped(int pid)
    {
        int result = WaitPid(pid, out _, WNOHANG);
        return result == -1 && Marshal.GetLastPInvokeError() == ECHILD;
    }

    /// <summary>The children of this process, other than zombies, whose comm is <paramref name="comm"/>.</summary>
    public static HashSet<int> LiveChildren(string comm) =>
        LinuxProcesses.Children(Environment.ProcessId)
            .Where(c => c.State != 'Z' && Comm(c.Pid) == comm)
            .Select(c => c.Pid)
            .ToHashSet();

    /// <summary>Pids of this process's children (any state).</summary>
    public static HashSet<int> ChildPids() =>
        LinuxProcesses.Children(Environment.ProcessId).Select(c => c.Pid).ToHashSet();

    /// <summary>
    /// Runs <paramref name="body"/> and checks that it left nothing behind: no new child (running or zombie) once
    /// things settle, and no more descriptors than before. Both are polled for a short while, because the exit
    /// watcher closes a pidfd and reaps a child asynchronously. The body runs once before the measurement, so that
    /// one-time initialisation (the exit watcher's epoll descriptor, native libraries, the runtime's own lazily
    /// opened files) is not counted; a leak per call shows in the second run.
    /// </summary>
    public static async Task NothingLeftBehind(Func<Task> body, string what)
    {
        await body();
        HashSet<int> childrenBefore = ChildPids();
        Dictionary<string, string> fdsBefore = OpenFds();

        await body();

        await Bounded.Until(() => !ChildPids().Except(childrenBefore).Any(), $"{what}: no new child remains", TimeSpan.FromSeconds(10));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (LinuxProcesses.OpenFdCount() > fdsBefore.Count && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Dictionary<string, string> fdsAfter = OpenFds();
        Assert.True(
            fdsAfter.Count <= fdsBefore.Count,
            $"{what}: {fdsBefore.Count} descriptors before, {fdsAfter.Count} after; new: " +
            string.Join(", ", fdsAfter.Where(fd => !fdsBefore.TryGetValue(fd.Key, out string? target) || target != fd.Value).Select(fd => $"{fd.Key} -> {fd.Value}")));
        Assert.Empty(LinuxProcesses.Zombies());
    }

    public static Task NothingLeftBehind(Action body, string what) =>
        NothingLeftBehind(() =>
        {
            body();
            return Task.CompletedTask;
        }, what);

    /// <summary>This process's descriptors and what they point to.</summary>
    public static Dictionary<string, string> OpenFds()
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string entry in System.IO.Directory.GetFileSystemEntries("/proc/self/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(entry).LinkTarget;
            }
            catch (IOException)
            {
                continue; // the listing's own descriptor, closed by now
            }

            result[Path.GetFileName(entry)] = target ?? "?";
        }

        return result;
    }

    private static long? StatusField(string pid, string name)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines($"/proc/{pid}/status");
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }

        string prefix = name + ":";
        foreach (string line in lines)
        {
            if (line.StartsWith(prefix, StringComparison.Ordinal))
            {
                string value = line[prefix.Length..].Trim();
                int space = value.IndexOf(' ', StringComparison.Ordinal);
                return long.Parse(space < 0 ? value : value[..space], CultureInfo.InvariantCulture);
            }
        }

        return null;
    }
}
