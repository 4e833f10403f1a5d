namespace PSpawn;

/// <summary>
/// How many file descriptors PSpawn may hold for its children without starving the runtime and the application.
/// </summary>
/// <remarks>
/// <para>
/// Every child watched through a pidfd holds one descriptor in this process until it has been reaped, and every
/// piped standard stream one more until it is disposed. With thousands of live children that exhausts
/// RLIMIT_NOFILE, and a .NET runtime that cannot open a descriptor aborts ("Out of memory."). So PSpawn keeps a
/// reserve of descriptors it never uses: <see cref="Reserve"/> = a quarter of the soft limit, at least
/// <see cref="MinimumReserve"/>. A pidfd is kept only when its number is below the soft limit minus the reserve
/// (the kernel hands out the lowest free number, so every descriptor below it is in use and at most
/// <c>limit - fd - 1</c> remain free); a child whose pidfd would not fit is watched by the shared
/// <see cref="ExitPoller"/> instead, without a descriptor. A spawn with pipes starts only as many instances as fit
/// above the reserve; the others fail with EMFILE.
/// </para>
/// <para>
/// The soft limit is read again at every spawn call and whenever a descriptor could not be opened (EMFILE),
/// so a limit raised or lowered with setrlimit is followed.
/// </para>
/// </remarks>
internal static unsafe class DescriptorBudget
{
    /// <summary>The least number of descriptors left to the runtime and the application.</summary>
    public const int MinimumReserve = 64;

    private static int s_limit = ReadLimit();

    /// <summary>The soft RLIMIT_NOFILE as last read (at most int.MaxValue).</summary>
    public static int Limit => Volatile.Read(ref s_limit);

    /// <summary>The descriptors PSpawn leaves free: a quarter of the soft limit, at least <see cref="MinimumReserve"/>.</summary>
    public static int Reserve => Math.Max(MinimumReserve, Limit / 4);

    /// <summary>Descriptors numbered below this may be kept for a child.</summary>
    public static int Ceiling => Math.Max(0, Limit - Reserve);

    /// <summary>Reads the soft limit again (one getrlimit).</summary>
    public static void Refresh() => Volatile.Write(ref s_limit, ReadLimit());

    /// <summary>Whether descriptor <paramref name="fd"/>, just opened, may be kept for a child.</summary>
    public static bool Fits(int fd) => fd < Ceiling;

    /// <summary>
    /// How many more descriptors may be opened now without entering the reserve: the ceiling minus the lowest free
    /// descriptor (which every lower descriptor being in use makes an upper bound on what is free below it).
    /// </summary>
    public static int Available()
    {
        int lowest = Interop.Sys.EventFd(0, Interop.Sys.EFD_CLOEXEC); // the lowest free descriptor
        if (lowest < 0)
        {
            return 0; // EMFILE or ENFILE: nothing is free
        }

        _ = Interop.Sys.Close(lowest);
        return Math.Max(0, Ceiling - lowest);
    }

    private static int ReadLimit()
    {
        Interop.Sys.RLimit limit;
        if (Interop.Sys.GetRLimit(Interop.Sys.RLIMIT_NOFILE, &limit) != 0)
        {
            return 1024; // cannot happen; the usual default
        }

        return limit.Current > int.MaxValue ? int.MaxValue : (int)limit.Current;
    }
}
