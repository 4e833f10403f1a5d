using System.Reflection;
using System.Runtime.InteropServices;

namespace PSpawn.Tests;

/// <summary>
/// The managed mirrors of the C structs against the sizes and offsets the build read from the headers
/// (SharedConstants.g.cs, Interop.NativeLayout and Interop.KernelAbi): a field added, moved or retyped in
/// a header without its mirror fails here, not as memory corruption at run time.
/// </summary>
public sealed class StructLayoutTests
{
    private static readonly string[] MirrorNames = ["ContextAttr", "NumaNode", "Instance"];

    public static TheoryData<string> Mirrors() => new(MirrorNames);

    [Theory]
    [MemberData(nameof(Mirrors))]
    public void Managed_mirror_matches_the_C_struct(string name)
    {
        Type mirror = typeof(Interop.PSpawnCore).GetNestedType(name, BindingFlags.NonPublic)
            ?? throw new InvalidOperationException($"no Interop.PSpawnCore.{name}");
        AssertLayout(mirror, typeof(Interop.NativeLayout), name);
    }

    [Fact]
    public void Kernel_argument_block_mirror_matches_the_uapi_header() =>
        AssertLayout(typeof(Interop.KernelAbi.Args), typeof(Interop.KernelAbi), "Args");

    [Fact]
    public void Every_generated_layout_has_a_tested_mirror()
    {
        string[] structs = typeof(Interop.NativeLayout)
            .GetFields(BindingFlags.NonPublic | BindingFlags.Static)
            .Where(f => !f.Name.Contains('_', StringComparison.Ordinal) && f.Name.EndsWith("Size", StringComparison.Ordinal))
            .Select(f => f.Name[..^"Size".Length])
            .Order(StringComparer.Ordinal)
            .ToArray();
        Assert.Equal(MirrorNames.Order(StringComparer.Ordinal), structs);
    }

    /// <summary>Checks the size and every field's offset (the generated names are Mirror_Field).</summary>
    private static void AssertLayout(Type mirror, Type layout, string prefix)
    {
        FieldInfo[] generated = layout.GetFields(BindingFlags.NonPublic | BindingFlags.Static);
        int size = (int)generated.Single(f => f.Name == prefix + "Size").GetRawConstantValue()!;
        Assert.Equal(size, Marshal.SizeOf(mirror));

        string[] managedFields = mirror.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance)
            .Select(f => f.Name)
            .ToArray();
        var checkedFields = new List<string>();
        foreach (FieldInfo field in generated.Where(f => f.Name.StartsWith(prefix + "_", StringComparison.Ordinal)))
        {
            string managed = field.Name[(prefix.Length + 1)..];
            Assert.Contains(managed, managedFields);
            Assert.Equal((int)field.GetRawConstantValue()!, (int)Marshal.OffsetOf(mirror, managed));
            checkedFields.Add(managed);
        }

        // Every managed field has a generated offset: a mirror field the generator does not know fails.
        Assert.True(managedFields.Order(StringComparer.Ordinal).SequenceEqual(checkedFields.Order(StringComparer.Ordinal)),
            $"{mirror.Name}: fields without a generated offset: {string.Join(", ", managedFields.Except(checkedFields))}");
    }
}
