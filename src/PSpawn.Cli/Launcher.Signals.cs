using System.Globalization;
using System.Runtime.InteropServices;

namespace PSpawn.Cli;

/// <summary>Signal forwarding: SIGINT/SIGTERM to pspawn and --timeout stop the instances, SIGKILL after the grace period.</summary>
internal sealed partial class Launcher
{
    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true; // pspawn decides when to exit
        int signal = context.Signal == PosixSignal.SIGINT ? SIGINT : SIGTERM;
        bool first;
        lock (_gate)
        {
            first = _interruptedBy == 0;
            if (first)
            {
                _interruptedBy = signal;
            }
        }

        if (first)
        {
            if (!_settings.Quiet)
            {
                _stderr.WriteLine($"pspawn: {(signal == SIGINT ? "SIGINT" : "SIGTERM")}: forwarding SIGINT to the instances, SIGKILL in {_settings.Grace.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s (again to kill now)");
            }

            Stop(SIGINT);
        }
        else
        {
            KillAll();
        }
    }

    private void OnTimeout()
    {
        lock (_gate)
        {
            if (_interruptedBy != 0 || _exited == _records.Length)
            {
                return;
            }

            _timedOut = true;
        }

        if (!_settings.Quiet)
        {
            _stderr.WriteLine($"pspawn: --timeout expired: SIGTERM to the instances still running, SIGKILL in {_settings.Grace.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s");
        }

        Stop(SIGTERM);
    }

    /// <summary>Stops launching, sends <paramref name="signal"/> to every running instance, and SIGKILL after the grace period.</summary>
    private void Stop(int signal)
    {
        _stopLaunching.Cancel();
        SpawnedProcess?[] running;
        lock (_gate)
        {
            if (_stopSignal != 0)
            {
                return;
            }

            _stopSignal = signal;
            running = _records.Select(r => r.Process).ToArray();
        }

        foreach (SpawnedProcess? process in running)
        {
            Signal(process, signal);
        }

        _ = Task.Delay(_settings.Grace).ContinueWith(_ => KillAll(), TaskScheduler.Default);
    }

    private void KillAll()
    {
        _stopLaunching.Cancel();
        SpawnedProcess?[] running;
        lock (_gate)
        {
            _killed = true;
            running = _records.Select(r => r.Process).ToArray();
        }

        foreach (SpawnedProcess? process in running)
        {
            Signal(process, SIGKILL);
        }
    }

    private static void Signal(SpawnedProcess? process, int signal)
    {
        try
        {
            process?.Kill(signal); // through the pidfd: does nothing once it has exited
        }
        catch (Exception ex) when (ex is PSpawnException or ObjectDisposedException or InvalidOperationException)
        {
        }
    }
}
