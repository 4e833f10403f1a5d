using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Mono.Unix.Native;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests;

/// <summary>Standard streams: pipes, files, caller descriptors, /dev/null, capture and line callbacks.</summary>
public sealed partial class StdioTests : IDisposable
{
    private static readonly SpawnOptions s_pipeBoth = new() { StandardOutput = StdioTarget.Pipe, StandardError = StdioTarget.Pipe };

    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    private static unsafe partial int Pipe2(int* fds, int flags);

    /// <summary>Whether <paramref name="text"/> is the fixture's 'a'..'z' pattern.</summary>
    private static bool IsPattern(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] != (char)('a' + (i % 26)))
            {
                return false;
            }
        }

        return true;
    }

    [Fact]
    public async Task Captures_10_MB_of_stdout_and_stderr_from_one_child()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        using SpawnedProcess process = context.Spawn(["--report-write-bytes=10485760"], s_pipeBoth);

        // The child alternates chunks between the two pipes: both must be drained at once.
        (string output, string error) = await process.ReadOutputToEndAsync().Within();
        await process.WaitForExitAsync().Within();

        Assert.Equal(0, process.ExitCode);
        Assert.Equal(10485760, output.Length);
        Assert.Equal(10485760, error.Length);
        Assert.True(IsPattern(output), "stdout holds the pattern");
        Assert.True(IsPattern(error), "stderr holds the pattern");
    }

    [Fact]
    public async Task Captures_1_KB_from_each_of_200_children_at_once()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        IReadOnlyList<SpawnedProcess> processes = context.SpawnN(200, ["--report-write-bytes=1024"], s_pipeBoth);
        try
        {
            Assert.Equal(200, processes.Count);
            (string Output, string Error)[] results =
                await Task.WhenAll(processes.Select(p => p.ReadOutputToEndAsync())).Within();
            await processes.ExitAll();
            Assert.All(results, r =>
            {
                Assert.Equal(1024, r.Output.Length);
                Assert.Equal(1024, r.Error.Length);
                Assert.True(IsPattern(r.Output) && IsPattern(r.Error));
            });
            Assert.All(processes, p => Assert.Equal(0, p.ExitCode));
        }
        finally
        {
            foreach (SpawnedProcess process in processes)
            {
                process.Dispose();
            }
        }
    }

    [Fact]
    public async Task A_child_that_does_not_write_does_not_stall_the_others()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);

        // Its stdin stays open and it never writes: its reader waits, without holding up anybody.
        using SpawnedProcess idle = context.Spawn(
            ["--report-stdin-echo"],
            new SpawnOptions { StandardInput = StdioTarget.Pipe, StandardOutput = StdioTarget.Pipe });
        Task<string> idleRead = idle.StandardOutputReader.ReadToEndAsync();

        IReadOnlyList<SpawnedProcess> busy = context.SpawnN(20, ["--report-write-bytes=200000"], s_pipeBoth);
        (string Output, string Error)[] results = await Task.WhenAll(busy.Select(p => p.ReadOutputToEndAsync())).Within();
        Assert.All(results, r => Assert.Equal(200000, r.Output.Length));
        Assert.False(idleRead.IsCompleted);

        idle.StandardInput.Dispose(); // end of input: the echo ends
        Assert.Equal(string.Empty, await idleRead.Within());
        await busy.ExitAll();
        await idle.WaitForExitAsync().Within();
        foreach (SpawnedProcess process in busy)
        {
            process.Dispose();
        }
    }

    [Fact]
    public async Task Stdin_is_piped_in_and_echoed_back()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        using SpawnedProcess process = context.Spawn(
            ["--report-stdin-echo"],
            new SpawnOptions { StandardInput = StdioTarget.Pipe, StandardOutput = StdioTarget.Pipe });

        // More than a pipe's capacity, so that writing and reading must overlap.
        string text = string.Concat(Enumerable.Range(0, 20000).Select(i => $"line {i} through the zygote\n"));
        Task<string> echo = process.StandardOutputReader.ReadToEndAsync();
        await process.StandardInput.WriteAsync(Encoding.UTF8.GetBytes(text)).AsTask().Within();
        process.StandardInput.Dispose();

        Assert.Equal(text, await echo.Within());
        await process.WaitForExitAsync().Within();
        Assert.Equal(0, process.ExitCode);
    }

    [Fact]
    public async Task Synchronous_reads_and_writes_work_too()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        using SpawnedProcess process = context.Spawn(
            ["--report-stdin-echo"],
            new SpawnOptions { StandardInput = StdioTarget.Pipe, StandardOutput = StdioTarget.Pipe });
        await Bounded.Run(() =>
        {
            process.StandardInput.Write("hello\n"u8);
            process.StandardInput.Dispose();
            Assert.Equal("hello\n", process.StandardOutputReader.ReadToEnd());
        });
        await process.WaitForExitAsync().Within();
    }

    [Fact]
    public async Task Line_callbacks_receive_every_line_before_the_wait_completes()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        var lines = new List<string>();
        var errors = new List<string>();
        var options = new SpawnOptions
        {
            StandardInput = StdioTarget.Pipe,
            OnOutputLine = line =>
            {
                lock (lines)
                {
                    lines.Add(line);
                }
            },
            OnErrorLine = errors.Add,
        };
        using SpawnedProcess process = context.Spawn(["--report-stdin-echo"], options);
        Assert.Throws<InvalidOperationException>(() => process.StandardOutput);
        Assert.Throws<InvalidOperationException>(() => process.StandardError);

        string[] expected = Enumerable.Range(0, 1000).Select(i => $"line {i}").ToArray();
        await process.StandardInput.WriteAsync(Encoding.UTF8.GetBytes(string.Join('\n', expected) + "\n"));
        process.StandardInput.Dispose();
        await process.WaitForExitAsync().Within();

        Assert.Equal(expected, lines);
        Assert.Empty(errors);
    }

    [Fact]
    public async Task Streams_that_are_not_piped_are_not_available()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        using SpawnedProcess process = context.Spawn(
            ["--report-write-bytes=10"],
            new SpawnOptions { StandardOutput = StdioTarget.Pipe, StandardError = StdioTarget.Null });
        Assert.Throws<InvalidOperationException>(() => process.StandardInput);
        Assert.Throws<InvalidOperationException>(() => process.StandardError);
        (string output, string error) = await process.ReadOutputToEndAsync().Within();
        Assert.Equal("abcdefghij", output);
        Assert.Equal(string.Empty, error);
        await process.WaitForExitAsync().Within();

        // The fast path has no streams at all.
        using SpawnedProcess plain = context.Spawn(["--report-out=" + _temp.File("plain.json")]);
        Assert.Throws<InvalidOperationException>(() => plain.StandardOutput);
        await plain.WaitForExitAsync().Within();
    }

    [Fact]
    public async Task Stdout_goes_to_a_file_and_stderr_to_a_descriptor_of_ours()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        string outPath = _temp.File("out.txt");
        string errPath = _temp.File("err.txt");
        using (SafeFileHandle errHandle = File.OpenHandle(errPath, FileMode.Create, FileAccess.Write))
        {
            using SpawnedProcess process = context.Spawn(
                ["--report-write-bytes=1000"],
                new SpawnOptions { StandardOutput = StdioTarget.File(outPath), StandardError = StdioTarget.FromHandle(errHandle) });
            await process.WaitForExitAsync().Within();
            Assert.Equal(0, process.ExitCode);
        }

        Assert.Equal(1000, new FileInfo(outPath).Length);
        Assert.Equal(1000, new FileInfo(errPath).Length);

        // Append mode adds to the file; a relative path is relative to the working directory.
        using SpawnedProcess again = context.Spawn(
            ["--report-write-bytes=500"],
            new SpawnOptions { WorkingDirectory = _temp.Path, StandardOutput = StdioTarget.File("out.txt", FileMode.Append), StandardError = StdioTarget.Null });
        await again.WaitForExitAsync().Within();
        Assert.Equal(1500, new FileInfo(outPath).Length);
    }

    [Fact]
    public async Task A_missing_stdin_file_is_that_spawns_error()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        var options = new SpawnOptions { StandardInput = StdioTarget.File(_temp.File("missing.txt"), FileMode.Open) };
        var error = await Assert.ThrowsAsync<PSpawnFileNotFoundException>(() => Bounded.Run(() => context.Spawn([], options)));
        Assert.Equal(Errno.ENOENT, error.Errno);

        // Stdin is read-only: modes that write are refused up front.
        Assert.Throws<ArgumentException>(() => context.Spawn([], new SpawnOptions { StandardInput = StdioTarget.File("x", FileMode.Append) }));
    }

    [Fact]
    public async Task Descriptors_of_ours_that_were_not_asked_for_never_reach_the_child()
    {
        int[] stray = new int[2];
        unsafe
        {
            fixed (int* fds = stray)
            {
                Assert.Equal(0, Pipe2(fds, 0)); // not close-on-exec: the proxy must still not pass it on
            }
        }

        try
        {
            using var context = PSpawnContext.Create(Fixtures.Report);
            using SafeFileHandle file = File.OpenHandle(_temp.File("given.txt"), FileMode.Create, FileAccess.Write);
            using SpawnedProcess process = context.Spawn(
                [],
                new SpawnOptions { StandardInput = StdioTarget.Null, StandardOutput = StdioTarget.Pipe, StandardError = StdioTarget.FromHandle(file) });
            string json = await process.StandardOutputReader.ReadToEndAsync().Within();
            await process.WaitForExitAsync().Within();
            ReportOutput report = ReportOutput.Parse(json);
            Assert.Equal([0, 1, 2], report.Fds);
        }
        finally
        {
            LinuxProcesses.Close(stray[0]);
            LinuxProcesses.Close(stray[1]);
        }
    }

    [Fact]
    public async Task Disposing_the_process_closes_its_pipe_ends()
    {
        using var context = PSpawnContext.Create(Fixtures.Report);
        var options = new SpawnOptions { StandardInput = StdioTarget.Pipe, StandardOutput = StdioTarget.Pipe, StandardError = StdioTarget.Pipe };
        SpawnedProcess process = context.Spawn(["--report-stdin-echo"], options);
        Stream stdout = process.StandardOutput;
        Task<int> pendingRead = stdout.ReadAsync(new byte[16]).AsTask();
        process.Dispose(); // closes stdin too: the child sees EOF and exits

        await Assert.ThrowsAnyAsync<ObjectDisposedException>(() => pendingRead.Within());
        Assert.False(stdout.CanRead);
        await process.WaitForExitAsync().Within();
        Assert.Equal(0, process.ExitCode);
    }
    [Fact]
    public async Task Pipes_and_options_work_in_relay_mode()
    {
        using var context = PSpawnContext.Create(Fixtures.Report, options: new PSpawnContextOptions { ForceRelayMode = true });
        Assert.Equal(PSpawnMode.Relay, context.Mode);
        IReadOnlyList<SpawnedProcess> processes = context.SpawnN(
            3, [], new SpawnOptions { StandardOutput = StdioTarget.Pipe, WorkingDirectory = _temp.Path, NewProcessGroup = true });
        string[] outputs = await Task.WhenAll(processes.Select(p => p.StandardOutputReader.ReadToEndAsync())).Within();
        await processes.ExitAll();
        for (int i = 0; i < processes.Count; i++)
        {
            ReportOutput report = ReportOutput.Parse(outputs[i]);
            Assert.Equal(_temp.Path, report.Text("cwd"));
            Assert.Equal(processes[i].Id, report.Number("pgid"));
            processes[i].Dispose();
        }
    }

    [Fact]
    public async Task Pipes_work_in_fallback_mode_and_what_posix_spawn_cannot_do_is_ENOTSUP()
    {
        using var context = PSpawnContext.Create(Fixtures.NoopStatic, options: new PSpawnContextOptions { FallbackPolicy = FallbackPolicy.PosixSpawn });
        Assert.Equal(PSpawnMode.Fallback, context.Mode);
        using SpawnedProcess process = context.Spawn([], s_pipeBoth with { WorkingDirectory = _temp.Path });
        Assert.Equal((string.Empty, string.Empty), await process.ReadOutputToEndAsync().Within());
        await process.WaitForExitAsync().Within();
        Assert.Equal(0, process.ExitCode);

        var error = await Assert.ThrowsAsync<PSpawnException>(() => Bounded.Run(() => context.Spawn([], new SpawnOptions { Umask = 0 })));
        Assert.Equal(Errno.EOPNOTSUPP, error.Errno);
    }
    [Fact]
    public async Task Options_without_pipes_never_touch_our_own_standard_descriptors()
    {
        static string[] Targets() => [.. Enumerable.Range(0, 3).Select(fd => new FileInfo($"/proc/self/fd/{fd}").LinkTarget ?? "?")];
        string[] before = Targets();
        using (var context = PSpawnContext.Create(Fixtures.Report))
        {
            foreach (SpawnOptions options in new[]
            {
                new SpawnOptions { StandardOutput = StdioTarget.Null, Umask = 0 },
                new SpawnOptions { StandardOutput = StdioTarget.Null, StandardError = StdioTarget.Null, WorkingDirectory = _temp.Path },
            })
            {
                IReadOnlyList<SpawnedProcess> processes = context.SpawnN(5, [], options);
                Assert.All(processes, p => Assert.Throws<InvalidOperationException>(() => p.StandardOutput));
                await processes.ExitAll();
                foreach (SpawnedProcess process in processes)
                {
                    process.Dispose();
                }
            }
        }

        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.Equal(before, Targets());
    }
}
