using System.Diagnostics;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests.Compat;

/// <summary>The Process-like members of PSpawnProcess, and the documented differences from Process.</summary>
[Collection(nameof(DropInCollection))]
public sealed class DropInProcessTests
{
    private static ProcessStartInfo Sleeper(int milliseconds, params string[] more)
    {
        var startInfo = new ProcessStartInfo(Fixtures.Report) { RedirectStandardOutput = true };
        startInfo.ArgumentList.Add($"--report-sleep-ms={milliseconds}");
        foreach (string argument in more)
        {
            startInfo.ArgumentList.Add(argument);
        }

        return startInfo;
    }

    [Fact]
    public async Task Id_times_exit_code_and_waits_behave_as_Process()
    {
        using PSpawnProcess process = PSpawnProcess.Start(Sleeper(300, "--report-exit=5"));
        ReportOutput report = ReportOutput.Parse((await process.StandardOutput.ReadLineAsync().Within())!);
        Assert.Equal(process.Id, report.Pid);
        Assert.Equal(Environment.ProcessId, report.Ppid);
        Assert.False(process.HasExited);
        Assert.Throws<InvalidOperationException>(() => process.ExitCode);
        Assert.Throws<InvalidOperationException>(() => process.ExitTime);
        Assert.False(process.WaitForExit(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => process.WaitForExit(-2));
        using (var cts = new CancellationTokenSource())
        {
            Task wait = process.WaitForExitAsync(cts.Token);
            await cts.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait);
        }

        Assert.True(process.WaitForExit(60_000));
        Assert.True(process.HasExited);
        Assert.Equal(5, process.ExitCode);
        Assert.Equal(DateTimeKind.Local, process.StartTime.Kind);
        Assert.True(process.ExitTime >= process.StartTime);
        await process.WaitForExitAsync().Within(); // completes at once after the exit
        Assert.Equal(process.SpawnedProcess.Id, process.Id);
    }

    [Fact]
    public async Task Exited_is_raised_once_with_EnableRaisingEvents_only()
    {
        using PSpawnProcess quiet = PSpawnProcess.Start(new ProcessStartInfo(Fixtures.Noop));
        int quietRaised = 0;
        quiet.Exited += (_, _) => Interlocked.Increment(ref quietRaised);
        await quiet.WaitForExitAsync().Within();
        var raisedLate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await Task.Delay(100); // the exit continuation has run: the event was not raised
        Assert.Equal(0, Volatile.Read(ref quietRaised));
        quiet.Exited += (_, _) => raisedLate.TrySetResult();
        quiet.EnableRaisingEvents = true; // after the exit: raised now, once
        await raisedLate.Task.Within();
        Assert.Equal(1, Volatile.Read(ref quietRaised));

        using PSpawnProcess loud = PSpawnProcess.Start(Sleeper(100));
        var raised = new TaskCompletionSource<object?>(TaskCreationOptions.RunContinuationsAsynchronously);
        loud.Exited += (sender, _) => raised.TrySetResult(sender);
        loud.EnableRaisingEvents = true;
        Assert.Same(loud, await raised.Task.Within());
        Assert.True(loud.HasExited);
    }

    [Fact]
    public async Task Kill_and_kill_of_an_exited_process()
    {
        using PSpawnProcess process = PSpawnProcess.Start(Sleeper(60_000));
        _ = await process.StandardOutput.ReadLineAsync().Within();
        process.Kill();
        await process.WaitForExitAsync().Within();
        Assert.Equal(128 + 9, process.ExitCode);
        process.Kill(); // exited: nothing happens, as with Process
        process.Kill(entireProcessTree: true);
    }

    [Fact]
    public async Task Kill_entire_process_tree_kills_grandchildren_and_Kill_alone_does_not()
    {
        foreach (bool entireTree in new[] { true, false })
        {
            using PSpawnProcess process = PSpawnProcess.Start(Sleeper(60_000, "--report-spawn-grandchild"));
            ReportOutput report = ReportOutput.Parse((await process.StandardOutput.ReadLineAsync().Within())!);
            int grandchild = report.Root.GetProperty("grandchild").GetInt32();
            Assert.True(IsAlive(grandchild));
            process.Kill(entireTree);
            await process.WaitForExitAsync().Within();
            Assert.Equal(137, process.ExitCode);
            if (entireTree)
            {
                await Bounded.Until(() => !IsAlive(grandchild), $"grandchild {grandchild} is gone");
            }
            else
            {
                Assert.True(IsAlive(grandchild));
                Assert.Equal(0, LinuxProcesses.Kill(grandchild, LinuxProcesses.SIGKILL)); // clean up
                await Bounded.Until(() => !IsAlive(grandchild), $"grandchild {grandchild} is gone");
            }
        }
    }

    [Fact]
    public void Start_overloads_and_the_extension_start_the_same_program()
    {
        using PSpawnProcess byList = PSpawnProcess.Start("sh", ["-c", "exit 3"]);
        var startInfo = new ProcessStartInfo("sh", ["-c", "exit 4"]);
        using PSpawnProcess byExtension = startInfo.StartWithPSpawn();
        Assert.True(byList.WaitForExit(60_000));
        Assert.True(byExtension.WaitForExit(60_000));
        Assert.Equal(3, byList.ExitCode);
        Assert.Equal(4, byExtension.ExitCode);
        Assert.Same(startInfo, byExtension.StartInfo);
    }

    [Fact]
    public void Streams_not_redirected_throw_InvalidOperationException_as_with_Process()
    {
        using PSpawnProcess process = PSpawnProcess.Start(new ProcessStartInfo(Fixtures.Noop));
        Assert.Throws<InvalidOperationException>(() => process.StandardInput);
        Assert.Throws<InvalidOperationException>(() => process.StandardOutput);
        Assert.Throws<InvalidOperationException>(() => process.StandardError);
        Assert.True(process.WaitForExit(60_000));
    }

    [Fact]
    public void Dispose_closes_stdin_so_the_child_sees_end_of_file()
    {
        var startInfo = new ProcessStartInfo("cat") { RedirectStandardInput = true };
        PSpawnProcess process = PSpawnProcess.Start(startInfo);
        SpawnedProcess spawned = process.SpawnedProcess;
        process.Dispose();
        Assert.True(spawned.WaitForExit(TimeSpan.FromSeconds(60)));
        Assert.Equal(0, spawned.ExitCode);
    }

    /// <summary>Difference 1 (README): only descriptors 0-2 reach the child; Process's children inherit every descriptor left without O_CLOEXEC.</summary>
    [Fact]
    public void Difference_only_standard_descriptors_are_inherited()
    {
        int fd = OpenInheritable();
        try
        {
            var (process, dropIn) = StartOutcome.Both(() => new ProcessStartInfo(Fixtures.Report) { RedirectStandardOutput = true });
            Assert.Contains(fd, ReportOutput.Parse(process.Output!).Fds);
            Assert.Equal([0, 1, 2], ReportOutput.Parse(dropIn.Output!).Fds);
        }
        finally
        {
            _ = LinuxProcesses.Close(fd);
        }
    }

    /// <summary>Difference 2 (README): signals start with their default action; Process's children inherit this process's ignored ones (SIGPIPE).</summary>
    [Fact]
    public void Difference_ignored_signals_are_reset()
    {
        var (process, dropIn) = StartOutcome.Both(() => new ProcessStartInfo(Fixtures.Report) { RedirectStandardOutput = true });
        Assert.Contains(13, ReportOutput.Parse(process.Output!).Numbers("sigignored"));
        Assert.Empty(ReportOutput.Parse(dropIn.Output!).Numbers("sigignored"));
    }

    [Fact]
    public async Task A_library_rebuilt_between_starts_is_the_one_the_next_start_gets()
    {
        // A build and its test loop: the program links a library that is rebuilt (renamed over, as linkers write) between
        // two starts; the drop-in's context watches its image and is replaced, as an exec would load the new library.
        using var temp = new TempDirectory();
        File.WriteAllText(temp.File("v.c"), "const char *version(void) { return VERSION; }\n");
        File.WriteAllText(temp.File("main.c"), "#include <stdio.h>\nconst char *version(void);\nint main(void) { printf(\"%s\\n\", version()); return 0; }\n");
        await Gcc(temp, "-shared", "-fPIC", "-DVERSION=\"v1\"", "-o", "libv.so", "v.c");
        await Gcc(temp, "-o", "main", "main.c", "-L.", "-lv", "-Wl,-rpath,$ORIGIN");
        string program = temp.File("main");
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal("v1", await Version(program));
        }

        await Gcc(temp, "-shared", "-fPIC", "-DVERSION=\"v2\"", "-o", "libv.so.new", "v.c");
        File.Move(temp.File("libv.so.new"), temp.File("libv.so"), overwrite: true);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal("v2", await Version(program));
        }
    }

    private static async Task<string> Version(string program)
    {
        using PSpawnProcess process = PSpawnProcess.Start(new ProcessStartInfo(program) { RedirectStandardOutput = true });
        string output = (await process.StandardOutput.ReadToEndAsync().Within()).Trim();
        await process.WaitForExitAsync().Within();
        Assert.Equal(0, process.ExitCode);
        return output;
    }

    private static async Task Gcc(TempDirectory temp, params string[] arguments)
    {
        CommandRunner.Result result = await CommandRunner.Run("gcc", arguments, temp.Path, null, TimeSpan.FromSeconds(60));
        Assert.True(result.ExitCode == 0, result.ToString());
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>dup(2) of stdin: a descriptor without O_CLOEXEC.</summary>
    private static int OpenInheritable()
    {
        int fd = Dup(0);
        Assert.True(fd > 2);
        return fd;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "dup")]
#pragma warning disable SYSLIB1054, CA5392 // one libc call in a test
    private static extern int Dup(int fd);
#pragma warning restore SYSLIB1054, CA5392
}
