using System.Text;

namespace PSpawn;

/// <summary>The child's pipes as streams and readers, and the line callbacks.</summary>
public sealed partial class SpawnedProcess
{
    /// <summary>Called once, right after the spawn, before <see cref="StartWatching"/>: takes ownership of the pipe ends.</summary>
    internal void AttachStdio(int stdinFd, int stdoutFd, int stderrFd, int? processGroupId)
    {
        _standardInput = stdinFd >= 0 ? new PipeEndStream(stdinFd, reading: false) : null;
        _standardOutput = stdoutFd >= 0 ? new PipeEndStream(stdoutFd, reading: true) : null;
        _standardError = stderrFd >= 0 ? new PipeEndStream(stderrFd, reading: true) : null;
        _processGroupId = processGroupId;
    }

    /// <summary>Starts delivering lines to the callbacks (after <see cref="AttachStdio"/>).</summary>
    internal void StartLineCallbacks(Action<string>? onOutputLine, Action<string>? onErrorLine)
    {
        if (onOutputLine is null && onErrorLine is null)
        {
            return;
        }

        Task output = Task.CompletedTask;
        Task error = Task.CompletedTask;
        if (onOutputLine is not null && _standardOutput is not null)
        {
            _outputPumped = true;
            output = PumpLinesAsync(Reader(ref _standardOutputReader, _standardOutput), onOutputLine, "output");
        }

        if (onErrorLine is not null && _standardError is not null)
        {
            _errorPumped = true;
            error = PumpLinesAsync(Reader(ref _standardErrorReader, _standardError), onErrorLine, "error");
        }

        _linePumps = CompleteAfterLinesAsync(output, error);
    }

    private async Task CompleteAfterLinesAsync(Task output, Task error)
    {
        await Task.WhenAll(output, error).ConfigureAwait(false);
        await _exited.Task.ConfigureAwait(false);
    }

    private async Task PumpLinesAsync(StreamReader reader, Action<string> callback, string stream)
    {
        try
        {
            while (await reader.ReadLineAsync().ConfigureAwait(false) is string line)
            {
                try
                {
                    callback(line);
                }
#pragma warning disable CA1031 // A failing callback must not stop the pipe from being drained.
                catch (Exception e)
#pragma warning restore CA1031
                {
                    Log.LineCallbackFailed(_context.Logger, _context.Path, Id, stream, e);
                }
            }
        }
        catch (Exception e) when (e is ObjectDisposedException || IsDisposed)
        {
            // Disposed by the caller: no more lines.
        }
        catch (IOException e)
        {
            Log.LineCallbackFailed(_context.Logger, _context.Path, Id, stream, e);
        }
    }

    private PipeEndStream PipedOutput(PipeEndStream? stream, string name, bool pumped)
    {
        if (pumped)
        {
            throw new InvalidOperationException($"The standard {name} of process {Id} is consumed by a line callback (SpawnOptions.On{(name == "output" ? "Output" : "Error")}Line).");
        }

        return stream ?? throw new InvalidOperationException(
            $"The standard {name} of process {Id} is not piped (set SpawnOptions.Standard{(name == "output" ? "Output" : "Error")} to StdioTarget.Pipe).");
    }

    private static StreamReader Reader(ref StreamReader? field, Stream stream)
    {
        StreamReader? reader = Volatile.Read(ref field);
        if (reader is not null)
        {
            return reader;
        }

        var created = new StreamReader(stream, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false), detectEncodingFromByteOrderMarks: false, bufferSize: 4096, leaveOpen: true);
        return Interlocked.CompareExchange(ref field, created, null) ?? created;
    }
}
