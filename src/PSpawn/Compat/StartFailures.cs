using System.ComponentModel;
using System.Runtime.InteropServices;

namespace PSpawn;

/// <summary>The exceptions <see cref="System.Diagnostics.Process.Start(System.Diagnostics.ProcessStartInfo)"/> throws on Unix, built the same way.</summary>
internal static class StartFailures
{
    /// <summary>What Process says when FileName is a directory (SR.DirectoryNotValidAsInput).</summary>
    internal const string DirectoryNotValid = "The FileName property should not be a directory unless UseShellExecute is set.";

    /// <summary>Win32Exception(errno, "An error occurred trying to start process '...' with working directory '...'. strerror").</summary>
    internal static Win32Exception ErrorStarting(int errno, string fileName, string? workingDirectory)
    {
        string directory = string.IsNullOrEmpty(workingDirectory) ? Directory.GetCurrentDirectory() : workingDirectory;
        string message = $"An error occurred trying to start process '{fileName}' with working directory '{directory}'. {Marshal.GetPInvokeErrorMessage(errno)}";
        return new Win32Exception(errno, message);
    }

    /// <summary>A PSpawn failure (create or spawn) as Process would have reported the failed exec.</summary>
    internal static Exception FromPSpawn(Exception exception, string fileName, string? workingDirectory) =>
        exception is IPSpawnError error ? ErrorStarting((int)error.Errno, fileName, workingDirectory) : exception;

    /// <summary>The checks Process.Start makes before starting anything, with the same exception types.</summary>
    internal static void ThrowIfInvalid(System.Diagnostics.ProcessStartInfo startInfo)
    {
        ArgumentNullException.ThrowIfNull(startInfo);
        if (startInfo.FileName.Length == 0)
        {
            throw new InvalidOperationException("Cannot start process because a file name has not been provided.");
        }

        if (startInfo.StandardInputEncoding is not null && !startInfo.RedirectStandardInput)
        {
            throw new InvalidOperationException("StandardInputEncoding is only supported when standard input is redirected.");
        }

        if (startInfo.StandardOutputEncoding is not null && !startInfo.RedirectStandardOutput)
        {
            throw new InvalidOperationException("StandardOutputEncoding is only supported when standard output is redirected.");
        }

        if (startInfo.StandardErrorEncoding is not null && !startInfo.RedirectStandardError)
        {
            throw new InvalidOperationException("StandardErrorEncoding is only supported when standard error is redirected.");
        }

        if (!string.IsNullOrEmpty(startInfo.Arguments) && startInfo.ArgumentList.Count > 0)
        {
            throw new InvalidOperationException("The Arguments and ArgumentList properties cannot be used together.");
        }

        foreach (string? argument in startInfo.ArgumentList)
        {
            if (argument is null)
            {
                throw new ArgumentNullException(nameof(startInfo), "ArgumentList may not contain null.");
            }
        }

        if (startInfo.UseShellExecute)
        {
            throw new PSpawnStartInfoNotSupportedException(
                nameof(startInfo.UseShellExecute),
                "UseShellExecute = true is not supported by PSpawnProcessStarter (it opens files with the desktop's handler); use Process.Start.");
        }

        if (!string.IsNullOrEmpty(startInfo.UserName))
        {
            throw new PSpawnStartInfoNotSupportedException(
                nameof(startInfo.UserName),
                $"Starting a process as another user (UserName = '{startInfo.UserName}') is not supported by PSpawnProcessStarter: a zygote runs with this process's credentials; use Process.Start.");
        }
    }
}
