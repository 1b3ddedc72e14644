using System.CommandLine;
using InterroGate.Cli.Commands;

namespace InterroGate.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = Build();
        var parsed = root.Parse(args);
        // A malformed command line is a user error like any other: one line, exit code 2 (help and version still print).
        if (parsed.Errors.Count > 0 && args.Length > 0 && !args[0].StartsWith('-') && root.Subcommands.All(c => c.Name != args[0]))
        {
            var names = root.Subcommands.Select(c => c.Name).ToArray();
            var near = names.Where(n => Close(n, args[0])).ToArray();
            Console.Error.WriteLine($"error: unknown command '{args[0]}'{(near.Length > 0 ? $"; did you mean {string.Join(" or ", near)}?" : "")} (commands: {string.Join(", ", names)})");
            return 2;
        }
        if (parsed.Errors.Count > 0)
        {
            Console.Error.WriteLine($"error: {System.Text.RegularExpressions.Regex.Replace(parsed.Errors[0].Message, @"\s+", " ").Trim()} (`interrogate {string.Join(' ', args.TakeWhile(a => !a.StartsWith('-')).Take(1))} --help` lists the arguments)");
            return 2;
        }
        return parsed.Invoke();
    }

    /// <summary>Whether <paramref name="typed"/> is one edit (insertion, deletion, substitution or swap of neighbours) from <paramref name="name"/>.</summary>
    private static bool Close(string name, string typed)
    {
        if (Math.Abs(name.Length - typed.Length) > 1) return false;
        int i = 0;
        while (i < Math.Min(name.Length, typed.Length) && name[i] == typed[i]) i++;
        if (i == name.Length && i == typed.Length) return false; // the same
        string a = name[i..], b = typed[i..];
        return a.Length == b.Length
            ? a[1..] == b[1..] || (a.Length >= 2 && a[0] == b[1] && a[1] == b[0] && a[2..] == b[2..])
            : a.Length > b.Length ? a[1..] == b : b[1..] == a;
    }

    /// <summary>The command tree (exposed so tests can check how arguments map to configurations).</summary>
    public static RootCommand Build()
    {
        var root = new RootCommand("InterroGate: multi-task learning that learns to share, specialise and prune (arXiv 2402.16848).");
        root.Subcommands.Add(DoctorCommand.Create());
        root.Subcommands.Add(ListCommand.Create());
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(EvaluateCommand.Create());
        root.Subcommands.Add(CompareCommand.Create());
        root.Subcommands.Add(CompareCommand.Sweep());
        root.Subcommands.Add(CompareCommand.Merge());
        root.Subcommands.Add(GatesCommand.Create());
        root.Subcommands.Add(ReportCommand.Create());
        root.Subcommands.Add(ConfigCommand.Create());
        root.Subcommands.Add(DeployCommands.Prune());
        root.Subcommands.Add(DeployCommands.Export());
        root.Subcommands.Add(DeployCommands.Predict());
        root.Subcommands.Add(DeployCommands.Cost());
        return root;
    }
}
