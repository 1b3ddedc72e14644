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
            Section("Comparison presets (compare)", Presets.Comparisons.Keys.ToDictionary(k => k, k => Presets.Comparisons[k]().Backbone.Name + $" width {Presets.Comparisons[k]().Backbone.Width}"));
            Section("Run presets (train)", Presets.RunNames.ToDictionary(k => k, _ => ""));
            return 0;
        });
        return cmd;
    }

    private static void Section(string title, IReadOnlyDictionary<string, string> items)
    {
        var t = new Table { Title = new TableTitle(title) }.AddColumn("name").AddColumn("description");
        foreach (var (k, v) in items) t.AddRow(Markup.Escape(k), Markup.Escape(v));
        AnsiConsole.Write(t);
    }
}
