using System.Runtime.InteropServices;
using Mono.Unix;
using Mono.Unix.Native;

namespace PSpawn;

/// <summary>Turns error numbers of the native core into typed exceptions.</summary>
internal static class ErrorMapper
{
    /// <summary>
    /// The errno of a native call as Mono.Unix's <see cref="Errno"/>. Mono.Unix defines its members with the
    /// Linux values, so on Linux the conversion is the identity and needs no call into libMono.Unix.so.
    /// </summary>
    internal static Errno ToErrno(int value) => (Errno)value;

    /// <summary>"ENOENT (No such file or directory)".</summary>
    internal static string Describe(Errno errno)
    {
        string name = Enum.IsDefined(errno) ? errno.ToString() : "errno " + ((int)errno).ToString(System.Globalization.CultureInfo.InvariantCulture);
        return $"{name} ({Description(errno)})";
    }

    private static string Description(Errno errno)
    {
        try
        {
            return UnixMarshal.GetErrorDescription(errno);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
        {
            // libMono.Unix.so could not be loaded (an unusual deployment): the runtime's strerror will do.
            return Marshal.GetPInvokeErrorMessage((int)errno);
        }
    }

    /// <summary>
    /// Mono.Unix's own mapping of the error number to a .NET exception (for example ENOENT to
    /// FileNotFoundException), attached as the inner exception so that code written against Mono.Unix's
    /// conventions finds what it expects.
    /// </summary>
    private static Exception? MonoUnixException(Errno errno)
    {
        try
        {
            UnixMarshal.ThrowExceptionForError(errno);
            return null;
        }
#pragma warning disable CA1031 // Any exception Mono.Unix produces is what we want to keep.
        catch (Exception e)
#pragma warning restore CA1031
        {
            return e;
        }
    }

    /// <summary>The exception for a failed pspawn_context_create_ex.</summary>
    internal static Exception ForCreate(Errno errno, string path, string? proxyLibrary, TimeSpan startupTimeout)
    {
        Exception? inner = MonoUnixException(errno);
        string what = Describe(errno);
        return errno switch
        {
            Errno.ENOENT => new PSpawnFileNotFoundException(
                $"Cannot create a PSpawn context: the executable '{path}' does not exist: {what}.", errno, path, inner),
            Errno.EACCES => new PSpawnAccessDeniedException(
                $"Cannot create a PSpawn context: '{path}' is not a regular file or is not executable by this user: {what}.", errno, path, inner),
            Errno.ENOEXEC => Unsupported(UnsupportedExecutableReason.NotAnElfExecutable,
                $"'{path}' is not an ELF executable for this machine (an empty file, a script or another architecture): {what}.", errno, path, inner),
            Errno.EOPNOTSUPP => Unsupported(UnsupportedExecutableReason.StaticallyLinked,
                $"'{path}' is statically linked, so the dynamic loader never runs and LD_PRELOAD cannot install the zygote: {what}. Use FallbackPolicy.PosixSpawn to spawn it with posix_spawn.", errno, path, inner),
            Errno.EPERM => Unsupported(UnsupportedExecutableReason.SetUserOrGroupId,
                $"'{path}' is set-user-ID or set-group-ID, so the loader would drop LD_PRELOAD: {what}. Use FallbackPolicy.PosixSpawn to spawn it with posix_spawn.", errno, path, inner),
            Errno.EDEADLK => Unsupported(UnsupportedExecutableReason.ThreadedConstructors,
                $"The constructors of '{path}' start threads, so forking it as a zygote is unsafe: {what}. Use FallbackPolicy.PosixSpawn to spawn it with posix_spawn.", errno, path, inner),
            Errno.ENOSYS => Unsupported(UnsupportedExecutableReason.NoStandardEntryPoint,
                $"'{path}' does not start through glibc's __libc_start_main (it has its own _start, as -nostartfiles and Go programs do), so the zygote cannot stop it before main; it was not run: {what}. Use FallbackPolicy.PosixSpawn to spawn it with posix_spawn.", errno, path, inner),
            Errno.ETIMEDOUT => new PSpawnProxyException(
                $"The proxy for '{path}' did not complete its start-up handshake within {startupTimeout.TotalMilliseconds:0} ms: {what}.", errno, path, duringStartup: true, inner),
            Errno.EPIPE => new PSpawnProxyException(
                $"The proxy for '{path}' died during start-up: {what}.", errno, path, duringStartup: true, inner),
            Errno.ELIBACC => new PSpawnException(
                $"The proxy library ({proxyLibrary ?? NativeLibraryResolver.ProxyFileName + " beside libpspawn.so"}) could not be found or read: {what}. Set {NativeLibraryResolver.DirectoryVariable} to the directory holding libpspawn.so and libpspawn_proxy.so.", errno, path, inner),
            Errno.EINVAL => new PSpawnArgumentException(
                $"The native core rejected an argument of the context for '{path}' (is the CPU core in range and allowed for this process?): {what}.", null, errno, path, inner),
            Errno.ENAMETOOLONG => new PSpawnArgumentException(
                $"Cannot create a PSpawn context: the path '{path}' is too long: {what}.", nameof(path), errno, path, inner),
            _ => new PSpawnException($"Cannot create a PSpawn context for '{path}': {what}.", errno, path, inner),
        };
    }

    /// <summary>The exception for a cgroup v2 directory the native core could not open (pspawn_attr_set_cgroup).</summary>
    internal static Exception ForCgroup(Errno errno, string cgroup, string executablePath)
    {
        Exception? inner = MonoUnixException(errno);
        string what = Describe(errno);
        string start = $"Cannot place the children of '{executablePath}' in the cgroup '{cgroup}'";
        return errno switch
        {
            Errno.ENOENT => new PSpawnFileNotFoundException($"{start}: no such cgroup: {what}.", errno, cgroup, inner),
            Errno.EACCES or Errno.EPERM => new PSpawnAccessDeniedException($"{start}: no permission: {what}.", errno, cgroup, inner),
            Errno.EOPNOTSUPP => new PSpawnException($"{start}: not a cgroup v2 directory (cgroup v1 placement is not supported): {what}.", errno, cgroup, inner),
            Errno.ENOTDIR => new PSpawnException($"{start}: not a directory: {what}.", errno, cgroup, inner),
            Errno.EINVAL or Errno.ENAMETOOLONG => new PSpawnArgumentException($"{start}: {what}.", null, errno, cgroup, inner),
            _ => new PSpawnException($"{start}: {what}.", errno, cgroup, inner),
        };
    }

    /// <summary>The exception for a failed (or partly failed) pspawn_ne.</summary>
    internal static Exception ForSpawn(Errno errno, string path, int requested, IReadOnlyList<SpawnedProcess> started, bool withOptions = false, IReadOnlyDictionary<int, Errno>? failed = null)
    {
        Exception? inner = MonoUnixException(errno);
        string what = Describe(errno);
        IReadOnlyDictionary<int, Errno> failures = failed ?? new Dictionary<int, Errno>();
        if (errno is Errno.EMFILE or Errno.ENFILE)
        {
            what += $" (this process has no descriptor left for the pipes above PSpawn's reserve of {DescriptorBudget.Reserve} of its {DescriptorBudget.Limit} (soft RLIMIT_NOFILE): each piped standard stream holds one until it is disposed; dispose finished children or raise the limit)";
        }
        else if (withOptions && errno is not (Errno.EPIPE or Errno.ETIMEDOUT or Errno.E2BIG))
        {
            // Reported by the child before main: say which options can fail that way.
            what += errno switch
            {
                Errno.ENOENT => " (a per-spawn option failed in the child: the working directory or a standard stream's file does not exist)",
                Errno.EACCES => " (a per-spawn option failed in the child: the working directory or a standard stream's file is not accessible)",
                Errno.EINVAL => " (a per-spawn option failed in the child: for example a CPU set with no online CPU this process may use, or a process group that does not exist)",
                Errno.EPERM => " (either this process's credentials changed since the context was created, so nothing was spawned, or a per-spawn option failed in the child: for example a hard resource limit above this process's, or a process group of another session)",
                Errno.EOPNOTSUPP => " (the posix_spawn fallback cannot apply umask, resource limits or a parent-death signal)",
                _ => " (possibly reported by the child for a per-spawn option)",
            };
        }

        string count = requested == 1
            ? "Cannot spawn"
            : $"Started {started.Count} of {requested} instances; cannot spawn";
        Exception exception = errno switch
        {
            Errno.E2BIG => new PSpawnArgumentException(
                $"{count} '{path}': the arguments and environment do not fit the shared buffer or exceed execve's limits (a string of 131072 bytes or more, or strings plus pointers beyond a quarter of RLIMIT_STACK): {what}.", null, errno, path, inner),
            Errno.EINVAL when withOptions => new PSpawnException($"{count} '{path}': {what}.", errno, path, inner) { StartedProcesses = started, FailedInstances = failures },
            Errno.EINVAL => new PSpawnArgumentException(
                $"{count} '{path}': the native core rejected an argument: {what}.", null, errno, path, inner),
            Errno.EPIPE => new PSpawnProxyException(
                $"{count} '{path}': the proxy is dead and could not be restarted (or PSpawnContextOptions.MaxRestarts is used up); the context is broken, dispose it and create a new one: {what}.", errno, path, duringStartup: false, inner) { StartedProcesses = started, FailedInstances = failures },
            Errno.ESTALE => new PSpawnProxyException(
                $"{count} '{path}': a file the proxy's image was loaded from (the executable or a library) changed on disk since the context was created (PSpawnContextOptions.WatchImage), so a child would run the old code; dispose the context and create a new one: {what}.", errno, path, duringStartup: false, inner) { StartedProcesses = started, FailedInstances = failures },
            Errno.EPERM when !withOptions => new PSpawnException(
                $"{count} '{path}': this process's credentials (user IDs, group IDs or supplementary groups) changed since the context was created, and its proxy would give children the old ones, so nothing was spawned; dispose the context and create a new one: {what}.", errno, path, inner) { StartedProcesses = started, FailedInstances = failures },
            Errno.ETIMEDOUT => new PSpawnProxyException(
                $"{count} '{path}': the proxy did not answer within the request timeout and was killed; the context is broken, dispose it and create a new one: {what}.", errno, path, duringStartup: false, inner) { StartedProcesses = started, FailedInstances = failures },
            Errno.ENOENT => new PSpawnFileNotFoundException($"{count} '{path}': {what}.", errno, path, inner),
            Errno.EACCES => new PSpawnAccessDeniedException($"{count} '{path}': {what}.", errno, path, inner),
            Errno.EAGAIN => new PSpawnException(
                $"{count} '{path}': a resource limit was reached (process limit, or the relay mode's exit-status table is full until children are waited for): {what}.", errno, path, inner) { StartedProcesses = started, FailedInstances = failures },
            _ => new PSpawnException($"{count} '{path}': {what}.", errno, path, inner) { StartedProcesses = started, FailedInstances = failures },
        };
        if (started.Count > 0 && exception is not PSpawnException)
        {
            // Some instances run: never lose them, whatever the error type.
            exception = new PSpawnException(exception.Message, errno, path, exception) { StartedProcesses = started, FailedInstances = failures };
        }

        return exception;
    }

    /// <summary>The exception describing why instance <paramref name="index"/> of a batch did not start.</summary>
    internal static Exception ForInstance(Errno errno, string path, int index)
    {
        if (errno == Errno.ECANCELED)
        {
            return new PSpawnException(
                $"Instance {index} of the batch of '{path}' was not launched: the batch was canceled first: {Describe(errno)}.", errno, path);
        }

        // As a single spawn with options reports it (the batch's failures are per instance, reported by the child or the dispatcher).
        return ForSpawn(errno, path, 1, [], withOptions: true);
    }

    private static PSpawnUnsupportedExecutableException Unsupported(UnsupportedExecutableReason reason, string message, Errno errno, string path, Exception? inner) =>
        new("Cannot create a PSpawn context: " + message, reason, errno, path, inner);
}
