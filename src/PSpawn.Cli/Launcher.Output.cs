using System.Globalization;
using Spectre.Console;

namespace PSpawn.Cli;

/// <summary>Output: the instances' prefixed lines, the progress display, the exit status and the summary on standard error.</summary>
internal sealed partial class Launcher
{
    private void WriteLine(TextWriter writer, string prefix, string line)
    {
        lock (_outputGate)
        {
            writer.Write(prefix);
            writer.WriteLine(line);
            writer.Flush();
        }
    }

    private async Task ShowProgressAsync(Task run)
    {
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        await console.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .StartAsync(async progress =>
            {
                ProgressTask launching = progress.AddTask("launching", maxValue: _records.Length);
                ProgressTask exited = progress.AddTask("exited", maxValue: _records.Length);
                while (!run.IsCompleted)
                {
                    launching.Value = Volatile.Read(ref _launched);
                    exited.Value = Volatile.Read(ref _exited);
                    await Task.WhenAny(run, Task.Delay(100));
                }

                launching.Value = _records.Length;
                exited.Value = _records.Length;
            });
        await run;
    }

    /// <summary>The exit status of pspawn (see <see cref="ExitCodes"/>).</summary>
    private int Aggregate()
    {
        if (_interruptedBy != 0)
        {
            return ExitCodes.Interrupted(_interruptedBy);
        }

        if (_timedOut)
        {
            return ExitCodes.TimedOut;
        }

        if (_records.Any(r => r.SpawnError is not null))
        {
            return ExitCodes.SpawnFailed;
        }

        return _records.FirstOrDefault(r => r.Status is not 0)?.Status ?? ExitCodes.Success;
    }

    private void Report(PSpawnContext context, TimeSpan elapsed, int status)
    {
        foreach (InstanceRecord record in _records.Where(r => r.SpawnError is not null))
        {
            _stderr.WriteLine($"pspawn: rank {record.Rank.ToString(CultureInfo.InvariantCulture)} did not start: {record.SpawnError}");
        }

        if (_settings.Quiet)
        {
            return;
        }

        int started = _records.Count(r => r.Process is not null);
        int failed = _records.Count(r => r.Status is not null and not 0);
        InstanceRecord? first = _records.FirstOrDefault(r => r.Status is not null and not 0);
        string firstFailure = first is null ? string.Empty
            : first.Signal is int signal
                ? $"; first failure: rank {first.Rank.ToString(CultureInfo.InvariantCulture)} killed by signal {signal.ToString(CultureInfo.InvariantCulture)}"
                : $"; first failure: rank {first.Rank.ToString(CultureInfo.InvariantCulture)} exited with {first.ExitCode?.ToString(CultureInfo.InvariantCulture)}";
        _stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"pspawn: {started} of {_records.Length} instances started ({context.Mode}{(_settings.Deferred ? " from pspawn_ready()" : string.Empty)}, {context.ProxyCount} proxies), {failed} failed{firstFailure}; {elapsed.TotalSeconds:0.000} s; exit status {status}"));
    }
}
