using System.Diagnostics;

namespace PSpawn;

/// <summary>The one-line opt-in: <c>startInfo.StartWithPSpawn()</c> instead of <c>Process.Start(startInfo)</c>.</summary>
public static class ProcessStartInfoExtensions
{
    /// <summary>Starts <paramref name="startInfo"/> through <see cref="PSpawnProcessStarter.Shared"/> (see <see cref="PSpawnProcess.Start(ProcessStartInfo)"/>).</summary>
    /// <param name="startInfo">What to start.</param>
    /// <returns>The started process.</returns>
    public static PSpawnProcess StartWithPSpawn(this ProcessStartInfo startInfo) => PSpawnProcess.Start(startInfo);
}
