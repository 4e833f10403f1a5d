using System.Globalization;
using System.Runtime.InteropServices;

namespace PSpawn.Compare;

/// <summary>The libc calls the .NET-side measurements need: getrusage and the glibc version.</summary>
internal static partial class LibC
{
    public const int RusageSelf = 0;
    public const int RusageChildren = -1;

    [StructLayout(LayoutKind.Sequential)]
    public struct TimeVal
    {
        public long Seconds;
        public long Microseconds;

        public readonly double TotalMicroseconds => (Seconds * 1e6) + Microseconds;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct RUsage
    {
        public TimeVal UserTime;
        public TimeVal SystemTime;
        public long MaxRss;
        public long IxRss;
        public long IdRss;
        public long IsRss;
        public long MinorFaults;
        public long MajorFaults;
        public long Swaps;
        public long InBlock;
        public long OutBlock;
        public long MsgSnd;
        public long MsgRcv;
        public long Signals;
        public long VoluntarySwitches;
        public long InvoluntarySwitches;

        public readonly double CpuMicroseconds => UserTime.TotalMicroseconds + SystemTime.TotalMicroseconds;
    }

    [LibraryImport("libc", EntryPoint = "getrusage", SetLastError = true)]
    private static partial int GetRUsageNative(int who, out RUsage usage);

    [LibraryImport("libc", EntryPoint = "gnu_get_libc_version")]
    private static partial IntPtr GnuGetLibcVersion();

    public static RUsage GetRUsage(int who)
    {
        if (GetRUsageNative(who, out RUsage usage) != 0)
        {
            throw new InvalidOperationException($"getrusage failed: errno {Marshal.GetLastPInvokeError()}");
        }

        return usage;
    }

    public static string GlibcVersion()
    {
        try
        {
            return Marshal.PtrToStringUTF8(GnuGetLibcVersion()) ?? "unknown";
        }
        catch (EntryPointNotFoundException)
        {
            return "not glibc";
        }
    }
}

/// <summary>CPU time and minor faults of a process we do not reap (a proxy), from /proc.</summary>
internal readonly record struct ProcCounters(double CpuUs, double MinorFaults)
{
    public static ProcCounters Read(int? pid)
    {
        if (pid is not > 0)
        {
            return default;
        }

        double cpu = 0, faults = 0;
        try
        {
            string sched = File.ReadAllText($"/proc/{pid}/schedstat");
            cpu = double.Parse(sched.Split(' ')[0], CultureInfo.InvariantCulture) / 1000.0;
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            faults = double.Parse(fields[7], CultureInfo.InvariantCulture); // field 10: minflt
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return new ProcCounters(cpu, faults);
    }

    public static ProcCounters operator +(ProcCounters a, ProcCounters b) => new(a.CpuUs + b.CpuUs, a.MinorFaults + b.MinorFaults);

    public static ProcCounters operator -(ProcCounters a, ProcCounters b) => new(a.CpuUs - b.CpuUs, a.MinorFaults - b.MinorFaults);

    public static double RssKb(int? pid)
    {
        if (pid is not > 0)
        {
            return double.NaN;
        }

        try
        {
            foreach (string line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    return double.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
                }
            }
        }
        catch (IOException)
        {
        }

        return double.NaN;
    }
}

internal static class Machine
{
    public static MachineInfo Describe()
    {
        string cpu = "unknown";
        try
        {
            string? line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            if (line != null)
            {
                cpu = line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
            }
        }
        catch (IOException)
        {
        }

        string Read(string path)
        {
            try
            {
                return File.ReadAllText(path).Trim();
            }
            catch (IOException)
            {
                return "unknown";
            }
        }

        string load = Read("/proc/loadavg");
        string[] parts = load.Split(' ');
        string native;
        string numa;
        try
        {
            native = PSpawnContext.NativeVersion;
            IReadOnlyList<PSpawnNumaNode> nodes = PSpawnTopology.Read();
            numa = $"{nodes.Count} NUMA node{(nodes.Count == 1 ? string.Empty : "s")} ({string.Join("; ", nodes.Select(n => $"{n.Id}: CPUs {string.Join(',', n.Cpus.Order())}"))})";
        }
        catch (DllNotFoundException)
        {
            native = numa = "not found";
        }
        catch (PSpawnException e)
        {
            native = PSpawnContext.NativeVersion;
            numa = $"NUMA unknown ({e.Errno})";
        }

        return new MachineInfo
        {
            Cpu = cpu,
            Cores = System.Environment.ProcessorCount,
            Kernel = Read("/proc/sys/kernel/osrelease"),
            Glibc = LibC.GlibcVersion(),
            DotNet = RuntimeInformation.FrameworkDescription,
            PSpawnNative = native,
            Numa = numa,
            LoadAverage = parts.Length >= 3 ? string.Join(' ', parts[..3]) : load,
        };
    }
}
