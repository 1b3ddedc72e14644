using System.CommandLine;
using InterroGate.Cli.Rendering;
using InterroGate.Configuration;
using InterroGate.Runtime;
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
        var device = CommonOptions.Device();
        var seeds = new Option<string?>("--seeds") { Description = "Training seeds, e.g. 0,1,2: the protocol runs once per seed and the table shows mean ± std (config key seeds)" };
        var details = new Option<bool>("--details") { Description = "Also print each task's secondary metrics (depth abs-rel, normals median and within-angle fractions, saliency mIoU, edge odsF); the JSON always has them" };
        var cmd = new Command("compare", "Train STL per task, MTL and InterroGate at each λ_s; print the paper's table.") { config, set, outDir, device, seeds, details };
        cmd.SetAction(p => CommonOptions.Guard(cancel =>
        {
            var cfg = Presets.LoadComparison(p.GetValue(config)!, p.GetValue(set)!);
            if (p.GetValue(seeds) is { } list) cfg = cfg with { Seeds = ParseSeeds(list) };
            if (p.GetValue(device) is { } d)
                cfg = cfg with
                {
                    Training = cfg.Training with { Device = d },
                    InterroGateTraining = cfg.InterroGateTraining is null ? null : cfg.InterroGateTraining with { Device = d },
                };
            string dir = p.GetValue(outDir) ?? Path.Combine("runs", cfg.Name);
            Devices.Resolve(cfg.Training.Device, cfg.Training.Tf32); // before anything trains
            var rows = new List<string> { "STL", "MTL" };
            if (cfg.Methods.Count > 0) rows.Add($"MTL + {string.Join(", ", cfg.Methods.Select(m => m.Create(2).Name))}");
            rows.AddRange(cfg.Architectures.Select(a => a.Type));
            if (cfg.LambdaS.Count > 0) rows.Add($"InterroGate at λs = {string.Join(", ", cfg.LambdaS)}");
            if (cfg.Seeds is { } s) rows.Add($"seeds {string.Join(", ", s)}");
            AnsiConsole.MarkupLine($"[bold]{Markup.Escape(cfg.Name)}[/]: {Markup.Escape(string.Join("; ", rows))} on {cfg.Backbone.Name} (width {cfg.Backbone.Width}) -> {Markup.Escape(dir)}");
            var result = ConsoleReporter.Run(reporter => new ComparisonRunner(cfg, dir, reporter).Run(cancel));
            AnsiConsole.WriteLine();
            Console.WriteLine(result.Table.ToMarkdown(p.GetValue(details)));
            AnsiConsole.MarkupLine($"written: {Markup.Escape(result.MarkdownPath)}, {Markup.Escape(result.JsonPath)}");
            return 0;
        }));
        return cmd;
    }

    /// <summary>"0,1,2" as seeds; anything else is a configuration error naming --seeds.</summary>
    internal static int[] ParseSeeds(string list)
    {
        var parts = list.Split(',', StringSplitOptions.TrimEntries);
        var seeds = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out seeds[i]))
                throw new ConfigException("seeds", $"'{list}' is not a comma-separated list of non-negative integers (e.g. 0,1,2)");
        return seeds;
    }
}
