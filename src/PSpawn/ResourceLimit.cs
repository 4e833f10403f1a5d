namespace PSpawn;

/// <summary>A resource whose limit a child can be given (the RLIMIT_* constants of setrlimit(2), Linux values).</summary>
public enum ResourceLimitKind
{
    /// <summary>RLIMIT_CPU: CPU time, in seconds.</summary>
    CpuTime = 0,

    /// <summary>RLIMIT_FSIZE: the largest file the process may create, in bytes.</summary>
    FileSize = 1,

    /// <summary>RLIMIT_DATA: the data segment (heap), in bytes.</summary>
    Data = 2,

    /// <summary>RLIMIT_STACK: the main thread's stack, in bytes.</summary>
    Stack = 3,

    /// <summary>RLIMIT_CORE: the largest core dump, in bytes.</summary>
    CoreFileSize = 4,

    /// <summary>RLIMIT_RSS: resident set size, in bytes (ignored by current kernels).</summary>
    ResidentSetSize = 5,

    /// <summary>RLIMIT_NPROC: the number of processes (threads) of the real user ID.</summary>
    Processes = 6,

    /// <summary>RLIMIT_NOFILE: one more than the largest descriptor number.</summary>
    OpenFiles = 7,

    /// <summary>RLIMIT_MEMLOCK: locked memory, in bytes.</summary>
    LockedMemory = 8,

    /// <summary>RLIMIT_AS: the address space, in bytes.</summary>
    AddressSpace = 9,

    /// <summary>RLIMIT_LOCKS: file locks.</summary>
    FileLocks = 10,

    /// <summary>RLIMIT_SIGPENDING: queued signals of the real user ID.</summary>
    PendingSignals = 11,

    /// <summary>RLIMIT_MSGQUEUE: bytes in POSIX message queues.</summary>
    MessageQueueBytes = 12,

    /// <summary>RLIMIT_NICE: the ceiling of the nice value (as 20 - nice).</summary>
    NicePriority = 13,

    /// <summary>RLIMIT_RTPRIO: the real-time priority ceiling.</summary>
    RealtimePriority = 14,

    /// <summary>RLIMIT_RTTIME: CPU time under real-time scheduling without a blocking call, in microseconds.</summary>
    RealtimeTimeout = 15,
}

/// <summary>One setrlimit(2) call made in the child before <c>main</c>.</summary>
/// <param name="Resource">The resource.</param>
/// <param name="Soft">The soft limit (the one enforced); <see cref="Unlimited"/> for none.</param>
/// <param name="Hard">The hard limit (the ceiling of the soft one); <see cref="Unlimited"/> for none.
/// An unprivileged process cannot raise it above its own: that spawn then fails with <c>EPERM</c>.</param>
public readonly record struct ResourceLimit(ResourceLimitKind Resource, ulong Soft, ulong Hard)
{
    /// <summary>RLIM_INFINITY: no limit.</summary>
    public const ulong Unlimited = ulong.MaxValue;
}
