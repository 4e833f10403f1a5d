using Microsoft.Extensions.Logging;

namespace PSpawn;

/// <summary>The library's log messages (source-generated with [LoggerMessage]).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, EventName = "ProxyStarted", Level = LogLevel.Information,
        Message = "Started the PSpawn proxy {ProxyPid} for {Path} in {Mode} mode ({ProxyCount} proxies; NUMA node of each: {ProxyNodes}; machine: {Topology})")]
    public static partial void ProxyStarted(ILogger logger, string path, int proxyPid, PSpawnMode mode, int proxyCount, string proxyNodes, string topology);

    [LoggerMessage(EventId = 2, EventName = "FallbackToPosixSpawn", Level = LogLevel.Warning,
        Message = "A zygote cannot serve {Path}: {Reason}; spawning with posix_spawn instead")]
    public static partial void FallbackToPosixSpawn(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 3, EventName = "ContextCreateFailed", Level = LogLevel.Error,
        Message = "Cannot create a PSpawn context for {Path}: {Error}")]
    public static partial void ContextCreateFailed(ILogger logger, string path, string error, Exception exception);

    [LoggerMessage(EventId = 4, EventName = "ProxyStopped", Level = LogLevel.Information,
        Message = "Stopped the PSpawn proxy {ProxyPid} for {Path}")]
    public static partial void ProxyStopped(ILogger logger, string path, int proxyPid);

    [LoggerMessage(EventId = 5, EventName = "ProxyStopDeferred", Level = LogLevel.Information,
        Message = "Disposed the PSpawn context for {Path}; its proxy {ProxyPid} stops once its {Children} running relay-mode children have been reaped")]
    public static partial void ProxyStopDeferred(ILogger logger, string path, int proxyPid, int children);

    [LoggerMessage(EventId = 6, EventName = "SpawnFailed", Level = LogLevel.Error,
        Message = "Spawning {Path} failed: started {Started} of {Requested}: {Error}")]
    public static partial void SpawnFailed(ILogger logger, string path, int started, int requested, string error, Exception exception);

    [LoggerMessage(EventId = 7, EventName = "ProxyFailed", Level = LogLevel.Error,
        Message = "The PSpawn proxy for {Path} failed ({Error}); the next spawn restarts it unless PSpawnContextOptions.MaxRestarts is used up")]
    public static partial void ProxyFailed(ILogger logger, string path, string error);

    [LoggerMessage(EventId = 8, EventName = "Spawned", Level = LogLevel.Debug,
        Message = "Spawned {Count} instance(s) of {Path}")]
    public static partial void Spawned(ILogger logger, string path, int count);

    [LoggerMessage(EventId = 9, EventName = "ExitStatusLost", Level = LogLevel.Error,
        Message = "The exit status of process {Pid} ({Path}) could not be collected: {Error}")]
    public static partial void ExitStatusLost(ILogger logger, string path, int pid, string error);

    [LoggerMessage(EventId = 10, EventName = "FallbackContextDisposed", Level = LogLevel.Information,
        Message = "Disposed the posix_spawn fallback context for {Path}")]
    public static partial void FallbackContextDisposed(ILogger logger, string path);

    [LoggerMessage(EventId = 11, EventName = "ExitWatchPolling", Level = LogLevel.Debug,
        Message = "{Polled} of {Spawned} new processes of {Path} are watched by polling, without a pidfd ({Error}; soft RLIMIT_NOFILE {Limit}, {Reserve} descriptors kept in reserve)")]
    public static partial void ExitWatchPolling(ILogger logger, string path, int polled, int spawned, string error, int limit, int reserve);

    [LoggerMessage(EventId = 12, EventName = "LineCallbackFailed", Level = LogLevel.Warning,
        Message = "Delivering the standard {Stream} lines of process {Pid} ({Path}) failed")]
    public static partial void LineCallbackFailed(ILogger logger, string path, int pid, string stream, Exception exception);

    [LoggerMessage(EventId = 13, EventName = "ProxyRestarted", Level = LogLevel.Warning,
        Message = "The PSpawn proxy for {Path} had died and was restarted as {ProxyPid} (restart {Restarts}; PSpawnContextOptions.MaxRestarts {MaxRestarts}, -1 = no limit)")]
    public static partial void ProxyRestarted(ILogger logger, string path, int proxyPid, int restarts, int maxRestarts);

    [LoggerMessage(EventId = 14, EventName = "BatchSpawned", Level = LogLevel.Debug,
        Message = "Batch of {Path}: started {Started} of {Requested} instance(s), {Failed} failed ({Canceled} canceled)")]
    public static partial void BatchSpawned(ILogger logger, string path, int started, int requested, int failed, int canceled);

    [LoggerMessage(EventId = 15, EventName = "KernelPathUsed", Level = LogLevel.Information,
        Message = "The kernel's pspawn/ipspawn system calls serve {Path} (ABI {AbiVersion}, numbers {PSpawnNumber}/{IPSpawnNumber}); no proxy is started until a request needs one")]
    public static partial void KernelPathUsed(ILogger logger, string path, int abiVersion, long pspawnNumber, long ipspawnNumber);

    [LoggerMessage(EventId = 16, EventName = "KernelPathDeclined", Level = LogLevel.Debug,
        Message = "The kernel path does not serve {Path}: {Reason}")]
    public static partial void KernelPathDeclined(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 17, EventName = "KernelContextDisposed", Level = LogLevel.Information,
        Message = "Disposed the kernel-path context for {Path} (no proxy had been started)")]
    public static partial void KernelContextDisposed(ILogger logger, string path);
}
