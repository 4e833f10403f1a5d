using System.Runtime.InteropServices;
using Mono.Unix.Native;

namespace PSpawn;

/// <summary>
/// A pspawn_attr_t built from <see cref="SpawnOptions"/> for one spawn call. Holds a reference on every
/// <see cref="StdioTarget.Handle"/> until disposed, so their descriptors stay open while the call runs.
/// </summary>
internal sealed unsafe class NativeSpawnAttributes : IDisposable
{
    private readonly List<SafeHandle> _referenced = [];
    private IntPtr _attr;

    private NativeSpawnAttributes()
    {
    }

    /// <summary>The pspawn_attr_t*.</summary>
    public IntPtr Pointer => _attr;

    /// <summary>The process group the children lead or join, when the options make it known in advance (0: each leads its own).</summary>
    public static int? KnownProcessGroup(SpawnOptions options) =>
        options.NewProcessGroup || options.NewSession ? 0 : options.JoinProcessGroup;

    /// <summary>Builds the attributes; throws <see cref="ArgumentException"/> for what the native setters reject.</summary>
    public static NativeSpawnAttributes Create(SpawnOptions options, string executablePath)
    {
        var attributes = new NativeSpawnAttributes();
        try
        {
            attributes.Build(options, executablePath);
            return attributes;
        }
        catch
        {
            attributes.Dispose();
            throw;
        }
    }

    private void Build(SpawnOptions options, string executablePath)
    {
        IntPtr attr;
        Check(Interop.PSpawnCore.AttrCreate(&attr), "pspawn_attr_create", executablePath);
        _attr = attr;

        SetStdio(0, options.StandardInput, executablePath);
        SetStdio(1, options.OnOutputLine is not null ? StdioTarget.Pipe : options.StandardOutput, executablePath);
        SetStdio(2, options.OnErrorLine is not null ? StdioTarget.Pipe : options.StandardError, executablePath);

        if (options.WorkingDirectory is string directory)
        {
            byte* path = NativeStringArray.AllocUtf8(directory);
            try
            {
                Check(Interop.PSpawnCore.AttrSetCwd(attr, path), "the working directory", executablePath);
            }
            finally
            {
                NativeStringArray.FreeUtf8(path);
            }
        }

        if (options.Umask is UnixFileMode mask)
        {
            Check(Interop.PSpawnCore.AttrSetUmask(attr, (uint)mask), "the umask", executablePath);
        }

        if (options.NewSession)
        {
            Check(Interop.PSpawnCore.AttrSetNewSession(attr), "the new session", executablePath);
        }
        else if (options.NewProcessGroup)
        {
            Check(Interop.PSpawnCore.AttrSetProcessGroup(attr, 0), "the new process group", executablePath);
        }
        else if (options.JoinProcessGroup is int pgid)
        {
            Check(Interop.PSpawnCore.AttrSetProcessGroup(attr, pgid), "the process group", executablePath);
        }

        foreach (ResourceLimit limit in options.ResourceLimits)
        {
            Check(Interop.PSpawnCore.AttrAddRlimit(attr, (int)limit.Resource, limit.Soft, limit.Hard), $"the {limit.Resource} limit", executablePath);
        }

        if (options.KillOnParentDeath)
        {
            Check(Interop.PSpawnCore.AttrSetParentDeathSignal(attr, Interop.Sys.SIGKILL), "the parent-death signal", executablePath);
        }

        if (options.NumaLocalMemory)
        {
            Check(Interop.PSpawnCore.AttrSetNumaLocal(attr, 1), "node-local memory", executablePath);
        }

        if (options.Cgroup is string cgroup)
        {
            SetCgroup(attr, cgroup, executablePath);
        }

        if (options.Cpus is not null)
        {
            byte* set = stackalloc byte[Interop.PSpawnCore.CpuSetBytes];
            FillCpuSet(new Span<byte>(set, Interop.PSpawnCore.CpuSetBytes), options.Cpus);
            Check(Interop.PSpawnCore.AttrSetCpus(attr, set), "the CPU set", executablePath);
        }
        else if (options.CpuSetsPerInstance is { } sets)
        {
            int bytes = sets.Count * Interop.PSpawnCore.CpuSetBytes;
            byte[] buffer = new byte[bytes];
            for (int i = 0; i < sets.Count; i++)
            {
                FillCpuSet(buffer.AsSpan(i * Interop.PSpawnCore.CpuSetBytes, Interop.PSpawnCore.CpuSetBytes), sets[i]);
            }

            fixed (byte* pointer = buffer)
            {
                Check(Interop.PSpawnCore.AttrSetCpusPerInstance(attr, pointer, sets.Count), "the CPU sets", executablePath);
            }
        }
    }

    /// <summary>pspawn_attr_set_cgroup, whose errors (the directory is opened now) map to typed exceptions naming the cgroup.</summary>
    internal static void SetCgroup(IntPtr attr, string cgroup, string executablePath)
    {
        byte* path = NativeStringArray.AllocUtf8(cgroup);
        try
        {
            if (Interop.PSpawnCore.AttrSetCgroup(attr, path) != 0)
            {
                throw ErrorMapper.ForCgroup(ErrorMapper.ToErrno(Marshal.GetLastPInvokeError()), cgroup, executablePath);
            }
        }
        finally
        {
            NativeStringArray.FreeUtf8(path);
        }
    }

    /// <summary>
    /// pspawn_attr_set_cgroup_per_instance for instances [start, start + count) of a batch (null: the batch's). Returns
    /// 0 or the errno; <see cref="ExceptionForInstanceCgroups"/> names the cgroup that failed.
    /// </summary>
    public int SetInstanceCgroups(IReadOnlyList<string?> cgroups, int start, int count)
    {
        var paths = new IntPtr[count];
        try
        {
            for (int i = 0; i < count; i++)
            {
                paths[i] = cgroups[start + i] is string path ? (IntPtr)NativeStringArray.AllocUtf8(path) : IntPtr.Zero;
            }

            fixed (IntPtr* pointer = paths)
            {
                return Interop.PSpawnCore.AttrSetCgroupPerInstance(_attr, (byte**)pointer, count) == 0 ? 0 : Marshal.GetLastPInvokeError();
            }
        }
        finally
        {
            foreach (IntPtr path in paths)
            {
                if (path != IntPtr.Zero)
                {
                    NativeStringArray.FreeUtf8((byte*)path);
                }
            }
        }
    }

    /// <summary>After <see cref="SetInstanceCgroups"/> failed: the typed exception of the first cgroup that cannot be opened.</summary>
    public static Exception ExceptionForInstanceCgroups(IReadOnlyList<string?> cgroups, int errno, string executablePath)
    {
        foreach (string cgroup in cgroups.OfType<string>().Distinct(StringComparer.Ordinal))
        {
            ProbeCgroup(cgroup, executablePath);
        }

        return ErrorMapper.ForCgroup(ErrorMapper.ToErrno(errno), cgroups.OfType<string>().FirstOrDefault() ?? "", executablePath);
    }

    /// <summary>
    /// Opens <paramref name="cgroup"/> as pspawn_context_create_ex will, so that its errors are told apart from the
    /// executable's (both can be ENOENT or EACCES).
    /// </summary>
    internal static void ProbeCgroup(string cgroup, string executablePath)
    {
        IntPtr attr;
        Check(Interop.PSpawnCore.AttrCreate(&attr), "pspawn_attr_create", executablePath);
        try
        {
            SetCgroup(attr, cgroup, executablePath);
        }
        finally
        {
            Interop.PSpawnCore.AttrDestroy(attr);
        }
    }

    private void SetStdio(int fd, StdioTarget target, string executablePath)
    {
        string what = fd switch { 0 => "standard input", 1 => "standard output", _ => "standard error" };
        switch (target.Kind)
        {
            case StdioKind.Inherit:
                break;
            case StdioKind.Null:
                Check(Interop.PSpawnCore.AttrStdioNull(_attr, fd), what, executablePath);
                break;
            case StdioKind.Pipe:
                Check(Interop.PSpawnCore.AttrStdioPipe(_attr, fd), what, executablePath);
                break;
            case StdioKind.File:
                byte* path = NativeStringArray.AllocUtf8(target.Path!);
                try
                {
                    Check(Interop.PSpawnCore.AttrStdioFile(_attr, fd, path, target.OpenFlags(fd), (uint)target.Permissions), what, executablePath);
                }
                finally
                {
                    NativeStringArray.FreeUtf8(path);
                }

                break;
            case StdioKind.Handle:
                SafeHandle handle = target.Handle!;
                bool added = false;
                handle.DangerousAddRef(ref added);
                if (added)
                {
                    _referenced.Add(handle);
                }

                Check(Interop.PSpawnCore.AttrStdioFd(_attr, fd, (int)handle.DangerousGetHandle()), what, executablePath);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(target), target.Kind, "Unknown stdio kind.");
        }
    }

    internal static void FillCpuSet(Span<byte> set, IReadOnlySet<int> cpus)
    {
        set.Clear();
        foreach (int cpu in cpus)
        {
            set[cpu / 8] |= (byte)(1 << (cpu % 8));
        }
    }

    private static void Check(int result, string what, string executablePath)
    {
        if (result == 0)
        {
            return;
        }

        Errno e = ErrorMapper.ToErrno(Marshal.GetLastPInvokeError());
        string message = $"The native core rejected {what} for '{executablePath}': {ErrorMapper.Describe(e)}.";
        throw e is Errno.EINVAL or Errno.EBADF
            ? new PSpawnArgumentException(message, null, e, executablePath)
            : new PSpawnException(message, e, executablePath);
    }

    public void Dispose()
    {
        IntPtr attr = _attr;
        _attr = IntPtr.Zero;
        if (attr != IntPtr.Zero)
        {
            Interop.PSpawnCore.AttrDestroy(attr);
        }

        foreach (SafeHandle handle in _referenced)
        {
            handle.DangerousRelease();
        }

        _referenced.Clear();
    }
}
