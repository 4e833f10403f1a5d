// ProcessStartLauncher REPORT PYNAMIC OUTDIR: Process.Start of the report fixture 200 times
// (mixed exit codes, a signal, redirected output), pynamic100 100 times, a missing file; one
// line per launch in OUTDIR/dotnet.txt.
using System.ComponentModel;
using System.Diagnostics;

string report = args[0], pynamic = args[1], outDir = args[2];
using var results = new StreamWriter(Path.Combine(outDir, "dotnet.txt"));
for (int i = 0; i < 200; i++)
{
    var info = new ProcessStartInfo(report) { UseShellExecute = false };
    info.ArgumentList.Add($"--report-out={outDir}/d{i}.json");
    info.ArgumentList.Add($"--report-exit={i % 4}");
    if (i % 50 == 9)
        info.ArgumentList.Add("--report-signal=15");
    using var p = Process.Start(info)!;
    await p.WaitForExitAsync();
    results.WriteLine($"{i} {p.ExitCode}");
}
for (int i = 0; i < 100; i++)
{
    using var p = Process.Start(new ProcessStartInfo(pynamic, $"{i}") { UseShellExecute = false })!;
    await p.WaitForExitAsync();
    results.WriteLine($"pynamic {i} {p.ExitCode}");
}
var captured = new ProcessStartInfo(report) { UseShellExecute = false, RedirectStandardOutput = true };
using (var p = Process.Start(captured)!)
{
    string output = await p.StandardOutput.ReadToEndAsync();
    await p.WaitForExitAsync();
    results.WriteLine($"captured {p.ExitCode} {output.Contains("\"argv\"", StringComparison.Ordinal)}");
}
try
{
    Process.Start(new ProcessStartInfo("/nonexistent/pspawn-missing") { UseShellExecute = false });
}
catch (Win32Exception e)
{
    results.WriteLine($"missing {e.NativeErrorCode}");
}
