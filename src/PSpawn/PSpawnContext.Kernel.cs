using Microsoft.Extensions.Logging;
using Mono.Unix.Native;

namespace PSpawn;

/// <summary>The kernel path: which contexts and requests the pspawn/ipspawn system calls serve.</summary>
public sealed partial class PSpawnContext
{
    /// <summary>The kernel's system calls when they serve this context (per <see cref="PSpawnContextOptions.KernelPath"/>), else null.</summary>
    /// <exception cref="PSpawnKernelPathException"><see cref="KernelPath.Require"/> cannot be honoured.</exception>
    private static KernelDetection? ChooseKernel(string fullPath, PSpawnContextOptions options, ILogger logger)
    {
        if (options.KernelPath == KernelPath.Forbid)
        {
            return null;
        }

        KernelDetection kernel = KernelDetection.Current;
        string? declined = !kernel.Available ? kernel.Reason
            : options.Cgroup is not null ? "PSpawnContextOptions.Cgroup needs a zygote (the system calls start children in the caller's cgroup)"
            : options.ForceRelayMode ? "PSpawnContextOptions.ForceRelayMode needs a zygote (the system calls make the children this process's)"
            : options.WarmPool is not null ? "PSpawnContextOptions.WarmPool needs a zygote (its parked children are forks of the proxy)"
            : options.DeferredForkPoint ? "PSpawnContextOptions.DeferredForkPoint needs a zygote (the system calls exec every child)"
            : options.NumaReplicas ? "PSpawnContextOptions.NumaReplicas needs a zygote (the replicas are its proxies' copies)"
            : ReapsEveryChild() ? "this process reaps every child (it is PID 1, or ignores SIGCHLD), so its children's exit statuses would be lost: a zygote in relay mode serves it"
            : null;
        if (declined is null)
        {
            // Auto prefers a zygote wherever one can serve: a fork of the frozen target skips the exec and loading that
            // every kernel child still does (6-8x the kernel path's rate in the guest, docs/benchmarks.md). So Auto takes
            // the calls here only without the native library; with it, the native core uses them itself where it would
            // exec each child anyway (fallback mode), as its PSPAWN_KERNEL_AUTO does.
            if (options.KernelPath == KernelPath.Auto && NativeLibraryResolver.LauncherLibraryFound)
            {
                return null;
            }

            return kernel;
        }

        if (options.KernelPath == KernelPath.Require)
        {
            Errno errno = kernel.Available ? Errno.EOPNOTSUPP : Errno.ENOSYS;
            throw new PSpawnKernelPathException($"KernelPath.Require cannot be honoured for {fullPath}: {declined}.", errno, fullPath);
        }

        if (kernel.Available)
        {
            Log.KernelPathDeclined(logger, fullPath, declined); // absent: silent, the context is what it always was
        }

        return null;
    }

    /// <summary>Whether the kernel would hand this process's children to nobody's waitpid: PID 1, or SIGCHLD ignored (/proc/self/status SigIgn).</summary>
    private static bool ReapsEveryChild()
    {
        if (Interop.Kernel.GetPid() == 1)
        {
            return true;
        }

        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("SigIgn:", StringComparison.Ordinal))
                {
                    ulong ignored = Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16);
                    return (ignored & (1UL << (Interop.Sys.SIGCHLD - 1))) != 0;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
        }

        return false;
    }

    /// <summary>What the native core checks at create, for a kernel context (which starts no proxy): the file exists and may be executed.</summary>
    private static void CheckExecutable(string fullPath, ILogger logger)
    {
        Errno? problem = !File.Exists(fullPath) && !Directory.Exists(fullPath) ? Errno.ENOENT
            : Directory.Exists(fullPath) || Interop.Kernel.Access(fullPath, Interop.Sys.X_OK) != 0 ? Errno.EACCES
            : null;
        if (problem is Errno e)
        {
            Exception exception = ErrorMapper.ForCreate(e, fullPath, null, PSpawnContextOptions.DefaultStartupTimeout);
            Log.ContextCreateFailed(logger, fullPath, ErrorMapper.Describe(e), exception);
            throw exception;
        }
    }

    /// <summary>
    /// Whether the kernel serves a request with these options (the system calls take arguments, environments and CPU masks,
    /// nothing else): null when it does, else why not. Throws for <see cref="KernelPath.Require"/> when it does not.
    /// </summary>
    /// <exception cref="PSpawnKernelPathException">The context requires the kernel path and the options need more.</exception>
    private bool UseKernel(SpawnOptions options, bool piped)
    {
        if (_kernel is null)
        {
            return false;
        }

        string? needs = piped ? "pipes"
            : options.StandardInput.Kind != StdioKind.Inherit || options.StandardOutput.Kind != StdioKind.Inherit || options.StandardError.Kind != StdioKind.Inherit ? "standard-stream redirection"
            : options.WorkingDirectory is not null ? "a working directory"
            : options.NewProcessGroup || options.JoinProcessGroup is not null || options.NewSession ? "a process group or session"
            : options.ResourceLimits.Count > 0 ? "resource limits"
            : options.Umask is not null ? "a umask"
            : options.KillOnParentDeath ? "KillOnParentDeath"
            : options.Cgroup is not null ? "a cgroup"
            : options.NumaLocalMemory ? "NumaLocalMemory"
            : null;
        if (needs is null)
        {
            return true;
        }

        if (Options.KernelPath == KernelPath.Require)
        {
            throw new PSpawnKernelPathException(
                $"KernelPath.Require: the pspawn/ipspawn system calls cannot express {needs} (they take arguments, environments and CPU sets only); use KernelPath.Auto to let a zygote serve such requests.",
                Errno.EOPNOTSUPP,
                Path);
        }

        return false;
    }
}
