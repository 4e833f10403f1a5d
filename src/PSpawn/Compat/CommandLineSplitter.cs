using System.Text;

namespace PSpawn;

/// <summary>
/// Splits <see cref="System.Diagnostics.ProcessStartInfo.Arguments"/> into arguments by the rules .NET applies on Unix
/// (those of the Microsoft C runtime): spaces and tabs outside double quotes separate arguments; a double quote toggles
/// quoting and is dropped, except that two double quotes inside quotes give one literal quote (still quoted); a run of
/// backslashes is literal unless a double quote follows it, in which case each pair gives one backslash and an odd one
/// left over makes that quote literal.
/// </summary>
internal static class CommandLineSplitter
{
    internal static void Split(string commandLine, List<string> arguments)
    {
        int i = 0;
        var current = new StringBuilder();
        while (true)
        {
            while (i < commandLine.Length && IsSeparator(commandLine[i]))
            {
                i++;
            }

            if (i == commandLine.Length)
            {
                return;
            }

            current.Clear();
            i = ReadArgument(commandLine, i, current);
            arguments.Add(current.ToString());
        }
    }

    /// <summary>Reads one argument starting at <paramref name="i"/>; returns the index after it.</summary>
    private static int ReadArgument(string text, int i, StringBuilder argument)
    {
        bool quoted = false;
        while (i < text.Length)
        {
            char c = text[i];
            if (c == '\\')
            {
                int start = i;
                while (i < text.Length && text[i] == '\\')
                {
                    i++;
                }

                int backslashes = i - start;
                bool quoteFollows = i < text.Length && text[i] == '"';
                argument.Append('\\', quoteFollows ? backslashes / 2 : backslashes);
                if (quoteFollows && backslashes % 2 == 1)
                {
                    argument.Append('"');
                    i++;
                }
            }
            else if (c == '"')
            {
                if (quoted && i + 1 < text.Length && text[i + 1] == '"')
                {
                    argument.Append('"');
                    i += 2;
                }
                else
                {
                    quoted = !quoted;
                    i++;
                }
            }
            else if (!quoted && IsSeparator(c))
            {
                return i;
            }
            else
            {
                argument.Append(c);
                i++;
            }
        }

        return i;
    }

    private static bool IsSeparator(char c) => c is ' ' or '\t';
}
