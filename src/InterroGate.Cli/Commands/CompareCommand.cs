using System.CommandLine;
using InterroGate.Cli.Rendering;
using InterroGate.Configuration;
using InterroGate.Training;
using Spectre.Console;

namespace InterroGate.Cli.Commands;

internal static class CompareCommand
{
    public static Command Create()
    {
        var config = new Argument<string>("config") { Description = "A comparison preset (multifashion-quick, ...) or a JSON file" };
        var set = CommonOptions.Set();
        var outDir = CommonOptions.Out("every run and the table");
        var cmd = new Command("compare", "Train STL per task, MTL and InterroGate at each λ_s; print the paper's table.") { config, set, outDir };
        cmd.SetAction(p => CommonOptions.Guard(cancel =>
        {
            var cfg = Presets.LoadComparison(p.GetValue(config)!, p.GetValue(set)!);
            string dir = p.GetValue(outDir) ?? Path.Combine("runs", cfg.Name);
            AnsiConsole.MarkupLine($"[bold]{Markup.Escape(cfg.Name)}[/]: STL, MTL and InterroGate at λs = {string.Join(", ", cfg.LambdaS)} on {cfg.Backbone.Name} (width {cfg.Backbone.Width}) -> {Markup.Escape(dir)}");
            var result = ConsoleReporter.Run(reporter => new ComparisonRunner(cfg, dir, reporter).Run(cancel));
            AnsiConsole.WriteLine();
            Console.WriteLine(result.Table.ToMarkdown());
            AnsiConsole.MarkupLine($"written: {Markup.Escape(result.MarkdownPath)}, {Markup.Escape(result.JsonPath)}");
            return 0;
        }));
        return cmd;
    }
}
