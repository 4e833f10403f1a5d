using System.Runtime.InteropServices;

namespace PSpawn;

internal static partial class Interop
{
    /// <summary>File status and credentials, for resolving executables as <see cref="System.Diagnostics.Process"/> does.</summary>
    internal static unsafe partial class Sys
    {
        internal const int ENOENT = 2;
        internal const int ENOEXEC = 8;
        internal const int EACCES = 13;
        internal const uint S_IFMT = 0xF000;
        internal const uint S_IFDIR = 0x4000;
        internal const uint S_IFREG = 0x8000;
        internal const uint S_IXUSR = 0x40;
        internal const uint S_IXGRP = 0x08;
        internal const uint S_IXOTH = 0x01;

        /// <summary>struct stat on x86-64 Linux (144 bytes); only the fields read here are named.</summary>
        [StructLayout(LayoutKind.Explicit, Size = 144)]
        internal struct FileStatus
        {
            [FieldOffset(0)] public ulong Device;
            [FieldOffset(8)] public ulong Inode;
            [FieldOffset(24)] public uint Mode;
            [FieldOffset(28)] public uint Uid;
            [FieldOffset(32)] public uint Gid;
            [FieldOffset(48)] public long Size;
            [FieldOffset(88)] public long ModifiedSeconds;
            [FieldOffset(96)] public long ModifiedNanoseconds;
            [FieldOffset(104)] public long ChangedSeconds;
            [FieldOffset(112)] public long ChangedNanoseconds;
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
