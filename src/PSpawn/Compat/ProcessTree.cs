using System.Globalization;

namespace PSpawn;

/// <summary>
/// Kills a process and its descendants as <see cref="System.Diagnostics.Process.Kill(bool)"/> does on Unix: each process
/// is stopped (so that it starts no more children), its children are listed from /proc, then it is killed, then its
/// children in turn. Best effort, as Process's: a descendant that reparented away (a daemon) is not found.
/// </summary>
internal static class ProcessTree
{
    private const int SIGKILL = 9;
    private const int SIGSTOP = 19;

    internal static void Kill(SpawnedProcess root)
    {
        if (root.HasExited)
        {
            return;
        }

        root.Kill(SIGSTOP); // through its pidfd: cannot hit a reused pid
        List<int> children = ChildrenOf(root.Id);
        root.Kill(SIGKILL);
        foreach (int child in children)
        {
            KillDescendant(child);
        }
    }

    private static void KillDescendant(int pid)
    {
        if (Interop.Sys.Kill(pid, SIGSTOP) != 0)
        {
            return; // gone (ESRCH), or not ours to signal
        }

        List<int> children = ChildrenOf(pid);
        _ = Interop.Sys.Kill(pid, SIGKILL);
        foreach (int child in children)
        {
            KillDescendant(child);
        }
    }

    /// <summary>The processes whose parent is <paramref name="parent"/>, from each /proc/PID/stat.</summary>
    internal static List<int> ChildrenOf(int parent)
    {
        var children = new List<int>();
        foreach (string directory in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(directory.AsSpan()), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) &&
                ParentOf(pid) == parent)
            {
                children.Add(pid);
            }
        }

        return children;
    }

    private static int ParentOf(int pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return -1; // exited meanwhile
        }

        // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so parse after the last ')'.
        int close = stat.LastIndexOf(')');
        if (close < 0)
        {
            return -1;
        }

        string[] fields = stat[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return fields.Length > 1 && int.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out int ppid) ? ppid : -1;
    }
}
