using System.CommandLine;
using InterroGate.Configuration;
using InterroGate.Data;

namespace InterroGate.Cli.Commands;

/// <summary>`interrogate config show` (a resolved configuration) and `interrogate config init` (a starter configuration for a user's data folder).</summary>
internal static class ConfigCommand
{
    public static Command Create()
    {
        var cmd = new Command("config", "Print a resolved configuration, or write a starter one for your data.");
        cmd.Subcommands.Add(Show());
        cmd.Subcommands.Add(Init());
        return cmd;
    }

    private static Command Show()
    {
        var config = new Argument<string?>("config") { Description = "A run or comparison preset, or a JSON file (default: a run's defaults)", Arity = ArgumentArity.ZeroOrOne };
        var set = CommonOptions.Set();
        var cmd = new Command("show", "Print a configuration with every key resolved: the defaults the code applies for keys left out, overrides applied.") { config, set };
        cmd.SetAction(p => CommonOptions.Guard(_ =>
        {
            string? name = p.GetValue(config);
            var overrides = p.GetValue(set)!;
            // Printed, then checked as train and compare check it before they open the data (the number of tasks is not
            // known yet): a value they would refuse is said, with exit code 2, after the configuration it is part of.
            var comparison = name is not null && Presets.IsComparison(name) ? Presets.LoadComparison(name, overrides) : null;
            var run = comparison is not null ? null : name is null ? ConfigJson.Deserialize<RunConfig>("{}", overrides) : Presets.LoadRun(name, overrides);
            Console.WriteLine(comparison is not null ? ConfigJson.Serialize(comparison) : ConfigJson.Serialize(run));
            try
            {
                Runtime.NativeRuntime.EnsureLoaded(); // checking a comparison's methods builds their balancers
                if (comparison is null) run!.Validate(0);
                else
                {
                    foreach (var note in CompareCommand.OverrideNotes(comparison, overrides)) Console.Error.WriteLine($"note: {note}");
                    comparison.Validate(0);
                }
            }
            catch (ConfigException e)
            {
                Console.Error.WriteLine($"{(comparison is null ? "train" : "compare")} would refuse this configuration: {e.Message}");
                return 2;
            }
            return 0;
        }));
        return cmd;
    }

    private static Command Init()
    {
        var dataset = new Option<string>("--dataset") { Description = "The kind of data set (folder: your own, tasks.json with train/ and test/ .npy files)", Required = true };
        dataset.AcceptOnlyFromAmong("folder");
        var root = new Option<string>("--root") { Description = "The data folder (holding tasks.json)", Required = true };
        var output = new Option<string?>("--out", "-o") { Description = "File to write (default: <folder name>.json here)" };
        var cmd = new Command("init", "Write a starter InterroGate run configuration for a data folder, its tasks read from tasks.json.") { dataset, root, output };
        cmd.SetAction(p => CommonOptions.Guard(_ =>
        {
            string folder = Path.GetFullPath(p.GetValue(root)!);
            string tasksFile = Path.Combine(folder, "tasks.json");
            if (!File.Exists(tasksFile)) throw new DatasetNotFoundException($"No tasks.json in {folder}: a user data set needs tasks.json and train/ and test/ folders of .npy files.");
            var tasks = UserFolderDataset.ReadTasks(tasksFile);
            string name = new DirectoryInfo(folder).Name;
            string target = Path.GetFullPath(CommonOptions.OutputFile(p.GetValue(output) ?? $"{name}.json"));
            if (File.Exists(target)) throw new ConfigException("--out", $"{target} exists; choose another file (-o)");
            var starter = new RunConfig
            {
                Name = name,
                // Relative to the config file's folder, which is how config files are read.
                Data = new DataConfig { Dataset = p.GetValue(dataset)!, Root = Path.GetRelativePath(Path.GetDirectoryName(target)!, folder) },
                Tasks = tasks.Names.ToArray(),
            };
            starter.Validate(tasks.Count);
            File.WriteAllText(target, ConfigJson.Serialize(starter) + "\n");
            Console.WriteLine($"wrote {target}: tasks {string.Join(", ", tasks.Names)}; train it with `interrogate train {Path.GetRelativePath(Environment.CurrentDirectory, target)}`");
            return 0;
        }));
        return cmd;
    }
}
