using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace PSpawn.Cli;

/// <summary>The command line of <c>pspawn</c> (System.CommandLine).</summary>
internal static class PSpawnCommand
{
    public static async Task<int> MainAsync(string[] args)
    {
        RootCommand root = Build(out Command run, out Command bench);
        ParseResult parse = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
        if (parse.Errors.Count > 0)
        {
            foreach (ParseError error in parse.Errors)
            {
                await Console.Error.WriteLineAsync($"pspawn: {error.Message}");
            }

            string command = parse.CommandResult.Command == bench ? "bench" : parse.CommandResult.Command == run ? "run" : string.Empty;
            await Console.Error.WriteLineAsync($"Try 'pspawn {command}{(command.Length > 0 ? " " : string.Empty)}--help'.");
            return ExitCodes.Usage;
        }

        return await parse.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null, EnableDefaultExceptionHandler = true });
    }

    private static RootCommand Build(out Command run, out Command bench)
    {
        var count = new Option<int>("--count", "-n") { Description = "Number of instances on this node (1 to 1048576).", Required = true };
        var cpus = new Option<string>("--cpus") { Description = "Placement: 'auto' (instance i on usable CPU i mod their number) or a list such as 0,2-3 (instance i on its i mod length'th CPU)." };
        var proxies = new Option<int?>("--proxies") { Description = "Zygote proxies (default: the library's, one per usable CPU up to 8)." };
        var pool = new Option<int?>("--pool") { Description = "Warm pool: children each proxy keeps forked ahead of time, parked before main (1 to 64; default none). Instances claim them instead of forking." };
        var deferred = new Option<bool>("--deferred") { Description = "Deferred fork point: PROGRAM runs its own start-up once per proxy, up to its pspawn_ready() call (native/include/pspawn_ready.h), and every instance is forked from there with its own arguments and environment. PROGRAM must call pspawn_ready(); one that does not makes pspawn exit 125 (no exec fallback)." };
        var startupTimeout = new Option<string>("--startup-timeout") { Description = "How long each proxy may take to start (with --deferred: to reach pspawn_ready()); default 10s, at most 24 days. E.g. 30, 1.5s, 2m." };
        var env = new Option<string[]>("--env", "-e") { Description = "NAME=VALUE for every instance ({rank}, {size}, {local_rank} are substituted). Repeatable." };
        var output = new Option<string[]>("--output") { Description = "prefix (lines as '[rank] line'; default on a terminal), inherit (unprefixed; default otherwise), files DIR (DIR/RANK.out, DIR/RANK.err), none.", Arity = new ArgumentArity(1, 2), AllowMultipleArgumentsPerToken = true };
        var timeout = new Option<string>("--timeout") { Description = "Stop the instances still running after this long (SIGTERM, SIGKILL after --grace); exit status 124. E.g. 30, 1.5s, 500ms, 2m." };
        var grace = new Option<string>("--grace") { Description = "After forwarding SIGINT (or SIGTERM on --timeout), SIGKILL the instances still running after this long (default 3s)." };
        var json = new Option<string>("--json") { Description = "Write a JSON summary (per instance: rank, pid, exit code or signal, start and end times, spawn error) to FILE, or '-' for stdout." };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "No progress display or summary line (errors still go to stderr)." };
        var noSlurm = new Option<bool>("--no-slurm") { Description = "Ignore SLURM_* variables: ranks 0..N-1 even inside a Slurm step." };
        var command = new Argument<string[]>("command") { Description = "-- PROGRAM ARGS...: the program (looked up in PATH when it has no '/') and its arguments; {rank}, {size} and {local_rank} are substituted.", Arity = ArgumentArity.OneOrMore };

        run = new Command("run", "Start N instances of PROGRAM through PSpawn's zygotes and wait for them. Exit status: 0 if every instance exited with 0, else the lowest failing rank's status (a signal n: 128+n); 2 usage, 124 timeout, 125 an instance did not start, 126 PROGRAM not executable, 127 PROGRAM not found, 130/143 interrupted.")
        {
            count, cpus, proxies, pool, deferred, startupTimeout, env, output, timeout, grace, json, quiet, noSlurm, command,
        };
        run.SetAction(async (parse, _) =>
        {
            try
            {
                return await RunAsync(parse, count, cpus, proxies, pool, deferred, startupTimeout, env, output, timeout, grace, json, quiet, noSlurm, command);
            }
            catch (UsageException ex)
            {
                await Console.Error.WriteLineAsync($"pspawn: {ex.Message}");
                await Console.Error.WriteLineAsync("Try 'pspawn run --help'.");
                return ExitCodes.Usage;
            }
        });

        var benchProgram = new Argument<string>("program") { Description = "The program to start (default /bin/true).", Arity = ArgumentArity.ZeroOrOne, DefaultValueFactory = _ => "/bin/true" };
        var benchCount = new Option<int>("--count", "-n") { Description = "Instances per round (default 200).", DefaultValueFactory = _ => 200 };
        var benchRounds = new Option<int>("--rounds") { Description = "Measured rounds (default 3; the median is shown).", DefaultValueFactory = _ => 3 };
        bench = new Command("bench", "Compare PSpawn against Process.Start (vfork + exec, as posix_spawn) for PROGRAM and print the ratio.")
        {
            benchProgram, benchCount, benchRounds,
        };
        bench.SetAction(async (parse, _) =>
        {
            int n = parse.GetValue(benchCount);
            int rounds = parse.GetValue(benchRounds);
            if (n is < 1 or > 100_000 || rounds is < 1 or > 100)
            {
                await Console.Error.WriteLineAsync("pspawn: bench: --count must be 1 to 100000 and --rounds 1 to 100.");
                return ExitCodes.Usage;
            }

            var (path, code, error) = ProgramResolver.Resolve(parse.GetValue(benchProgram)!, System.Environment.GetEnvironmentVariable("PATH"));
            if (path is null)
            {
                await Console.Error.WriteLineAsync($"pspawn: {error}");
                return code;
            }

            return await Bench.RunAsync(path, n, rounds, Console.Out);
        });

        return new RootCommand("pspawn: launch many instances of one program fast, through PSpawn's zygote proxies.") { run, bench };
    }

    private static async Task<int> RunAsync(
        ParseResult parse, Option<int> count, Option<string> cpus, Option<int?> proxies, Option<int?> pool, Option<bool> deferred, Option<string> startupTimeout, Option<string[]> env, Option<string[]> output,
        Option<string> timeout, Option<string> grace, Option<string> json, Option<bool> quiet, Option<bool> noSlurm, Argument<string[]> command)
    {
        int n = parse.GetValue(count);
        if (n < 1 || n > PSpawnContext.MaxSpawnCount)
        {
            throw new UsageException(string.Create(CultureInfo.InvariantCulture, $"-n/--count must be 1 to {PSpawnContext.MaxSpawnCount} (got {n})."));
        }

        int? k = parse.GetValue(proxies);
        if (k is < 1 or > PSpawnContextOptions.MaxProxyCount)
        {
            throw new UsageException(string.Create(CultureInfo.InvariantCulture, $"--proxies must be 1 to {PSpawnContextOptions.MaxProxyCount} (got {k})."));
        }

        int? parked = parse.GetValue(pool);
        if (parked is < 1 or > WarmPoolOptions.MaxSize)
        {
            throw new UsageException(string.Create(CultureInfo.InvariantCulture, $"--pool must be 1 to {WarmPoolOptions.MaxSize} (got {parked})."));
        }

        string[] words = parse.GetValue(command) ?? [];
        if (words.Length == 0 || words[0].Length == 0)
        {
            throw new UsageException("PROGRAM is missing: pspawn run -n N [options] -- PROGRAM ARGS...");
        }

        if (words[0].StartsWith('-'))
        {
            // System.CommandLine hands unknown options to the command argument; a PROGRAM never starts with '-'.
            throw new UsageException($"unknown option '{words[0]}' (options go before '--', PROGRAM and its arguments after it).");
        }

        var (mode, directory) = RunSettings.ParseOutput(parse.GetValue(output), !Console.IsOutputRedirected);
        string? jsonPath = parse.GetValue(json);
        if (jsonPath is { Length: 0 })
        {
            throw new UsageException("--json needs a FILE or '-'.");
        }

        if (jsonPath is not null and not "-" && !Directory.Exists(Path.GetDirectoryName(Path.GetFullPath(jsonPath))))
        {
            throw new UsageException($"--json: the directory of '{jsonPath}' does not exist.");
        }

        var settings = new RunSettings
        {
            Count = n,
            Cpus = parse.GetValue(cpus) is string c ? RunSettings.ParseCpus(c, Affinity.UsableCpus) : null,
            Proxies = k,
            Pool = parked,
            Deferred = parse.GetValue(deferred),
            StartupTimeout = parse.GetValue(startupTimeout) is string st ? RunSettings.ParseStartupTimeout(st) : null,
            Environment = (parse.GetValue(env) ?? []).Select(RunSettings.ParseVariable).ToList(),
            Output = mode,
            OutputDirectory = directory,
            Timeout = parse.GetValue(timeout) is string t ? RunSettings.ParseDuration("--timeout", t) : null,
            Grace = parse.GetValue(grace) is string g ? RunSettings.ParseDuration("--grace", g) : TimeSpan.FromSeconds(3),
            JsonPath = jsonPath,
            Quiet = parse.GetValue(quiet),
            NoSlurm = parse.GetValue(noSlurm),
            Program = words[0],
            Arguments = words[1..],
        };

        var environment = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (System.Collections.DictionaryEntry entry in System.Environment.GetEnvironmentVariables())
        {
            environment[(string)entry.Key] = (string?)entry.Value ?? string.Empty;
        }

        RankLayout layout = RankLayout.From(n, environment, settings.NoSlurm);
        var (path, code, error) = ProgramResolver.Resolve(settings.Program, System.Environment.GetEnvironmentVariable("PATH"));
        if (path is null)
        {
            await Console.Error.WriteLineAsync($"pspawn: {error}");
            return code;
        }

        using var launcher = new Launcher(settings, layout, path);
        return await launcher.RunAsync();
    }
}
