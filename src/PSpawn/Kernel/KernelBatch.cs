using System.Runtime.InteropServices;

namespace PSpawn;

/// <summary>
/// A batch laid out for the ipspawn system call: the filename, one argv pointer and one envp pointer per instance (the
/// vectors themselves are the <see cref="NativeInstanceTable"/>'s), and the CPU masks, all in native memory that does not
/// move and is freed by <see cref="Dispose"/>. Cut into calls (<see cref="NextPart"/>) within the kernel's limits:
/// <see cref="KernelDetection.MaxSpawns"/> instances and <see cref="Interop.KernelAbi.MaxTotalBytes"/> of strings and pointers.
/// </summary>
internal sealed unsafe class KernelBatch : IDisposable
{
    private const int MaskBytes = Interop.PSpawnCore.CpuSetBytes;

    private readonly NativeInstanceTable _table;
    private readonly int _maxSpawns;
    private readonly long[] _bytes;
    private byte* _filename;
    private ulong* _argv;
    private ulong* _envp;
    private byte* _masks;
    private bool _sharedMask;

    private KernelBatch(NativeInstanceTable table, int maxSpawns)
    {
        _table = table;
        _maxSpawns = maxSpawns;
        _bytes = new long[table.Count];
    }

    public int Count => _table.Count;

    /// <summary>Lays out <paramref name="table"/> (which must outlive this) for <paramref name="path"/>.</summary>
    /// <param name="table">The validated instances.</param>
    /// <param name="path">The executable.</param>
    /// <param name="core">The context's core: instances without a CPU set run there; -1 leaves them the caller's affinity.</param>
    /// <param name="maxSpawns">Instances per call.</param>
    public static KernelBatch Create(NativeInstanceTable table, string path, int core, int maxSpawns)
    {
        var batch = new KernelBatch(table, maxSpawns);
        try
        {
            batch.Build(path, core);
            return batch;
        }
        catch
        {
            batch.Dispose();
            throw;
        }
    }

    private void Build(string path, int core)
    {
        int count = Count;
        _filename = NativeStringArray.AllocUtf8(path);
        _argv = (ulong*)NativeMemory.Alloc((nuint)Math.Max(1, count), sizeof(ulong));
        _envp = (ulong*)NativeMemory.Alloc((nuint)Math.Max(1, count), sizeof(ulong));
        bool anyCpus = false;
        for (int i = 0; i < count; i++)
        {
            Interop.PSpawnCore.Instance* instance = _table.Pointer + i;
            _argv[i] = (ulong)instance->Argv;
            _envp[i] = (ulong)instance->Envp;
            _bytes[i] = VectorBytes(instance->Argv) + VectorBytes(instance->Envp);
            anyCpus |= instance->Cpus != null;
        }

        if (!anyCpus && core < 0)
        {
            return; // cpumasks 0: every instance inherits the caller's affinity
        }

        if (!anyCpus)
        {
            _masks = (byte*)NativeMemory.AllocZeroed(MaskBytes);
            _masks[core / 8] |= (byte)(1 << (core % 8));
            _sharedMask = true;
            return;
        }

        // Instances without a set of their own get what they would get without the others' masks.
        byte* fallback = stackalloc byte[MaskBytes];
        new Span<byte>(fallback, MaskBytes).Clear();
        if (core >= 0)
        {
            fallback[core / 8] |= (byte)(1 << (core % 8));
        }
        else if (Interop.Kernel.SchedGetAffinity(0, MaskBytes, fallback) != 0)
        {
            new Span<byte>(fallback, MaskBytes).Fill(0xff); // the kernel intersects with what is allowed
        }

        _masks = (byte*)NativeMemory.Alloc((nuint)count, MaskBytes);
        for (int i = 0; i < count; i++)
        {
            Interop.PSpawnCore.Instance* instance = _table.Pointer + i;
            byte* source = instance->Cpus != null ? instance->Cpus : fallback;
            Buffer.MemoryCopy(source, _masks + ((long)i * MaskBytes), MaskBytes, MaskBytes);
        }
    }

    /// <summary>How many instances from <paramref name="start"/> (at most <paramref name="limit"/>) one call takes.</summary>
    public int NextPart(int start, int limit)
    {
        int end = Math.Min(Count, start + Math.Min(limit, _maxSpawns));
        long total = 0;
        for (int i = start; i < end; i++)
        {
            total += _bytes[i];
            if (total > Interop.KernelAbi.MaxTotalBytes && i > start)
            {
                return i - start; // the rest go in the next call (an instance too large alone fails with E2BIG)
            }
        }

        return end - start;
    }

    /// <summary>Fills the argument block for instances [start, start + count).</summary>
    public void Fill(Interop.KernelAbi.Args* args, int start, int count, ulong flags)
    {
        *args = default;
        args->Filename = (ulong)_filename;
        args->Nspawns = (uint)count;
        args->Flags = flags;
        if (AllSame(_argv, start, count))
        {
            args->Argv = _argv[start];
            args->Flags |= Interop.KernelAbi.SharedArgv;
        }
        else
        {
            args->Argv = (ulong)(_argv + start);
        }

        if (AllSame(_envp, start, count))
        {
            args->Envp = _envp[start];
            args->Flags |= Interop.KernelAbi.SharedEnvp;
        }
        else
        {
            args->Envp = (ulong)(_envp + start);
        }

        if (_masks != null)
        {
            args->CpumaskSize = MaskBytes;
            args->Cpumasks = (ulong)(_sharedMask ? _masks : _masks + ((long)start * MaskBytes));
            args->Flags |= _sharedMask ? Interop.KernelAbi.SharedCpumask : 0;
        }
    }

    /// <summary>Whether instances have masks of their own (a subset then needs <see cref="MaskBytes"/> per instance of scratch).</summary>
    public bool HasPerInstanceMasks => _masks != null && !_sharedMask;

    /// <summary>
    /// Fills the argument block for the instances <paramref name="indices"/> (not contiguous), with their pointers and
    /// masks copied into the caller's scratch arrays (<paramref name="masks"/> only when <see cref="HasPerInstanceMasks"/>).
    /// </summary>
    public void FillSubset(Interop.KernelAbi.Args* args, ReadOnlySpan<int> indices, ulong* argv, ulong* envp, byte* masks)
    {
        for (int j = 0; j < indices.Length; j++)
        {
            argv[j] = _argv[indices[j]];
            envp[j] = _envp[indices[j]];
            if (HasPerInstanceMasks)
            {
                Buffer.MemoryCopy(_masks + ((long)indices[j] * MaskBytes), masks + ((long)j * MaskBytes), MaskBytes, MaskBytes);
            }
        }

        *args = default;
        args->Filename = (ulong)_filename;
        args->Nspawns = (uint)indices.Length;
        args->Argv = (ulong)argv;
        args->Envp = (ulong)envp;
        if (_masks != null)
        {
            args->CpumaskSize = MaskBytes;
            args->Cpumasks = (ulong)(_sharedMask ? _masks : masks);
            args->Flags = _sharedMask ? Interop.KernelAbi.SharedCpumask : 0;
        }
    }

    private static bool AllSame(ulong* pointers, int start, int count)
    {
        for (int i = start + 1; i < start + count; i++)
        {
            if (pointers[i] != pointers[start])
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The bytes the kernel copies for one vector: every string with its NUL and every pointer with the NULL.</summary>
    private static long VectorBytes(byte** vector)
    {
        long bytes = sizeof(ulong);
        for (byte** p = vector; *p != null; p++)
        {
            bytes += sizeof(ulong) + MemoryMarshal.CreateReadOnlySpanFromNullTerminated(*p).Length + 1;
        }

        return bytes;
    }

    public void Dispose()
    {
        if (_filename != null)
        {
            NativeStringArray.FreeUtf8(_filename);
            _filename = null;
        }

        NativeMemory.Free(_argv);
        _argv = null;
        NativeMemory.Free(_envp);
        _envp = null;
        NativeMemory.Free(_masks);
        _masks = null;
    }
}
