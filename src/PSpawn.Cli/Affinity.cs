using System.Globalization;

namespace PSpawn.Cli;

/// <summary>The CPUs this process may run on (Cpus_allowed_list of /proc/self/status).</summary>
internal static class Affinity
{
    public static IReadOnlyList<int> UsableCpus()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal))
            {
                var cpus = new List<int>();
                foreach (string part in line["Cpus_allowed_list:".Length..].Trim().Split(',', StringSplitOptions.RemoveEmptyEntries))
                {
                    string[] range = part.Split('-');
                    int first = int.Parse(range[0], CultureInfo.InvariantCulture);
                    int last = int.Parse(range[^1], CultureInfo.InvariantCulture);
                    for (int cpu = first; cpu <= last; cpu++)
                    {
                        cpus.Add(cpu);
                    }
                }

                return cpus;
            }
        }

        return Enumerable.Range(0, Environment.ProcessorCount).ToList();
    }
}
