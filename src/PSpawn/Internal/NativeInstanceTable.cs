using System.Runtime.InteropServices;

namespace PSpawn;

/// <summary>
/// The pspawn_instance_t array of a batch in native memory, with every argv, envp and CPU set it points to. Built and
/// validated up front (an <see cref="ArgumentException"/> before anything is spawned); consecutive instances with the
/// same arguments and no environment changes of their own share one argv and one envp, so they travel once.
/// </summary>
internal sealed unsafe class NativeInstanceTable : IDisposable
{
    private readonly List<NativeStringArray> _arrays = [];
    private Interop.PSpawnCore.Instance* _instances;
    private byte* _cpuSets;

    private NativeInstanceTable(int count)
    {
        Count = count;
    }

    /// <summary>The number of instances.</summary>
    public int Count { get; }

    /// <summary>The first instance; instance i is at <c>Pointer + i</c>.</summary>
    public Interop.PSpawnCore.Instance* Pointer => _instances;

    /// <summary>Validates and copies the instances (throws <see cref="ArgumentException"/>).</summary>
    /// <param name="instances">The batch.</param>
    /// <param name="argv0">argv[0] of every instance.</param>
    /// <param name="baseEnvironment">The batch's environment (name to value), before each instance's changes.</param>
    /// <param name="options">The batch's options (their CPU sets apply to instances without one).</param>
    /// <param name="paramName">The parameter to name in exceptions.</param>
    public static NativeInstanceTable Create(
        IReadOnlyList<SpawnInstance> instances, string argv0, Dictionary<string, string> baseEnvironment, SpawnOptions options, string paramName)
    {
        int count = instances.Count;
        var table = new NativeInstanceTable(count);
        try
        {
            table.Build(instances, argv0, baseEnvironment, options, paramName);
            return table;
        }
        catch
        {
            table.Dispose();
            throw;
        }
    }

    private void Build(IReadOnlyList<SpawnInstance> instances, string argv0, Dictionary<string, string> baseEnvironment, SpawnOptions options, string paramName)
    {
        int count = Count;
        _instances = (Interop.PSpawnCore.Instance*)NativeMemory.AllocZeroed((nuint)Math.Max(1, count), (nuint)sizeof(Interop.PSpawnCore.Instance));

        // CPU sets first (validation), so that nothing is encoded for a batch that is refused.
        int withCpus = 0;
        for (int i = 0; i < count; i++)
        {
            SpawnInstance? instance = instances[i] ?? throw new ArgumentException($"Instance {i} is null.", paramName);
            ArgumentNullException.ThrowIfNull(instance.Arguments, $"{paramName}[{i}].Arguments");
            ArgumentNullException.ThrowIfNull(instance.Environment, $"{paramName}[{i}].Environment");
            if (instance.Cpus is not null)
            {
                SpawnOptions.ValidateCpuSet(instance.Cpus, $"Instance {i}'s Cpus", paramName);
            }

            if (CpusOf(instance, i, options) is not null)
            {
                withCpus++;
            }
        }

        if (withCpus > 0)
        {
            _cpuSets = (byte*)NativeMemory.AllocZeroed((nuint)withCpus * Interop.PSpawnCore.CpuSetBytes);
        }

        var baseBlock = new List<string>(baseEnvironment.Count);
        var baseNames = new List<string>(baseEnvironment.Count);
        foreach (var (name, value) in baseEnvironment)
        {
            baseNames.Add(name);
            baseBlock.Add(string.Concat(name, "=", value));
        }

        byte** sharedEnvp = null;
        SpawnInstance? previous = null;
        byte* cpuCursor = _cpuSets;
        for (int i = 0; i < count; i++)
        {
            SpawnInstance instance = instances[i];
            Interop.PSpawnCore.Instance* native = _instances + i;
            if (previous is not null && ReferenceEquals(instance.Arguments, previous.Arguments))
            {
                native->Argv = _instances[i - 1].Argv;
            }
            else
            {
                var argv = new string[instance.Arguments.Count + 1];
                argv[0] = argv0;
                for (int k = 0; k < instance.Arguments.Count; k++)
                {
                    argv[k + 1] = instance.Arguments[k] ?? throw new ArgumentException($"Instance {i}'s argument {k} is null.", paramName);
                }

                native->Argv = Add(argv, $"Instance {i}'s arguments", paramName);
            }

            if (instance.Environment.Count == 0)
            {
                if (sharedEnvp is null)
                {
                    sharedEnvp = Add(baseBlock, "The batch's environment", paramName);
                }

                native->Envp = sharedEnvp;
            }
            else if (previous is not null && ReferenceEquals(instance.Environment, previous.Environment))
            {
                native->Envp = _instances[i - 1].Envp;
            }
            else
            {
                native->Envp = Add(Environment(baseNames, baseBlock, instance.Environment, i, paramName), $"Instance {i}'s environment", paramName);
            }

            if (CpusOf(instance, i, options) is { } cpus)
            {
                NativeSpawnAttributes.FillCpuSet(new Span<byte>(cpuCursor, Interop.PSpawnCore.CpuSetBytes), cpus);
                native->Cpus = cpuCursor;
                native->CpuSetSize = Interop.PSpawnCore.CpuSetBytes;
                cpuCursor += Interop.PSpawnCore.CpuSetBytes;
            }

            previous = instance;
        }
    }

    /// <summary>The CPU set instance <paramref name="index"/> gets: its own, else the batch's.</summary>
    private static IReadOnlySet<int>? CpusOf(SpawnInstance instance, int index, SpawnOptions options) =>
        instance.Cpus ?? options.Cpus ?? options.CpuSetsPerInstance?[index % options.CpuSetsPerInstance.Count];

    private static List<string> Environment(List<string> baseNames, List<string> baseBlock, IReadOnlyDictionary<string, string?> changes, int index, string paramName)
    {
        var block = new List<string>(baseBlock.Count + changes.Count);
        for (int k = 0; k < baseBlock.Count; k++)
        {
            if (!changes.ContainsKey(baseNames[k]))
            {
                block.Add(baseBlock[k]);
            }
        }

        foreach (var (name, value) in changes)
        {
            if (name is null || name.Length == 0 || name.Contains('=', StringComparison.Ordinal) || name.Contains('\0', StringComparison.Ordinal))
            {
                throw new ArgumentException($"Instance {index}'s environment: '{name}' is not a valid environment variable name: it must be non-empty and contain neither '=' nor NUL.", paramName);
            }

            if (value is not null)
            {
                block.Add(string.Concat(name, "=", value));
            }
        }

        return block;
    }

    private byte** Add(IReadOnlyList<string> strings, string what, string paramName)
    {
        NativeStringArray array;
        try
        {
            array = NativeStringArray.Create(strings, paramName);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{what}: {e.Message}", paramName, e);
        }

        _arrays.Add(array);
        return array.Pointer;
    }

    public void Dispose()
    {
        foreach (NativeStringArray array in _arrays)
        {
            array.Dispose();
        }

        _arrays.Clear();
        NativeMemory.Free(_instances);
        _instances = null;
        NativeMemory.Free(_cpuSets);
        _cpuSets = null;
    }
}
