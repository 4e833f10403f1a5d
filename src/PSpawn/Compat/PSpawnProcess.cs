using System.Diagnostics;
using System.Text;

namespace PSpawn;

/// <summary>
/// A process started from a <see cref="ProcessStartInfo"/> by a <see cref="PSpawnProcessStarter"/>: the members of
/// <see cref="Process"/> that a program which started a child uses, with the same behaviour (see the README for the
/// differences). <c>PSpawnProcess.Start(psi)</c> is the one-line replacement for <c>Process.Start(psi)</c>.
/// </summary>
/// <remarks>
/// Built on <see cref="SpawnedProcess"/> (available as <see cref="SpawnedProcess"/>): the exit is observed through a
/// pidfd on the library's one epoll thread, whether or not anybody waits. All members are thread-safe.
/// </remarks>
public sealed class PSpawnProcess : IDisposable
{
    private const int StreamBufferSize = 4096; // Process's size for its pipe streams, readers and writers
    private readonly StreamWriter? _standardInput;
    private readonly StreamReader? _standardOutput;
    private readonly StreamReader? _standardError;
    private long _exitTimeTicks; // DateTime.Now ticks when the exit was seen; 0 before
    private int _raisingEvents;
    private int _exitedRaised;
    private EventHandler? _exited;

    internal PSpawnProcess(SpawnedProcess process, ProcessStartInfo startInfo)
    {
        SpawnedProcess = process;
        StartInfo = startInfo;
        StartTime = DateTime.Now;
        if (startInfo.RedirectStandardInput)
        {
            _standardInput = new StreamWriter(process.StandardInput, startInfo.StandardInputEncoding ?? Encoding.Default, StreamBufferSize) { AutoFlush = true };
        }

        if (startInfo.RedirectStandardOutput)
        {
            _standardOutput = new StreamReader(process.StandardOutput, startInfo.StandardOutputEncoding ?? Encoding.Default, true, StreamBufferSize);
        }

        if (startInfo.RedirectStandardError)
        {
            _standardError = new StreamReader(process.StandardError, startInfo.StandardErrorEncoding ?? Encoding.Default, true, StreamBufferSize);
        }

        _ = process.WaitForExitAsync().ContinueWith(
            static (_, state) => ((PSpawnProcess)state!).OnExited(), this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Occurs when the process exits, if <see cref="EnableRaisingEvents"/> is true (as for <see cref="Process.Exited"/>), on a thread-pool thread.</summary>
    public event EventHandler? Exited
    {
        add => _exited += value;
        remove => _exited -= value;
    }

    /// <summary>The underlying PSpawn process (pidfd-based waits, signals, <see cref="PSpawn.SpawnedProcess.TerminatingSignal"/>).</summary>
    public SpawnedProcess SpawnedProcess { get; }

    /// <summary>The start info the process was started from.</summary>
    public ProcessStartInfo StartInfo { get; }

    /// <summary>The process ID.</summary>
    public int Id => SpawnedProcess.Id;

    /// <summary>When the process was started (local time, taken when the spawn returned).</summary>
    public DateTime StartTime { get; }

    /// <summary>Whether <see cref="Exited"/> is raised when the process exits (default false, as for Process). Setting it after the exit raises the event once.</summary>
    public bool EnableRaisingEvents
    {
        get => Volatile.Read(ref _raisingEvents) != 0;
        set
        {
            Volatile.Write(ref _raisingEvents, value ? 1 : 0);
            if (value && SpawnedProcess.IsReaped)
            {
                _ = ThreadPool.UnsafeQueueUserWorkItem(static state => state.RaiseExited(), this, preferLocal: false);
            }
        }
    }

    /// <summary>Whether the process has exited.</summary>
    public bool HasExited => SpawnedProcess.HasExited;

    /// <summary>The exit code: the value passed to exit(), or 128 + the signal number when a signal killed it (as .NET reports on Unix).</summary>
    /// <exception cref="InvalidOperationException">The process has not exited yet.</exception>
    public int ExitCode => SpawnedProcess.ExitCode;

    /// <summary>When the exit was observed (local time).</summary>
    /// <exception cref="InvalidOperationException">The process has not exited yet.</exception>
    public DateTime ExitTime
    {
        get
        {
            if (!HasExited)
            {
                throw new InvalidOperationException($"Process {Id} has not exited yet: there is no exit time.");
            }

            _ = Interlocked.CompareExchange(ref _exitTimeTicks, DateTime.Now.Ticks, 0);
            return new DateTime(Volatile.Read(ref _exitTimeTicks), DateTimeKind.Local);
        }
    }

    /// <summary>A writer to the child's standard input (<see cref="ProcessStartInfo.StandardInputEncoding"/>, default UTF-8 without BOM; AutoFlush on).</summary>
    /// <exception cref="InvalidOperationException">Standard input was not redirected.</exception>
    public StreamWriter StandardInput =>
        _standardInput ?? throw new InvalidOperationException("StandardIn has not been redirected.");

    /// <summary>A reader of the child's standard output (<see cref="ProcessStartInfo.StandardOutputEncoding"/>, default UTF-8; byte order marks detected).</summary>
    /// <exception cref="InvalidOperationException">Standard output was not redirected.</exception>
    public StreamReader StandardOutput =>
        _standardOutput ?? throw new InvalidOperationException("StandardOut has not been redirected.");

    /// <summary>A reader of the child's standard error (<see cref="ProcessStartInfo.StandardErrorEncoding"/>, default UTF-8; byte order marks detected).</summary>
    /// <exception cref="InvalidOperationException">Standard error was not redirected.</exception>
    public StreamReader StandardError =>
        _standardError ?? throw new InvalidOperationException("StandardError has not been redirected.");

    /// <summary>Starts <paramref name="startInfo"/> through <see cref="PSpawnProcessStarter.Shared"/>: the drop-in for <see cref="Process.Start(ProcessStartInfo)"/>.</summary>
    /// <param name="startInfo">What to start (UseShellExecute false).</param>
    /// <returns>The started process.</returns>
    /// <exception cref="System.ComponentModel.Win32Exception">It could not be started (as Process.Start reports it).</exception>
    /// <exception cref="PSpawnStartInfoNotSupportedException">UseShellExecute or UserName is set.</exception>
    public static PSpawnProcess Start(ProcessStartInfo startInfo) => PSpawnProcessStarter.Shared.Start(startInfo);

    /// <summary>Starts <paramref name="fileName"/> with <paramref name="arguments"/> (as <see cref="Process.Start(string, IEnumerable{string})"/>).</summary>
    /// <param name="fileName">The program: a path, or a name looked up as Process does (next to this program, the current directory, PATH).</param>
    /// <param name="arguments">The arguments, without argv[0].</param>
    /// <returns>The started process.</returns>
    /// <exception cref="System.ComponentModel.Win32Exception">It could not be started.</exception>
    public static PSpawnProcess Start(string fileName, IEnumerable<string> arguments)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        ArgumentNullException.ThrowIfNull(arguments);
        var startInfo = new ProcessStartInfo(fileName);
        foreach (string argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        return Start(startInfo);
    }

    /// <summary>Waits until the process exits.</summary>
    public void WaitForExit() => SpawnedProcess.WaitForExit();

    /// <summary>Waits at most <paramref name="milliseconds"/> (-1: forever) for the process to exit.</summary>
    /// <param name="milliseconds">The time-out in milliseconds, or -1.</param>
    /// <returns>True if it exited.</returns>
    public bool WaitForExit(int milliseconds)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(milliseconds, -1);
        return SpawnedProcess.WaitForExit(milliseconds == -1 ? Timeout.InfiniteTimeSpan : TimeSpan.FromMilliseconds(milliseconds));
    }

    /// <summary>Waits at most <paramref name="timeout"/> for the process to exit.</summary>
    /// <param name="timeout">The time-out; <see cref="Timeout.InfiniteTimeSpan"/> waits forever.</param>
    /// <returns>True if it exited.</returns>
    public bool WaitForExit(TimeSpan timeout) => SpawnedProcess.WaitForExit(timeout);

    /// <summary>Completes when the process has exited; cancelling throws <see cref="OperationCanceledException"/> and leaves the process running.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>A task that completes on exit.</returns>
    public Task WaitForExitAsync(CancellationToken cancellationToken = default) => SpawnedProcess.WaitForExitAsync(cancellationToken);

    /// <summary>Kills the process (SIGKILL); does nothing once it has exited.</summary>
    public void Kill() => SpawnedProcess.Kill(9);

    /// <summary>Kills the process, and with <paramref name="entireProcessTree"/> its descendants too, as Process.Kill(true) does on Unix.</summary>
    /// <param name="entireProcessTree">Also kill the children, their children, and so on.</param>
    public void Kill(bool entireProcessTree)
    {
        if (entireProcessTree)
        {
            ProcessTree.Kill(SpawnedProcess);
        }
        else
        {
            Kill();
        }
    }

    /// <summary>Closes the redirected streams and releases the process object; the process is not killed.</summary>
    public void Dispose()
    {
        _standardInput?.Dispose();
        _standardOutput?.Dispose();
        _standardError?.Dispose();
        SpawnedProcess.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() => SpawnedProcess.ToString();

    private void OnExited()
    {
        _ = Interlocked.CompareExchange(ref _exitTimeTicks, DateTime.Now.Ticks, 0);
        if (EnableRaisingEvents)
        {
            RaiseExited();
        }
    }

    private void RaiseExited()
    {
        if (Interlocked.Exchange(ref _exitedRaised, 1) == 0)
        {
            _exited?.Invoke(this, EventArgs.Empty);
        }
    }
}
