using System.CommandLine;
using InterroGate.Cli.Commands;

namespace InterroGate.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var parsed = Build().Parse(args);
        // A malformed command line is a user error like any other: one line, exit code 2 (help and version still print).
        if (parsed.Errors.Count > 0)
        {
            Console.Error.WriteLine($"error: {System.Text.RegularExpressions.Regex.Replace(parsed.Errors[0].Message, @"\s+", " ").Trim()} (`interrogate {string.Join(' ', args.TakeWhile(a => !a.StartsWith('-')).Take(1))} --help` lists the arguments)");
            return 2;
        }
        return parsed.Invoke();
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
