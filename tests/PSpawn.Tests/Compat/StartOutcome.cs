using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests.Compat;

/// <summary>
/// The drop-in tests start many short-lived children (through Process.Start too): run alone, so that tests which look
/// for zombie children of this process at one instant do not see theirs between exit and reaping.
/// </summary>
[CollectionDefinition(nameof(DropInCollection), DisableParallelization = true)]
public sealed class DropInCollection
{
}

/// <summary>What starting a ProcessStartInfo gave: the output and exit code, or the exception Start threw.</summary>
public sealed record StartOutcome(string? Output, string? Error, int? ExitCode, string? Exception, int? NativeErrorCode, string? Message)
{
    /// <summary>Starts a fresh start info through Process.Start and through the drop-in and returns both outcomes.</summary>
    public static (StartOutcome Process, StartOutcome DropIn) Both(Func<ProcessStartInfo> startInfo, string? input = null, PSpawnProcessStarter? starter = null) =>
        (WithProcess(startInfo(), input), WithDropIn(startInfo(), input, starter ?? PSpawnProcessStarter.Shared));

    public static StartOutcome WithProcess(ProcessStartInfo startInfo, string? input = null)
    {
        Process process;
        try
        {
            process = Process.Start(startInfo)!;
        }
        catch (Exception e)
        {
            return Failed(e);
        }

        using (process)
        {
            return Collect(startInfo, input, () => process.StandardInput, () => process.StandardOutput, () => process.StandardError, process.WaitForExit, () => process.Kill(true), () => process.ExitCode);
        }
    }

    public static StartOutcome WithDropIn(ProcessStartInfo startInfo, string? input, PSpawnProcessStarter starter)
    {
        PSpawnProcess process;
        try
        {
            process = starter.Start(startInfo);
        }
        catch (Exception e)
        {
            return Failed(e);
        }

        using (process)
        {
            return Collect(startInfo, input, () => process.StandardInput, () => process.StandardOutput, () => process.StandardError, process.WaitForExit, () => process.Kill(true), () => process.ExitCode);
        }
    }

    /// <summary>Feeds the input, reads both outputs at once, waits (bounded) and takes the exit code.</summary>
    private static StartOutcome Collect(
        ProcessStartInfo startInfo, string? input, Func<StreamWriter> stdin, Func<StreamReader> stdout, Func<StreamReader> stderr,
        Func<int, bool> wait, Action killTree, Func<int> exitCode)
    {
        Task<string?> output = startInfo.RedirectStandardOutput ? ReadAsync(stdout()) : Task.FromResult<string?>(null);
        Task<string?> error = startInfo.RedirectStandardError ? ReadAsync(stderr()) : Task.FromResult<string?>(null);
        if (startInfo.RedirectStandardInput)
        {
            stdin().Write(input ?? string.Empty);
            stdin().Close();
        }

        if (!wait(60_000))
        {
            killTree();
            throw new TimeoutException($"{startInfo.FileName} did not exit.");
        }

        return new StartOutcome(output.Result, error.Result, exitCode(), null, null, null);
    }

    /// <summary>
    /// The report fixture's JSON without what differs between any two runs (pids) and the two documented differences of
    /// the drop-in (README): descriptors above 2 that this process left inheritable, and signals this process ignores
    /// (SIGPIPE: the .NET runtime ignores it), are inherited by Process's children only.
    /// </summary>
    public StartOutcome WithReportNormalized()
    {
        if (Output is null || Output.Length == 0 || Output[0] != '{')
        {
            return this;
        }

        ReportOutput report = ReportOutput.Parse(Output);
        var text = new StringBuilder();
        text.AppendLine("argv: " + string.Join(" | ", report.Argv.Select(a => $"[{a}]")));
        text.AppendLine("env: " + string.Join(" | ", report.Env));
        foreach (string field in new[] { "sigmask", "sighandled", "affinity" })
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"{field}: {string.Join(",", report.Numbers(field))}");
        }

        foreach (string field in new[] { "cwd", "progname", "short_progname" })
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"{field}: {report.Root.GetProperty(field)}");
        }

        foreach (string field in new[] { "uid", "gid", "euid", "egid", "umask" })
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"{field}: {report.Number(field)}");
        }

        text.AppendLine(CultureInfo.InvariantCulture, $"own group: {report.Number("pgid") == report.Pid}, own session: {report.Number("sid") == report.Pid}");
        return this with { Output = text.ToString() };
    }

    private static async Task<string?> ReadAsync(StreamReader reader) => await reader.ReadToEndAsync();

    private static StartOutcome Failed(Exception e) =>
        new(null, null, null, e.GetType().FullName, (e as Win32Exception)?.NativeErrorCode, e.Message);
}
