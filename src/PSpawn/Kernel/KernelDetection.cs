using System.Globalization;

namespace PSpawn;

/// <summary>
/// Whether the running kernel has the pspawn/ipspawn system calls, and their numbers: read from
/// <c>$PSPAWN_SYSFS_ROOT/sys/kernel/pspawn/</c> (the variable is for tests, as in the native core), checked against
/// <see cref="Interop.KernelAbi.AbiVersion"/>, then probed (a call with a block too short for any version must fail with
/// <c>EINVAL</c>; <c>ENOSYS</c> means the numbers are not this kernel's). Never throws.
/// </summary>
internal sealed record KernelDetection(bool Available, long PSpawnNumber, long IPSpawnNumber, int AbiVersion, int MaxSpawns, string? Reason)
{
    /// <summary>The environment variable that moves the sysfs root (tests only).</summary>
    public const string RootVariable = "PSPAWN_SYSFS_ROOT";

    /// <summary>System-call numbers below this were all taken before the patch (Linux 5.3 reached 424); above the other bound none exist.</summary>
    private const long MinNumber = 424;
    private const long MaxNumber = 4095;

    private static readonly Lazy<KernelDetection> s_current = new(
        () => Detect(Environment.GetEnvironmentVariable(RootVariable) ?? string.Empty), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The running kernel's (detected once per process).</summary>
    public static KernelDetection Current => s_current.Value;

    /// <summary>Detects the system calls under <paramref name="root"/> ("" for the real /sys).</summary>
    public static KernelDetection Detect(string root)
    {
        string directory = root + Interop.KernelAbi.SysfsDir;
        if (!Directory.Exists(directory))
        {
            return Absent($"{directory} does not exist: this kernel has no pspawn/ipspawn system calls (see native/kernel/README.md)");
        }

        if (!TryRead(directory, "abi_version", out long abi, out string? why) ||
            !TryRead(directory, "pspawn_nr", out long pspawn, out why) ||
            !TryRead(directory, "ipspawn_nr", out long ipspawn, out why))
        {
            return Absent(why!);
        }

        if (abi < Interop.KernelAbi.AbiVersion)
        {
            return Absent($"{directory}/abi_version is {abi}; this library needs ABI version {Interop.KernelAbi.AbiVersion} or later");
        }

        if (pspawn is < MinNumber or > MaxNumber || ipspawn is < MinNumber or > MaxNumber || pspawn == ipspawn)
        {
            return Absent($"{directory} names implausible system-call numbers (pspawn {pspawn}, ipspawn {ipspawn})");
        }

        int maxSpawns = TryRead(directory, "max_spawns", out long max, out _) ? (int)Math.Clamp(max, 1, Interop.KernelAbi.MaxSpawns) : Interop.KernelAbi.MaxSpawns;
        if (Probe(pspawn) is string pspawnProblem)
        {
            return Absent($"system call {pspawn} (pspawn_nr) {pspawnProblem}");
        }

        if (Probe(ipspawn) is string ipspawnProblem)
        {
            return Absent($"system call {ipspawn} (ipspawn_nr) {ipspawnProblem}");
        }

        return new KernelDetection(true, pspawn, ipspawn, (int)abi, maxSpawns, null);
    }

    private static KernelDetection Absent(string reason) => new(false, 0, 0, 0, 0, reason);

    /// <summary>Calls the number with no block (size 0, below any version): pspawn and ipspawn refuse it with EINVAL, launching nothing.</summary>
    private static unsafe string? Probe(long number)
    {
        nint result = Interop.Kernel.Call(number, null, 0);
        int errno = result < 0 ? System.Runtime.InteropServices.Marshal.GetLastPInvokeError() : 0;
        return result >= 0 ? $"accepted an empty argument block (returned {result}): it is not pspawn"
            : errno == Interop.Sys.ENOSYS ? "does not exist on this kernel (ENOSYS)"
            : errno == Interop.Sys.EINVAL ? null
            : $"answered an empty argument block with errno {errno}, not EINVAL: it is not pspawn";
    }

    private static bool TryRead(string directory, string name, out long value, out string? why)
    {
        value = 0;
        string path = Path.Combine(directory, name);
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            why = $"cannot read {path}: {e.Message}";
            return false;
        }

        if (!long.TryParse(text.AsSpan().TrimEnd('\n'), NumberStyles.None, CultureInfo.InvariantCulture, out value) || value <= 0)
        {
            why = $"{path} does not hold a positive decimal number";
            return false;
        }

        why = null;
        return true;
    }
}
