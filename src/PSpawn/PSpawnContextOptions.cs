using Microsoft.Extensions.Logging;

namespace PSpawn;

/// <summary>Options of a <see cref="PSpawnContext"/>. Immutable: derive variants with <c>with</c> expressions.</summary>
public sealed record PSpawnContextOptions
{
    /// <summary>The default start-up timeout: 10 seconds.</summary>
    public static readonly TimeSpan DefaultStartupTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The default request timeout: 60 seconds.</summary>
    public static readonly TimeSpan DefaultRequestTimeout = TimeSpan.FromSeconds(60);

    /// <summary>The defaults.</summary>
    public static PSpawnContextOptions Default { get; } = new();

    /// <summary>
    /// Receives the context's log: proxy start and stop, fallbacks to posix_spawn, and failures.
    /// Null (the default) logs nothing.
    /// </summary>
    public ILogger? Logger { get; init; }

    /// <summary>What to do when a zygote cannot serve the executable. Default: <see cref="FallbackPolicy.Throw"/>.</summary>
    public FallbackPolicy FallbackPolicy { get; init; } = FallbackPolicy.Throw;

    /// <summary>
    /// How long the proxy may take to start (load the executable and its libraries, run their constructors and
    /// report ready). Default 10 seconds; at most <see cref="int.MaxValue"/> milliseconds.
    /// </summary>
    public TimeSpan StartupTimeout { get; init; } = DefaultStartupTimeout;

    /// <summary>
    /// How long one spawn request may wait for the proxy before it is declared dead (it is then killed and the
    /// context is broken). Default 60 seconds; <see cref="Timeout.InfiniteTimeSpan"/> waits forever.
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = DefaultRequestTimeout;

    /// <summary>The default <see cref="MaxRestarts"/>: 8.</summary>
    public const int DefaultMaxRestarts = Interop.PSpawnCore.DefaultMaxRestarts;

    /// <summary>
    /// How many times over the context's life a dead proxy (killed, crashed, or killed after a request timeout) is
    /// restarted by the next spawn, which is then served by the new proxy; see <see cref="PSpawnContext.RestartCount"/>.
    /// Default <see cref="DefaultMaxRestarts"/>; 0 never restarts (the next spawn is a <see cref="PSpawnProxyException"/>,
    /// as before restarts existed); -1 restarts without limit. Children spawned before a restart keep running and
    /// stay waitable (in <see cref="PSpawnMode.Relay"/> mode their exit statuses die with the old proxy).
    /// </summary>
    public int MaxRestarts { get; init; } = DefaultMaxRestarts;

    /// <summary>The largest <see cref="ProxyCount"/> (pspawn.h PSPAWN_MAX_PROXIES).</summary>
    public const int MaxProxyCount = Interop.PSpawnCore.MaxProxies;

    /// <summary>
    /// How many proxies serve the context, each pinned to its share of the CPUs this process may use; a batch
    /// (<see cref="PSpawnContext.SpawnBatch"/>, <see cref="PSpawnContext.StartBatch"/>, <see cref="PSpawnContext.SpawnN"/>) is
    /// fanned out to all of them at once, and an instance with a CPU set goes to a proxy whose CPUs cover it. Null (the
    /// default) takes the native default (one per usable core, at most 8); 1 is a single proxy, unpinned or pinned to the
    /// context's core. From 1 to <see cref="MaxProxyCount"/>. <see cref="PSpawnContext.ProxyCount"/> says how many serve it.
    /// </summary>
    public int? ProxyCount { get; init; }

    /// <summary>
    /// Use <see cref="PSpawnMode.Relay"/> even when zygote mode is possible: the proxy stays the parent of every
    /// child and relays its exit status. Default false.
    /// </summary>
    public bool ForceRelayMode { get; init; }

    /// <summary>
    /// Resolve all of the executable's symbols in the proxy before it freezes (LD_BIND_NOW), so that children
    /// skip lazy binding. Default true.
    /// </summary>
    public bool BindNow { get; init; } = true;

    /// <summary>
    /// Size in bytes of the buffer shared with the proxy, which carries the argument list and environment of a
    /// request. Null (the default) takes the native default (4 MiB); the minimum is 64 KiB.
    /// </summary>
    public int? SharedBufferSize { get; init; }

    /// <summary>
    /// Full path of libpspawn_proxy.so. Null (the default) takes the one beside libpspawn.so
    /// (see <see cref="PSpawnContext"/> for how that is found).
    /// </summary>
    public string? ProxyLibraryPath { get; init; }

    /// <summary>
    /// The environment the proxy is started with: what the dynamic loader and the executable's constructors see.
    /// Null (the default) takes this process's environment (<see cref="Environment.GetEnvironmentVariables()"/>).
    /// Children get their own environment from <see cref="SpawnOptions"/>.
    /// </summary>
    public IReadOnlyDictionary<string, string>? ProxyEnvironment { get; init; }

    /// <summary>
    /// Whether proxies are placed per NUMA node: at least one proxy per usable node, pinned to that node's CPUs and, before the
    /// target is exec'd, given the memory policy <see cref="NumaMemory"/>; instances with a CPU set go to a proxy of the node that
    /// holds it, others are spread over the nodes per <see cref="NumaSpread"/>. Default <see cref="NumaPlacement.Auto"/> (per node
    /// on a multi-node machine). A context pinned to a core, or with <see cref="ProxyCount"/> 1, never places per node.
    /// <see cref="PSpawnContext.ProxyNodes"/> reports where the proxies ended up.
    /// </summary>
    public NumaPlacement Numa { get; init; } = NumaPlacement.Auto;

    /// <summary>
    /// The memory policy of per-node proxies. Default <see cref="NumaMemoryPolicy.Bind"/>. Children reset it to the default policy
    /// before <c>main</c> unless the spawn asks for <see cref="SpawnOptions.NumaLocalMemory"/>.
    /// </summary>
    public NumaMemoryPolicy NumaMemory { get; init; } = NumaMemoryPolicy.Bind;

    /// <summary>How instances without a CPU set are spread over the nodes of per-node proxies. Default <see cref="PSpawn.NumaSpread.RoundRobin"/>.</summary>
    public NumaSpread NumaSpread { get; init; } = NumaSpread.RoundRobin;

    /// <summary>
    /// Library replicas (opt-in): each per-node proxy runs a copy of the executable and of the shared libraries it maps, written
    /// into <c>$TMPDIR/pspawn-replicas-PID-XXXXXX/nodeN</c> by a thread bound to the node, so their page cache is node-local;
    /// removed when the context is disposed. Children see the original argv[0], but <c>/proc/self/exe</c> and <c>dladdr</c>
    /// name the copies. No effect without per-node proxies. <see cref="PSpawnContext.ReplicaBytes"/> reports their size.
    /// </summary>
    public bool NumaReplicas { get; init; }

    /// <summary>
    /// Watch the files the proxy's image was loaded from (opt-in): the executable and every library mapped before <c>main</c>, by
    /// file and by the name the loader used in each directory (inotify, one instance per proxy). Once one of them changed on disk
    /// (rebuilt, overwritten, renamed over, deleted, a symlink re-pointed, even touched), every spawn throws a
    /// <see cref="PSpawnProxyException"/> with <c>ESTALE</c>, because a child would run the old code where a fresh exec would load
    /// the new: dispose the context and create a new one. Off (the default), a context keeps serving the image it loaded.
    /// </summary>
    public bool WatchImage { get; init; }

    /// <summary>
    /// Fewer memory areas to copy at every fork and to tear down at every child's exit (opt-in): the read-only pages right before
    /// and after each object's text (its headers, symbol tables and read-only data) get the text's protection in the proxy, so the
    /// kernel merges the three into one area, as linkers laid objects out before <c>-z separate-code</c>. A zygote of a program
    /// with many libraries spawns faster (pynamic100: 547 areas to 339, docs/benchmarks.md). The price: those pages are executable
    /// in the children (never writable and executable; RELRO and data are untouched), and their <c>/proc/PID/maps</c> shows the
    /// merged areas.
    /// </summary>
    public bool MergeText { get; init; }

    /// <summary>
    /// A cgroup v2 directory (under the cgroup2 mount, e.g. <c>/sys/fs/cgroup/jobs/a</c>) every child of the context is created in
    /// (clone3 with CLONE_INTO_CGROUP: born there, so its limits apply to the fork itself). It is opened by
    /// <see cref="PSpawnContext.Create"/>: a missing directory is a <see cref="PSpawnFileNotFoundException"/>, no permission a
    /// <see cref="PSpawnAccessDeniedException"/>, a cgroup v1 directory or another file a <see cref="PSpawnException"/>
    /// (<c>EOPNOTSUPP</c>, <c>ENOTDIR</c>). Null (the default): each child starts in the cgroup v2 this process is in at spawn time,
    /// as after fork and exec. <see cref="SpawnOptions.Cgroup"/> overrides it per spawn.
    /// </summary>
    public string? Cgroup { get; init; }

    /// <summary>
    /// A warm pool: each proxy keeps this many children forked ahead of time, parked before <c>main</c> (already children of
    /// this process), and a spawn without per-spawn options (only arguments, environment and CPU set) <i>claims</i> one instead
    /// of forking; the proxy refills the pool between requests. Spawns with other options (stdio, working directory, umask,
    /// limits, process group, new session, <see cref="SpawnOptions.KillOnParentDeath"/>, cgroup, node-local memory) are forked
    /// as usual. Null (the default): no pool. Ignored in relay mode and without a proxy. See <see cref="WarmPoolOptions"/>.
    /// </summary>
    public WarmPoolOptions? WarmPool { get; init; }

    /// <summary>
    /// The deferred fork point: the proxy runs the executable's <c>main</c> (with the proxy environment) and freezes where the
    /// program calls <c>pspawn_ready()</c> (native/include/pspawn_ready.h), after its own start-up; every child returns from that
    /// call with its own arguments (<c>pspawn_args()</c>) and environment. A program that never calls it makes
    /// <see cref="PSpawnContext.Create"/> fail (the proxy exits). Default false: the freeze point is right before <c>main</c>.
    /// See the README, "Deferred fork point".
    /// </summary>
    public bool DeferredForkPoint { get; init; }

    /// <summary>
    /// Whether the kernel's pspawn/ipspawn system calls serve the context (<see cref="PSpawnKernel"/>). Default
    /// <see cref="PSpawn.KernelPath.Auto"/>: a zygote wherever one can serve (it skips the exec every kernel child does, and is
    /// faster); the calls when they are available and a zygote is not: without the native library (every request they can
    /// express goes to them, the rest to a zygote, which then fails to load), or in fallback mode (the native core sends what
    /// they can express to them instead of its exec backend). <see cref="PSpawn.KernelPath.Require"/>: only the calls, no
    /// zygote (requests they cannot express throw); <see cref="PSpawn.KernelPath.Forbid"/>: never the calls.
    /// </summary>
    public KernelPath KernelPath { get; init; } = KernelPath.Auto;

    internal int NativeNuma => Numa switch
    {
        NumaPlacement.Auto => Interop.PSpawnCore.NumaAuto,
        NumaPlacement.On => Interop.PSpawnCore.NumaOn,
        NumaPlacement.Off => Interop.PSpawnCore.NumaOff,
        _ => throw new ArgumentException($"Unknown NUMA placement {(int)Numa}.", nameof(Numa)),
    };

    internal int NativeNumaMemory => NumaMemory switch
    {
        NumaMemoryPolicy.Bind => Interop.PSpawnCore.NumaMemBind,
        NumaMemoryPolicy.Preferred => Interop.PSpawnCore.NumaMemPreferred,
        NumaMemoryPolicy.None => Interop.PSpawnCore.NumaMemNone,
        _ => throw new ArgumentException($"Unknown NUMA memory policy {(int)NumaMemory}.", nameof(NumaMemory)),
    };

    internal int NativeNumaSpread => NumaSpread switch
    {
        NumaSpread.RoundRobin => Interop.PSpawnCore.SpreadRoundRobin,
        NumaSpread.Fill => Interop.PSpawnCore.SpreadFill,
        _ => throw new ArgumentException($"Unknown NUMA spread {(int)NumaSpread}.", nameof(NumaSpread)),
    };

    internal void Validate()
    {
        _ = NativeNuma;
        _ = NativeNumaMemory;
        _ = NativeNumaSpread;
        if (KernelPath is not (KernelPath.Auto or KernelPath.Require or KernelPath.Forbid))
        {
            throw new ArgumentException($"Unknown kernel path {(int)KernelPath}.", nameof(KernelPath));
        }

        SpawnOptions.ValidateCgroupPath(Cgroup, nameof(Cgroup));
        WarmPool?.Validate();

        if (StartupTimeout <= TimeSpan.Zero || StartupTimeout.TotalMilliseconds > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(StartupTimeout), StartupTimeout, "The start-up timeout must be positive and at most int.MaxValue milliseconds.");
        }

        if (RequestTimeout != Timeout.InfiniteTimeSpan && (RequestTimeout <= TimeSpan.Zero || RequestTimeout.TotalMilliseconds > int.MaxValue))
        {
            throw new ArgumentOutOfRangeException(nameof(RequestTimeout), RequestTimeout, "The request timeout must be positive and at most int.MaxValue milliseconds, or Timeout.InfiniteTimeSpan.");
        }

        if (SharedBufferSize is < 64 * 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(SharedBufferSize), SharedBufferSize, "The shared buffer must be at least 64 KiB.");
        }

        if (MaxRestarts < -1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxRestarts), MaxRestarts, "MaxRestarts must be -1 (no limit), 0 (never) or a positive count.");
        }

        if (ProxyCount is < 1 or > MaxProxyCount)
        {
            throw new ArgumentOutOfRangeException(nameof(ProxyCount), ProxyCount, $"ProxyCount must be null (the native default) or from 1 to {MaxProxyCount}.");
        }

        if (ProxyLibraryPath is { Length: 0 })
        {
            throw new ArgumentException("The proxy library path must not be empty.", nameof(ProxyLibraryPath));
        }
    }

    internal static int ToMilliseconds(TimeSpan value) =>
        value == Timeout.InfiniteTimeSpan ? -1 : (int)Math.Ceiling(value.TotalMilliseconds);
}
