using System.Globalization;
using System.Runtime.InteropServices;

namespace PSpawn.Tests.Infrastructure;

/// <summary>Looks at processes through /proc and a few system calls, independently of the library.</summary>
public static partial class LinuxProcesses
{
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial nint Syscall2(nint number, nint arg1, nint arg2);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static unsafe partial int Poll(PollFd* fds, nuint count, int timeoutMs);

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    /// <summary>pidfd_open(pid, 0), or -1.</summary>
    public static int PidFdOpen(int pid) => (int)Syscall2(434, pid, 0);

    /// <summary>Whether a pidfd is readable (the process exited), waiting at most <paramref name="timeoutMs"/>.</summary>
    public static unsafe bool PidFdExited(int pidfd, int timeoutMs)
    {
        var fd = new PollFd { Fd = pidfd, Events = 1 };
        return Poll(&fd, 1, timeoutMs) == 1 && (fd.Revents & 1) != 0;
    }

    /// <summary>The open file descriptors of this process.</summary>
    public static int OpenFdCount() => Directory.GetFileSystemEntries("/proc/self/fd").Length;

    /// <summary>(pid, state) of every process whose parent is <paramref name="parent"/>.</summary>
    public static List<(int Pid, char State)> Children(int parent)
    {
        var result = new List<(int, char)>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
            {
                continue;
            }

            if (ReadStat(pid) is { } stat && stat.Ppid == parent)
            {
                result.Add((pid, stat.State));
            }
        }

        return result;
    }

    /// <summary>Zombie children of this process.</summary>
    public static List<int> Zombies() =>
        Children(Environment.ProcessId).Where(c => c.State == 'Z').Select(c => c.Pid).ToList();

    /// <summary>State and parent from /proc/PID/stat, or null when the process is gone.</summary>
    public static (char State, int Ppid)? ReadStat(int pid)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }

        // "pid (comm) S ppid ...": comm may contain spaces and parentheses, so split after the last ')'.
        int close = text.LastIndexOf(')');
        if (close < 0)
        {
            return null;
        }

        string[] fields = text[(close + 2)..].Split(' ');
        return (fields[0][0], int.Parse(fields[1], CultureInfo.InvariantCulture));
    }

    public static bool Exists(int pid) => Directory.Exists($"/proc/{pid}");
}
