using System.CommandLine;
using InterroGate.Backbones;
using InterroGate.Configuration;
using Spectre.Console;

namespace InterroGate.Cli.Commands;

internal static class ListCommand
{
    public static Command Create()
    {
        var cmd = new Command("list", "Name the backbones, architectures, balancers, data sets and presets.");
        cmd.SetAction(_ =>
        {
            Section("Backbones", BackboneCatalog.Descriptions);
            Section("Dense heads (head.dense)", InterroGate.Heads.HeadConfig.DenseHeads);
            Section("Architectures", Factory.Architectures);
            Section("Loss balancing", Factory.Balancers);
            Section("Data sets", DataCatalog.Descriptions);
            Section("Comparison presets (compare)", Presets.Comparisons.ToDictionary(p => p.Key, p => Describe(p.Value())));
            Section("Run presets (train)", Presets.RunNames.ToDictionary(k => k, k => k.Split('/')[1] switch
            {
                "stl" => "STL: one network per task",
                "mtl" => "MTL: one shared encoder",
                _ => "InterroGate at interroGate.lambdaS, from scratch",
            }));
            return 0;
        });
        return cmd;
    }

    /// <summary>A comparison in one line: data set and tasks, backbone, λs values.</summary>
    private static string Describe(CompareConfig c)
    {
        var b = c.Backbone;
        string backbone = b.Name + (b.Width != 1 ? $" ×{b.Width}" : "") + (b.Name.StartsWith("resnet", StringComparison.Ordinal) && b.OutputStride != 32 ? $" OS{b.OutputStride}" : "");
        string tasks = c.Tasks is null ? "" : $" ({string.Join(", ", c.Tasks)})";
        string lambdas = c.LambdaS.Count == 0 ? "" : $"; λs {string.Join(", ", c.LambdaS)}";
        string root = DataCatalog.NeedsRoot(c.Data.Dataset) ? "; needs --set data.root=..." : "";
        return $"{c.Data.Dataset}{tasks}, {backbone}{lambdas}{root}";
    }

    private static void Section(string title, IReadOnlyDictionary<string, string> items)
    {
        var t = new Table { Title = new TableTitle(title) }.AddColumn("name").AddColumn("description");
        foreach (var (k, v) in items) t.AddRow(Markup.Escape(k), Markup.Escape(v));
        AnsiConsole.Write(t);
    }
}
