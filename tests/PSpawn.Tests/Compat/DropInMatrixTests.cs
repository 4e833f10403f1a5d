using System.Diagnostics;
using System.Text;
using PSpawn.Tests.Infrastructure;

namespace PSpawn.Tests.Compat;

/// <summary>Each ProcessStartInfo is started through Process.Start and through the drop-in; the outcomes must be equal.</summary>
[Collection(nameof(DropInCollection))]
public sealed class DropInMatrixTests : IDisposable
{
    private readonly TempDirectory _temp = new("pspawn-dropin-");

    public void Dispose() => _temp.Dispose();

    private static ProcessStartInfo Report(params string[] arguments)
    {
        var startInfo = new ProcessStartInfo(Fixtures.Report) { RedirectStandardOutput = true };
        foreach (string argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        return startInfo;
    }

    private string WriteFile(string name, string content, bool executable = true)
    {
        string file = _temp.File(name);
        File.WriteAllText(file, content);
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | (executable ? UnixFileMode.UserExecute : 0));
        return file;
    }

    private static void AssertSame(Func<ProcessStartInfo> startInfo, string? input = null)
    {
        var (process, dropIn) = StartOutcome.Both(startInfo, input);
        Assert.Equal(process.WithReportNormalized(), dropIn.WithReportNormalized());
    }

    [Fact]
    public void ArgumentList_with_spaces_quotes_backslashes_and_empty_arguments() =>
        AssertSame(() => Report("a", "b c", "", "quote\"d", "back\\slash", "tab\there", "ünïcødé", "--"));

    [Fact]
    public void No_arguments_gives_argv0_the_file_name_as_written() => AssertSame(() => Report());

    [Theory]
    [InlineData("a b  c")]
    [InlineData("\"a b\" c")]
    [InlineData("\"\"")]
    [InlineData("a \"\" b")]
    [InlineData("\\\"x\\\"")]
    [InlineData("a\\\\\\\\\"b c\"")]
    [InlineData("a\\\\\\\"b")]
    [InlineData("\"a\"\"b\" c")]
    [InlineData("\"a\"\"\"b")]
    [InlineData("a\\b c\\\\d")]
    [InlineData("trailing\\")]
    [InlineData("\"unterminated quote")]
    [InlineData("\ttabs\tand  spaces \t")]
    [InlineData("x\"y z\"w")]
    [InlineData("   ")]
    public void Arguments_string_is_split_as_Process_splits_it(string arguments) =>
        AssertSame(() => new ProcessStartInfo(Fixtures.Report, arguments) { RedirectStandardOutput = true });

    [Fact]
    public void Environment_edits_removals_and_null_values()
    {
        AssertSame(() =>
        {
            ProcessStartInfo startInfo = Report();
            startInfo.Environment["PSPAWN_DROPIN_ADDED"] = "value with = and spaces";
            startInfo.Environment["PSPAWN_DROPIN_EMPTY"] = "";
            startInfo.Environment["PSPAWN_DROPIN_NULL"] = null; // Process leaves it out
            startInfo.Environment.Remove("HOME");
            startInfo.Environment["PATH"] = "/usr/bin:/bin";
            return startInfo;
        });
    }

    [Fact]
    public void Environment_replaced_entirely()
    {
        AssertSame(() =>
        {
            ProcessStartInfo startInfo = Report();
            startInfo.Environment.Clear();
            startInfo.Environment["ONLY"] = "this";
            return startInfo;
        });
    }

    [Fact]
    public void WorkingDirectory_absolute_and_relative()
    {
        AssertSame(() => new ProcessStartInfo(Fixtures.Report) { RedirectStandardOutput = true, WorkingDirectory = _temp.Path });
        string relative = Path.GetRelativePath(Directory.GetCurrentDirectory(), _temp.Path);
        AssertSame(() => new ProcessStartInfo(Fixtures.Report) { RedirectStandardOutput = true, WorkingDirectory = relative });
    }

    [Fact]
    public void Missing_WorkingDirectory_is_the_same_Win32Exception()
    {
        var (process, dropIn) = StartOutcome.Both(() => new ProcessStartInfo(Fixtures.Report) { RedirectStandardOutput = true, WorkingDirectory = _temp.File("missing") });
        Assert.Equal(typeof(System.ComponentModel.Win32Exception).FullName, process.Exception);
        Assert.Equal(process, dropIn);
    }

    [Fact]
    public void FileName_relative_to_the_current_directory()
    {
        string relative = Path.GetRelativePath(Directory.GetCurrentDirectory(), Fixtures.Report);
        Assert.Contains('/', relative);
        AssertSame(() => new ProcessStartInfo(relative, "x") { RedirectStandardOutput = true });
    }

    [Theory]
    [InlineData("env")]
    [InlineData("sh")]
    public void FileName_found_in_PATH(string program)
    {
        AssertSame(() =>
        {
            var startInfo = new ProcessStartInfo(program) { RedirectStandardOutput = true };
            if (program == "sh")
            {
                startInfo.ArgumentList.Add("-c");
                startInfo.ArgumentList.Add("echo \"$0\" \"$@\"; pwd; exit 7");
                startInfo.ArgumentList.Add("zero");
                startInfo.ArgumentList.Add("one two");
            }

            startInfo.Environment["PSPAWN_DROPIN"] = "1";
            return startInfo;
        });
    }

    [Fact]
    public void Stdin_stdout_and_stderr_redirected_with_default_encodings()
    {
        AssertSame(
            () => new ProcessStartInfo("/bin/sh", ["-c", "cat; echo 'to stderr: é' >&2; exit 3"])
            {
                RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
            },
            "line one\nünïcødé ✓\n\nlast line without newline");
    }

    [Theory]
    [InlineData("utf-16")]
    [InlineData("iso-8859-1")]
    [InlineData("utf-8-bom")]
    public void Redirected_streams_with_explicit_encodings(string encodingName)
    {
        Encoding encoding = encodingName switch
        {
            "utf-16" => Encoding.Unicode,
            "iso-8859-1" => Encoding.Latin1,
            _ => new UTF8Encoding(encoderShouldEmitUTF8Identifier: true),
        };
        AssertSame(
            () => new ProcessStartInfo("cat")
            {
                RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
                StandardInputEncoding = encoding, StandardOutputEncoding = encoding, StandardErrorEncoding = encoding,
            },
            "déjà vu\nçà\n");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(42)]
    [InlineData(255)]
    public void Exit_codes(int code) => AssertSame(() => Report($"--report-exit={code}"));

    [Theory]
    [InlineData(9)]
    [InlineData(15)]
    [InlineData(6)]
    [InlineData(11)]
    public void Signal_deaths_are_128_plus_the_signal(int signal)
    {
        var (process, dropIn) = StartOutcome.Both(() => Report($"--report-signal={signal}"));
        Assert.Equal(128 + signal, process.ExitCode);
        Assert.Equal(process.WithReportNormalized(), dropIn.WithReportNormalized());
    }

    [Theory]
    [InlineData("/nonexistent/program")]
    [InlineData("pspawn-no-such-program-anywhere")]
    [InlineData("no/such/relative/program")]
    public void Missing_file_is_the_same_Win32Exception(string fileName)
    {
        var (process, dropIn) = StartOutcome.Both(() => new ProcessStartInfo(fileName));
        Assert.Equal(typeof(System.ComponentModel.Win32Exception).FullName, process.Exception);
        Assert.Equal(2, process.NativeErrorCode);
        Assert.Equal(process, dropIn);
    }

    [Fact]
    public void Directory_as_FileName_is_the_same_Win32Exception()
    {
        var (process, dropIn) = StartOutcome.Both(() => new ProcessStartInfo(_temp.Path));
        Assert.Equal(typeof(System.ComponentModel.Win32Exception).FullName, process.Exception);
        // Process builds this one with Win32Exception(message), whose NativeErrorCode is whatever errno was last.
        Assert.Equal(process with { NativeErrorCode = null }, dropIn with { NativeErrorCode = null });
    }

    [Fact]
    public void Non_executable_file_is_the_same_Win32Exception()
    {
        string file = WriteFile("not-executable", "#!/bin/sh\necho never\n", executable: false);
        var (process, dropIn) = StartOutcome.Both(() => new ProcessStartInfo(file));
        Assert.Equal(13, process.NativeErrorCode);
        Assert.Equal(process, dropIn);
    }

    [Fact]
    public void Executable_that_is_neither_ELF_nor_script_is_the_same_Win32Exception()
    {
        string file = WriteFile("garbage", "this is not a program\n");
        var (process, dropIn) = StartOutcome.Both(() => new ProcessStartInfo(file));
        Assert.Equal(8, process.NativeErrorCode);
        Assert.Equal(process, dropIn);
    }

    [Theory]
    [InlineData("#!/bin/sh\n")]
    [InlineData("#! /bin/sh -e\n")]
    [InlineData("#!/usr/bin/env sh\n")]
    [InlineData("#!/bin/sh -e -u  \t\n")]
    public void Scripts_run_through_their_interpreter(string interpreterLine)
    {
        string script = WriteFile("script.sh", interpreterLine + "echo \"0=$0\"; for a in \"$@\"; do echo \"[$a]\"; done; echo \"$-\"; exit 4\n");
        AssertSame(() => new ProcessStartInfo(script, ["one", "two words"]) { RedirectStandardOutput = true });
    }

    [Fact]
    public void Script_whose_interpreter_is_missing_is_the_same_Win32Exception()
    {
        string script = WriteFile("orphan.sh", "#!/nonexistent/interpreter\necho never\n");
        var (process, dropIn) = StartOutcome.Both(() => new ProcessStartInfo(script));
        Assert.Equal(2, process.NativeErrorCode);
        Assert.Equal(process, dropIn);
    }

    [Fact]
    public void Standard_streams_not_redirected_are_inherited()
    {
        string outFile = _temp.File("report.json");
        var (process, dropIn) = StartOutcome.Both(() => new ProcessStartInfo(Fixtures.Report, [$"--report-out={outFile}"]));
        Assert.Equal(0, process.ExitCode);
        Assert.Equal(process, dropIn);
        Assert.Contains("\"argv\"", File.ReadAllText(outFile));
    }

    [Fact]
    public void Invalid_start_infos_throw_what_Process_throws()
    {
        ProcessStartInfo[] invalid =
        [
            new ProcessStartInfo(string.Empty),
            new ProcessStartInfo(Fixtures.Report, "a") { ArgumentList = { "b" } },
            new ProcessStartInfo(Fixtures.Report) { StandardOutputEncoding = Encoding.UTF8 },
            new ProcessStartInfo(Fixtures.Report) { StandardInputEncoding = Encoding.UTF8 },
        ];
        foreach (ProcessStartInfo startInfo in invalid)
        {
            Type expected = Assert.ThrowsAny<Exception>(() => Process.Start(startInfo)).GetType();
            Assert.IsType(expected, Assert.ThrowsAny<Exception>(() => PSpawnProcess.Start(startInfo)));
        }
    }

    [Fact]
    public void UseShellExecute_and_UserName_are_a_typed_error_and_start_nothing()
    {
        var shell = Assert.Throws<PSpawnStartInfoNotSupportedException>(() => PSpawnProcess.Start(new ProcessStartInfo(Fixtures.Noop) { UseShellExecute = true }));
        Assert.Equal("UseShellExecute", shell.Setting);
        var user = Assert.Throws<PSpawnStartInfoNotSupportedException>(() => PSpawnProcess.Start(new ProcessStartInfo(Fixtures.Noop) { UserName = "root" }));
        Assert.Equal("UserName", user.Setting);
        Assert.IsAssignableFrom<NotSupportedException>(user);
    }
}
