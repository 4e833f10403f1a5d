using System.Runtime.InteropServices;

namespace PSpawn;

internal static partial class Interop
{
    /// <summary>File status and credentials, for resolving executables as <see cref="System.Diagnostics.Process"/> does.</summary>
    internal static unsafe partial class Sys
    {
        /// <summary>struct stat, laid out from the C library's header (SharedConstants.g.cs); only the fields read here are named.</summary>
        [StructLayout(LayoutKind.Explicit, Size = StatSize)]
        internal struct FileStatus
        {
            [FieldOffset(Stat_Device)] public ulong Device;
            [FieldOffset(Stat_Inode)] public ulong Inode;
            [FieldOffset(Stat_Mode)] public uint Mode;
            [FieldOffset(Stat_Uid)] public uint Uid;
            [FieldOffset(Stat_Gid)] public uint Gid;
            [FieldOffset(Stat_Size)] public long Size;
            [FieldOffset(Stat_ModifiedSeconds)] public long ModifiedSeconds;
            [FieldOffset(Stat_ModifiedNanoseconds)] public long ModifiedNanoseconds;
            [FieldOffset(Stat_ChangedSeconds)] public long ChangedSeconds;
            [FieldOffset(Stat_ChangedNanoseconds)] public long ChangedNanoseconds;
        }

        [LibraryImport(LibC, EntryPoint = "stat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int Stat(string path, out FileStatus status);

        [LibraryImport(LibC, EntryPoint = "geteuid")]
        internal static partial uint GetEUid();

        [LibraryImport(LibC, EntryPoint = "getegid")]
        internal static partial uint GetEGid();

        [LibraryImport(LibC, EntryPoint = "getgroups", SetLastError = true)]
        internal static partial int GetGroups(int size, uint* list);
    }
}
