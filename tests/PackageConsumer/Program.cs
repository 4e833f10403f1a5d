using PSpawn;

// Usage: PackageConsumer EXECUTABLE [ARGUMENTS...]
// Spawns four instances of EXECUTABLE through a zygote, waits for all of them, and prints the mode and
// their exit codes.
await using var context = PSpawnContext.Create(args[0]);
var children = context.SpawnN(4, args[1..]);
await Task.WhenAll(children.Select(child => child.WaitForExitAsync()));
Console.WriteLine($"mode: {context.Mode}");
Console.WriteLine($"exit codes: {string.Join(",", children.Select(child => child.ExitCode))}");
