using System.CommandLine;
using InterroGate.Cli.Commands;

namespace InterroGate.Cli;

public static class Program
{
    public static int Main(string[] args) => Build().Parse(args).Invoke();

    /// <summary>The command tree (exposed so tests can check how arguments map to configurations).</summary>
    public static RootCommand Build()
    {
        var root = new RootCommand("InterroGate: multi-task learning that learns to share, specialise and prune (arXiv 2402.16848).");
        root.Subcommands.Add(DoctorCommand.Create());
        root.Subcommands.Add(ListCommand.Create());
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(EvaluateCommand.Create());
        root.Subcommands.Add(CompareCommand.Create());
        root.Subcommands.Add(GatesCommand.Create());
        root.Subcommands.Add(DeployCommands.Prune());
        root.Subcommands.Add(DeployCommands.Export());
        root.Subcommands.Add(DeployCommands.Predict());
        root.Subcommands.Add(DeployCommands.Cost());
        return root;
    }
}
