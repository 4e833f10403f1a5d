using System.Globalization;
using System.Text.Json;

namespace PSpawn.Cli;

/// <summary>The JSON summary (<c>--json</c>): the run and every instance's pid, status and times.</summary>
internal sealed partial class Launcher
{
    private void WriteJson(string path, PSpawnContext context, int status)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("program", _path);
            json.WriteStartArray("arguments");
            foreach (string argument in _settings.Arguments)
            {
                json.WriteStringValue(argument);
            }

            json.WriteEndArray();
            json.WriteNumber("count", _records.Length);
            json.WriteNumber("size", _layout.Size);
            json.WriteNumber("rank_offset", _layout.Offset);
            json.WriteBoolean("slurm", _layout.UnderSlurm);
            json.WriteString("mode", context.Mode.ToString());
            json.WriteNumber("proxies", context.ProxyCount);
            json.WriteNumber("pool", _settings.Pool ?? 0);
            json.WriteNumber("pool_claims", context.PoolClaimCount);
            json.WriteBoolean("deferred", _settings.Deferred);
            json.WriteNumber("exit_code", status);
            json.WriteBoolean("timed_out", _timedOut);
            if (_interruptedBy != 0)
            {
                json.WriteNumber("interrupted_by", _interruptedBy);
            }
            else
            {
                json.WriteNull("interrupted_by");
            }

            json.WriteStartArray("instances");
            foreach (InstanceRecord record in _records)
            {
                json.WriteStartObject();
                json.WriteNumber("rank", record.Rank);
                json.WriteNumber("local_rank", record.LocalRank);
                WriteNumber(json, "pid", record.Pid);
                WriteNumber(json, "exit_code", record.ExitCode);
                WriteNumber(json, "signal", record.Signal);
                WriteNumber(json, "status", record.Status);
                WriteTime(json, "start", record.Start);
                WriteTime(json, "end", record.End);
                if (record.SpawnError is string error)
                {
                    json.WriteString("spawn_error", error);
                }
                else
                {
                    json.WriteNull("spawn_error");
                }

                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        buffer.WriteByte((byte)'\n');
        if (path == "-")
        {
            lock (_outputGate)
            {
                _stdout.Flush();
                using Stream stdout = Console.OpenStandardOutput();
                stdout.Write(buffer.GetBuffer(), 0, (int)buffer.Length);
            }
        }
        else
        {
            File.WriteAllBytes(path, buffer.ToArray());
        }
    }

    private static void WriteNumber(Utf8JsonWriter json, string name, int? value)
    {
        if (value is int number)
        {
            json.WriteNumber(name, number);
        }
        else
        {
            json.WriteNull(name);
        }
    }

    private static void WriteTime(Utf8JsonWriter json, string name, DateTimeOffset? value)
    {
        if (value is DateTimeOffset time)
        {
            json.WriteString(name, time.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture));
        }
        else
        {
            json.WriteNull(name);
        }
    }
}
