using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Mono.Unix.Native;

namespace PSpawn;

/// <summary>Creation: <see cref="Create"/>, the native context and its attributes, and the start-up log.</summary>
public sealed partial class PSpawnContext
{
    /// <summary>Starts a proxy for the executable at <paramref name="path"/>.</summary>
    /// <param name="path">The executable (a file path, not a command name: PATH is not searched). Relative paths
    /// are resolved against the current directory now.</param>
    /// <param name="core">A CPU to pin the proxy, and so every child, to; -1 (the default) pins nothing.</param>
    /// <param name="options">Options; null takes <see cref="PSpawnContextOptions.Default"/>.</param>
    /// <returns>The context. Dispose it to stop the proxy.</returns>
    /// <exception cref="FileNotFoundException">The executable does not exist (a <see cref="PSpawnFileNotFoundException"/>).</exception>
    /// <exception cref="UnauthorizedAccessException">It is not a regular file or not executable by this user (a <see cref="PSpawnAccessDeniedException"/>).</exception>
    /// <exception cref="PSpawnUnsupportedExecutableException">A zygote cannot serve it (statically linked, set-user-ID or set-group-ID,
    /// threads started by its constructors, its own entry point instead of <c>__libc_start_main</c>, not an ELF executable) and <see cref="PSpawnContextOptions.FallbackPolicy"/> is
    /// <see cref="FallbackPolicy.Throw"/> (or the file is not an ELF executable).</exception>
    /// <exception cref="PSpawnProxyException">The proxy died or timed out during start-up.</exception>
    /// <exception cref="PSpawnException">Another failure of the native core (every exception carries <see cref="IPSpawnError.Errno"/> and <see cref="IPSpawnError.Path"/>).</exception>
    /// <exception cref="PSpawnKernelPathException"><see cref="PSpawnContextOptions.KernelPath"/> is <see cref="KernelPath.Require"/> and
    /// the kernel has no pspawn/ipspawn system calls (<c>ENOSYS</c>), or an option of the context needs a zygote
    /// (<see cref="PSpawnContextOptions.Cgroup"/>, <see cref="PSpawnContextOptions.ForceRelayMode"/>; <c>EOPNOTSUPP</c>).</exception>
    public static PSpawnContext Create(string path, int core = -1, PSpawnContextOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfLessThan(core, -1);
        options ??= PSpawnContextOptions.Default;
        options.Validate();
        ILogger logger = options.Logger ?? NullLogger.Instance;
        string fullPath = System.IO.Path.GetFullPath(path);

        if (ChooseKernel(fullPath, options, logger) is KernelDetection kernel)
        {
            CheckExecutable(fullPath, logger);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(core, Interop.PSpawnCore.CpuSetSize);
            Log.KernelPathUsed(logger, fullPath, kernel.AbiVersion, kernel.PSpawnNumber, kernel.IPSpawnNumber);
            return new PSpawnContext(null, kernel, fullPath, core, options, logger);
        }

        var created = new PSpawnContext(CreateNative(fullPath, core, options, logger), null, fullPath, core, options, logger);
        created.LogNativeStarted();
        return created;
    }

    /// <summary>Creates the native context (starts the proxies), or throws what the native core reported.</summary>
    private static unsafe NativeBackend CreateNative(string fullPath, int core, PSpawnContextOptions options, ILogger logger)
    {

        NativeLibraryResolver.EnsureRegistered();
        if (options.Cgroup is string cgroup)
        {
            NativeSpawnAttributes.ProbeCgroup(cgroup, fullPath);
        }

        string? proxyLibrary = options.ProxyLibraryPath ?? NativeLibraryResolver.ProxyLibraryPath;

        var proxyEnvironment = NativeStringArray.ToEnvironmentBlock(
            options.ProxyEnvironment ?? NativeStringArray.CurrentEnvironment(), nameof(options));

        var context = (Interop.PSpawnCore.Context*)NativeMemory.AllocZeroed((nuint)sizeof(Interop.PSpawnCore.Context));
        int result;
        int errno;
        byte* nativePath = null;
        byte* nativeProxyLibrary = null;
        byte* nativeCgroup = null;
        try
        {
            nativePath = NativeStringArray.AllocUtf8(fullPath);
            nativeProxyLibrary = proxyLibrary is null ? null : NativeStringArray.AllocUtf8(proxyLibrary);
            nativeCgroup = options.Cgroup is null ? null : NativeStringArray.AllocUtf8(options.Cgroup);
            using NativeStringArray proxyEnvp = NativeStringArray.Create(proxyEnvironment, nameof(options));

            Interop.PSpawnCore.ContextAttr attr;
            _ = Interop.PSpawnCore.ContextAttrInit(&attr);
            attr.Core = core;
            attr.StartupTimeoutMs = PSpawnContextOptions.ToMilliseconds(options.StartupTimeout);
            attr.RequestTimeoutMs = PSpawnContextOptions.ToMilliseconds(options.RequestTimeout);
            attr.MaxRestarts = options.MaxRestarts;
            attr.Proxies = options.ProxyCount ?? 0;
            attr.Numa = options.NativeNuma;
            attr.NumaMemory = options.NativeNumaMemory;
            attr.NumaSpread = options.NativeNumaSpread;
            attr.Cgroup = nativeCgroup;
            attr.Pool = options.WarmPool?.Size ?? 0;
            attr.PoolIdleMs = options.WarmPool?.NativeIdleMs ?? 0;
            // The native core's own kernel backend (AUTO: it replaces the exec backend in fallback mode). Require is decided
            // here, never passed down (a native context always has its zygote or exec backend).
            attr.Kernel = options.KernelPath == KernelPath.Forbid ? Interop.PSpawnCore.KernelForbid : Interop.PSpawnCore.KernelAuto;
            if (options.SharedBufferSize is int bufferSize)
            {
                attr.BufferSize = (nuint)bufferSize;
            }

            if (options.FallbackPolicy == FallbackPolicy.PosixSpawn)
            {
                attr.Flags |= Interop.PSpawnCore.CtxFallback;
            }

            if (options.ForceRelayMode)
            {
                attr.Flags |= Interop.PSpawnCore.CtxRelay;
            }

            if (!options.BindNow)
            {
                attr.Flags |= Interop.PSpawnCore.CtxNoBindNow;
            }

            if (options.DeferredForkPoint)
            {
                attr.Flags |= Interop.PSpawnCore.CtxDeferred;
            }

            if (options.NumaReplicas)
            {
                attr.Flags |= Interop.PSpawnCore.CtxNumaReplicas;
            }

            if (options.WatchImage)
            {
                attr.Flags |= Interop.PSpawnCore.CtxWatchImage;
            }

            if (options.MergeText)
            {
                attr.Flags |= Interop.PSpawnCore.CtxMergeText;
            }

            attr.ProxyLibrary = nativeProxyLibrary;
            attr.ProxyEnvp = proxyEnvp.Pointer;

            // On the dedicated creation thread: the children's parent thread must outlive them (see ContextCreationThread).
            nint contextAddress = (nint)context;
            nint pathAddress = (nint)nativePath;
            nint attrAddress = (nint)(&attr);
            (result, errno) = ContextCreationThread.Invoke(() =>
            {
                int r = Interop.PSpawnCore.ContextCreateEx(
                    (Interop.PSpawnCore.Context*)contextAddress, (byte*)pathAddress, (Interop.PSpawnCore.ContextAttr*)attrAddress);
                return (r, r != 0 ? Marshal.GetLastPInvokeError() : 0);
            });
        }
        catch
        {
            NativeMemory.Free(context);
            throw;
        }
        finally
        {
            if (nativePath is not null)
            {
                NativeStringArray.FreeUtf8(nativePath);
            }

            if (nativeProxyLibrary is not null)
            {
                NativeStringArray.FreeUtf8(nativeProxyLibrary);
            }

            if (nativeCgroup is not null)
            {
                NativeStringArray.FreeUtf8(nativeCgroup);
            }
        }

        if (result != 0)
        {
            NativeMemory.Free(context);
            Errno e = ErrorMapper.ToErrno(errno);
            Exception exception = ErrorMapper.ForCreate(e, fullPath, proxyLibrary, options.StartupTimeout);
            Log.ContextCreateFailed(logger, fullPath, ErrorMapper.Describe(e), exception);
            throw exception;
        }

        var handle = new ContextHandle(context);
        int nativeMode = Interop.PSpawnCore.ContextMode(context);
        var mode = nativeMode switch
        {
            Interop.PSpawnCore.ModeRelay => PSpawnMode.Relay,
            Interop.PSpawnCore.ModeFallback => PSpawnMode.Fallback,
            _ => PSpawnMode.Zygote,
        };
        Errno? fallbackReason = null;
        if (mode == PSpawnMode.Fallback)
        {
            Errno reason = ErrorMapper.ToErrno(Interop.PSpawnCore.ContextFallbackReason(context));
            fallbackReason = reason;
            Log.FallbackToPosixSpawn(logger, fullPath, DescribeFallbackReason(reason));
        }

        return new NativeBackend(handle, mode, fallbackReason);
    }

    /// <summary>Logs the proxies of the native context just created.</summary>
    private unsafe void LogNativeStarted()
    {
        NativeBackend native = _native!;
        if (native.Mode != PSpawnMode.Fallback && Logger.IsEnabled(LogLevel.Information))
        {
            int proxyPid = Interop.PSpawnCore.ContextProxyPid(native.Handle.Pointer);
            string nodes = string.Join(',', ProxyNodes);
            string topology = DescribeTopology();
            Log.ProxyStarted(Logger, Path, proxyPid, native.Mode, ProxyCount, nodes, topology);
        }
    }

    /// <summary>The NUMA nodes this process may use, for the log ("node 0: 2 CPUs [0,1], ..."); never throws.</summary>
    private static string DescribeTopology()
    {
        try
        {
            return string.Join("; ", PSpawnTopology.Read());
        }
        catch (PSpawnException e)
        {
            return $"unknown ({e.Errno})";
        }
    }

    private static string DescribeFallbackReason(Errno reason) => reason switch
    {
        Errno.EOPNOTSUPP => "statically linked (ENOTSUP)",
        Errno.EPERM => "set-user-ID or set-group-ID (EPERM)",
        Errno.EDEADLK => "its constructors start threads (EDEADLK)",
        Errno.ENOSYS => "it does not start through __libc_start_main (ENOSYS)",
        Errno.ETIMEDOUT => "the proxy did not complete start-up in time (ETIMEDOUT)",
        Errno.EPIPE => "the proxy died during start-up (EPIPE)",
        _ => ErrorMapper.Describe(reason),
    };
}
