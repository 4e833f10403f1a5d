using System.Collections;
using System.Runtime.InteropServices;
using System.Text;

namespace PSpawn;

/// <summary>
/// A NULL-terminated array of NUL-terminated UTF-8 strings (argv or envp) in one native allocation:
/// the pointer array first, then the bytes of the strings.
/// </summary>
internal sealed unsafe class NativeStringArray : IDisposable
{
    private void* _block;

    private NativeStringArray(void* block, int count)
    {
        _block = block;
        Count = count;
    }

    /// <summary>The char** to hand to the native core.</summary>
    public byte** Pointer => (byte**)_block;

    /// <summary>The number of strings (not counting the terminating NULL).</summary>
    public int Count { get; }

    /// <summary>Copies <paramref name="strings"/>; throws <see cref="ArgumentException"/> if one contains NUL.</summary>
    public static NativeStringArray Create(IReadOnlyList<string> strings, string paramName)
    {
        int count = strings.Count;
        nuint pointerBytes = (nuint)(count + 1) * (nuint)sizeof(byte*);
        nuint total = pointerBytes;
        for (int i = 0; i < count; i++)
        {
            string? s = strings[i];
            if (s is null)
            {
                throw new ArgumentException($"Element {i} is null.", paramName);
            }

            if (s.Contains('\0', StringComparison.Ordinal))
            {
                throw new ArgumentException($"Element {i} contains a NUL character, which cannot be passed to a process.", paramName);
            }

            total += (nuint)Encoding.UTF8.GetByteCount(s) + 1;
        }

        byte* block = (byte*)NativeMemory.Alloc(total);
        byte** pointers = (byte**)block;
        byte* cursor = block + pointerBytes;
        byte* end = block + total;
        for (int i = 0; i < count; i++)
        {
            pointers[i] = cursor;
            int written = Encoding.UTF8.GetBytes(strings[i], new Span<byte>(cursor, (int)(end - cursor)));
            cursor[written] = 0;
            cursor += written + 1;
        }

        pointers[count] = null;
        return new NativeStringArray(block, count);
    }

    /// <summary>A NUL-terminated UTF-8 copy of one string, for the native core.</summary>
    public static byte* AllocUtf8(string value) => (byte*)Marshal.StringToCoTaskMemUTF8(value);

    /// <summary>Frees what <see cref="AllocUtf8"/> returned.</summary>
    public static void FreeUtf8(byte* value) => Marshal.FreeCoTaskMem((IntPtr)value);

    /// <summary>This process's environment as the .NET runtime sees it (which includes changes made with
    /// <see cref="Environment.SetEnvironmentVariable(string, string)"/>, unlike the C library's environ).</summary>
    public static Dictionary<string, string> CurrentEnvironment()
    {
        var variables = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (DictionaryEntry entry in Environment.GetEnvironmentVariables())
        {
            if (entry.Key is string name && entry.Value is string value)
            {
                variables[name] = value;
            }
        }

        return variables;
    }

    /// <summary>"NAME=value" strings for an environment block.</summary>
    public static List<string> ToEnvironmentBlock(IEnumerable<KeyValuePair<string, string>> variables, string paramName)
    {
        var block = new List<string>();
        foreach (var (name, value) in variables)
        {
            SpawnOptions.ValidateVariableName(name, paramName);
            block.Add(string.Concat(name, "=", value));
        }

        return block;
    }

    public void Dispose()
    {
        void* block = _block;
        _block = null;
        if (block is not null)
        {
            NativeMemory.Free(block);
        }
    }
}
