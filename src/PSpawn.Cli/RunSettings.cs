using System.Globalization;
using System.Text.RegularExpressions;

namespace PSpawn.Cli;

/// <summary>How the instances' standard output and error are handled.</summary>
internal enum OutputMode
{
    /// <summary>Each line of each instance, prefixed with "[rank] ", to pspawn's stdout or stderr (the default on a terminal).</summary>
    Prefix,

    /// <summary>The instances write straight to pspawn's stdout and stderr, unprefixed (the default otherwise).</summary>
    Inherit,

    /// <summary>DIR/RANK.out and DIR/RANK.err.</summary>
    Files,

    /// <summary>/dev/null.</summary>
    None,
}

/// <summary>The validated options of <c>pspawn run</c>.</summary>
internal sealed partial record RunSettings
{
    public required int Count { get; init; }

    /// <summary>CPU i of this list for instance i mod its length; null: no placement.</summary>
    public IReadOnlyList<int>? Cpus { get; init; }

    public int? Proxies { get; init; }

    /// <summary>--pool: parked children per proxy (the context's warm pool), or null for none.</summary>
    public int? Pool { get; init; }

    /// <summary>--deferred: the context's deferred fork point (PROGRAM calls pspawn_ready() after its start-up).</summary>
    public bool Deferred { get; init; }

    /// <summary>--startup-timeout: the proxies' start-up limit; null: the library's default.</summary>
    public TimeSpan? StartupTimeout { get; init; }

    public IReadOnlyList<KeyValuePair<string, string>> Environment { get; init; } = [];

    public OutputMode Output { get; init; }

    public string? OutputDirectory { get; init; }

    public TimeSpan? Timeout { get; init; }

    public TimeSpan Grace { get; init; } = TimeSpan.FromSeconds(3);

    public string? JsonPath { get; init; }

    public bool Quiet { get; init; }

    public bool NoSlurm { get; init; }

    public required string Program { get; init; }

    public IReadOnlyList<string> Arguments { get; init; } = [];

    /// <summary>Parses "auto" (the CPUs this process may run on) or a list such as "0,2-3".</summary>
    public static IReadOnlyList<int> ParseCpus(string text, Func<IReadOnlyList<int>> usable)
    {
        if (text == "auto")
        {
            return usable();
        }

        var cpus = new List<int>();
        foreach (string part in text.Split(','))
        {
            string[] range = part.Split('-');
            if (range.Length is < 1 or > 2 || !range.All(IsCpuNumber))
            {
                throw new UsageException($"--cpus: '{text}' is not 'auto' or a list of CPUs such as 0,2-3 (each 0-1023).");
            }

            int first = int.Parse(range[0], CultureInfo.InvariantCulture);
            int last = int.Parse(range[^1], CultureInfo.InvariantCulture);
            if (last < first)
            {
                throw new UsageException($"--cpus: the range '{part}' is empty.");
            }

            for (int cpu = first; cpu <= last; cpu++)
            {
                cpus.Add(cpu);
            }
        }

        return cpus;
    }

    /// <summary>Parses a duration: a number of seconds ("1.5"), or with a unit: 500ms, 10s, 2m, 1h.</summary>
    public static TimeSpan ParseDuration(string option, string text)
    {
        Match match = DurationPattern().Match(text);
        if (!match.Success || !double.TryParse(match.Groups[1].Value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double value))
        {
            throw new UsageException($"{option}: '{text}' is not a duration (such as 30, 1.5s, 500ms, 2m, 1h).");
        }

        double seconds = match.Groups[2].Value switch
        {
            "ms" => value / 1000,
            "m" => value * 60,
            "h" => value * 3600,
            _ => value,
        };
        if (seconds <= 0 || seconds > 365 * 24 * 3600.0)
        {
            throw new UsageException($"{option}: '{text}' must be above 0 and at most a year.");
        }

        return TimeSpan.FromSeconds(seconds);
    }

    /// <summary>Parses --startup-timeout: a duration the native core can take (whole milliseconds in an int).</summary>
    public static TimeSpan ParseStartupTimeout(string text)
    {
        TimeSpan limit = ParseDuration("--startup-timeout", text);
        if (limit.TotalMilliseconds is < 1 or > int.MaxValue)
        {
            throw new UsageException($"--startup-timeout: '{text}' must be at least 1ms and at most 24 days.");
        }

        return limit;
    }

    /// <summary>Parses --output: prefix, inherit, none, or files DIR.</summary>
    public static (OutputMode Mode, string? Directory) ParseOutput(IReadOnlyList<string>? values, bool terminal)
    {
        if (values is null || values.Count == 0)
        {
            return (terminal ? OutputMode.Prefix : OutputMode.Inherit, null);
        }

        string mode = values[0];
        if (mode == "files")
        {
            if (values.Count != 2 || values[1].Length == 0)
            {
                throw new UsageException("--output files needs a directory: --output files DIR.");
            }

            return (OutputMode.Files, values[1]);
        }

        OutputMode parsed = mode switch
        {
            "prefix" => OutputMode.Prefix,
            "inherit" => OutputMode.Inherit,
            "none" => OutputMode.None,
            _ => throw new UsageException($"--output: '{mode}' is not one of prefix, inherit, files DIR, none."),
        };
        if (values.Count > 1)
        {
            throw new UsageException($"--output {mode} takes no directory (got '{values[1]}'); put '--' before PROGRAM.");
        }

        return (parsed, null);
    }

    /// <summary>Parses one --env K=V.</summary>
    public static KeyValuePair<string, string> ParseVariable(string text)
    {
        int equals = text.IndexOf('=', StringComparison.Ordinal);
        if (equals <= 0 || text.AsSpan(0, equals).ContainsAny('\0', ' '))
        {
            throw new UsageException($"--env: '{text}' is not NAME=VALUE with a non-empty NAME.");
        }

        return new(text[..equals], text[(equals + 1)..]);
    }

    private static bool IsCpuNumber(string text) =>
        text.Length is > 0 and <= 4 && text.All(char.IsAsciiDigit) && int.Parse(text, CultureInfo.InvariantCulture) < 1024;

    [GeneratedRegex(@"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$", RegexOptions.CultureInvariant)]
    private static partial Regex DurationPattern();
}
