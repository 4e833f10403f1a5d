using System.Text;

namespace PSpawn;

/// <summary>A script's interpreter line (<c>#!interpreter [argument]</c>), read as Linux's binfmt_script reads it.</summary>
internal readonly record struct ScriptInterpreter(string Interpreter, string? Argument)
{
    /// <summary>What the kernel reads of a file to find the interpreter line (BINPRM_BUF_SIZE).</summary>
    private const int HeaderSize = 256;

    /// <summary>
    /// The interpreter line of <paramref name="path"/>, or null when the file does not start with <c>#!</c> (or cannot be
    /// read: creating the context reports that error). An interpreter line without an interpreter, or whose interpreter
    /// does not fit in the first 256 bytes, is <c>ENOEXEC</c> as for execve.
    /// </summary>
    internal static ScriptInterpreter? Read(string path, out int errno)
    {
        errno = 0;
        Span<byte> header = stackalloc byte[HeaderSize];
        int length;
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);
            length = file.ReadAtLeast(header, HeaderSize, throwOnEndOfStream: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        if (length < 2 || header[0] != (byte)'#' || header[1] != (byte)'!')
        {
            return null;
        }

        ReadOnlySpan<byte> line = header[2..length];
        int newline = line.IndexOf((byte)'\n');
        bool truncated = newline < 0;
        line = line[..(truncated ? line.Length : newline)].TrimEnd(" \t"u8);
        line = line.TrimStart(" \t"u8);
        int end = line.IndexOfAny(" \t\0"u8);
        ReadOnlySpan<byte> interpreter = end < 0 ? line : line[..end];
        if (interpreter.IsEmpty || (truncated && end < 0))
        {
            errno = Interop.Sys.ENOEXEC; // no interpreter, or its name may be cut off
            return null;
        }

        ReadOnlySpan<byte> argument = end < 0 ? [] : line[end..].TrimStart(" \t"u8);
        int nul = argument.IndexOf((byte)0);
        argument = nul < 0 ? argument : argument[..nul];
        return new ScriptInterpreter(Encoding.UTF8.GetString(interpreter), argument.IsEmpty ? null : Encoding.UTF8.GetString(argument));
    }
}
