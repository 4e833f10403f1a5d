using System.CommandLine;
using PSpawn.Cli;

return await PSpawnCommand.MainAsync(args);
