namespace PSpawn;

/// <summary>
/// A <see cref="System.Diagnostics.ProcessStartInfo"/> setting that <see cref="PSpawnProcessStarter"/> does not support
/// (<see cref="System.Diagnostics.ProcessStartInfo.UseShellExecute"/> true, or a
/// <see cref="System.Diagnostics.ProcessStartInfo.UserName"/>): start such a process with
/// <see cref="System.Diagnostics.Process.Start(System.Diagnostics.ProcessStartInfo)"/>. Nothing was started.
/// </summary>
public sealed class PSpawnStartInfoNotSupportedException : NotSupportedException
{
    /// <summary>Creates the exception.</summary>
    public PSpawnStartInfoNotSupportedException()
        : this("This ProcessStartInfo setting is not supported by PSpawnProcessStarter.")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public PSpawnStartInfoNotSupportedException(string message)
        : base(message)
    {
        Setting = string.Empty;
    }

    /// <summary>Creates the exception with a message and an inner exception.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public PSpawnStartInfoNotSupportedException(string message, Exception innerException)
        : base(message, innerException)
    {
        Setting = string.Empty;
    }

    /// <summary>Creates the exception for one setting.</summary>
    /// <param name="setting">The ProcessStartInfo property, for example "UseShellExecute".</param>
    /// <param name="message">The message.</param>
    public PSpawnStartInfoNotSupportedException(string setting, string message)
        : base(message)
    {
        Setting = setting;
    }

    /// <summary>The name of the <see cref="System.Diagnostics.ProcessStartInfo"/> property that is not supported.</summary>
    public string Setting { get; }
}
