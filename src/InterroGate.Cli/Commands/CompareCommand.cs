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
        var (cmd, load) = Common("compare", "Train STL per task, MTL and InterroGate at each λ_s; print the paper's table.");
        var details = Details();
        cmd.Options.Add(details);
        cmd.SetAction(p => CommonOptions.Guard(cancel =>
        {
            var (cfg, dir) = load(p);
            Announce(cfg, dir);
            var result = ConsoleReporter.Run(reporter => new ComparisonRunner(cfg, dir, reporter).Run(cancel));
            PrintTable(result.Table, result.MarkdownPath, result.JsonPath, result.Figures, p.GetValue(details));
            return 0;
        }));
        return cmd;
    }

    /// <summary>`sweep`: the comparison over λs, a τ grid and any config key, whole or one shard at a time.</summary>
    public static Command Sweep()
    {
        var (cmd, load) = Common("sweep",
            "Train a comparison's InterroGate runs over its grid (lambdaS × tauGrid × grid), whole or one shard at a time; `merge` joins the shards.");
        var shard = new Option<string?>("--shard")
        {
            Description = "Run slice I/N of the InterroGate runs (run k when k mod N = I; the other runs, STL, MTL, methods and architectures, must be finished). " +
                          "In a Slurm job array the slice comes from SLURM_ARRAY_TASK_ID less SLURM_ARRAY_TASK_MIN, and SLURM_ARRAY_TASK_COUNT",
        };
        var baselines = new Option<bool>("--baselines") { Description = "Train every run but the InterroGate ones (STL, MTL, methods, architectures) of every seed, before the shards" };
        var details = Details();
        cmd.Options.Add(shard);
        cmd.Options.Add(baselines);
        cmd.Options.Add(details);
        cmd.SetAction(p => CommonOptions.Guard(cancel =>
        {
            var (cfg, dir) = load(p);
            var slice = p.GetValue(shard) is { } text ? Shard.Parse(text) : Shard.FromEnvironment();
            if (slice is not null && p.GetValue(baselines)) throw new ConfigException("--baselines", "give either --baselines or a shard (--shard or a Slurm array task), not both");
            Announce(cfg, dir);
            if (slice is null && !p.GetValue(baselines))
            {
                var result = ConsoleReporter.Run(reporter => new ComparisonRunner(cfg, dir, reporter).Run(cancel));
                PrintTable(result.Table, result.MarkdownPath, result.JsonPath, result.Figures, p.GetValue(details));
                return 0;
            }
            string? written = ConsoleReporter.Run(reporter => new ComparisonRunner(cfg, dir, reporter) { Shard = slice, BaselinesOnly = p.GetValue(baselines) }.RunPart(cancel));
            AnsiConsole.WriteLine();
            Console.WriteLine(written is null
                ? $"baselines finished in {dir}; now run the shards (--shard I/N) and `interrogate merge {dir}`"
                : $"shard {slice!.Index} of {slice.Count} written: {written}");
            return 0;
        }));
        return cmd;
    }

    /// <summary>`merge DIR`: one table from a sharded sweep's results.</summary>
    public static Command Merge()
    {
        var dir = new Argument<string>("dir") { Description = "The sweep's folder (-o of its shards)" };
        var details = Details();
        var cmd = new Command("merge", "Join the shards of a sweep into one table (table.md, table.json in the sweep's folder).") { dir, details };
        cmd.SetAction(p => CommonOptions.Guard(cancel =>
        {
            string folder = p.GetValue(dir)!;
            var table = SweepShards.Merge(folder, out var entries, out var sweep);
            string md = Path.Combine(folder, "table.md"), json = Path.Combine(folder, "table.json");
            RunFiles.WriteAtomically(md, table.ToMarkdown());
            RunFiles.WriteAtomically(json, table.ToJson());
            RunFiles.WriteAtomically(Path.Combine(folder, ComparisonRunner.CostFileName), table.ToCostMarkdown(sweep.Training.Device));
            var figures = Analysis.ComparisonFigures.Write(table, entries, folder);
            PrintTable(table, md, json, figures, p.GetValue(details));
            return 0;
        }));
        return cmd;
    }

    private static Option<bool> Details() => new("--details")
    {
        Description = "Also print each task's secondary metrics (depth abs-rel, normals median and within-angle fractions, saliency maxF, edge odsF); the JSON always has them",
    };

    /// <summary>The options `compare` and `sweep` share, and how they make the configuration and its folder.</summary>
    private static (Command Command, Func<ParseResult, (CompareConfig Config, string Dir)> Load) Common(string name, string description)
    {
        var config = new Argument<string>("config") { Description = "A comparison preset (multifashion-quick, ...) or a JSON file" };
        var set = CommonOptions.Set();
        var outDir = CommonOptions.Out("every run and the table");
        var device = CommonOptions.Device();
        var seeds = new Option<string?>("--seeds") { Description = "Training seeds, e.g. 0,1,2: the protocol runs once per seed and the table shows mean ± std (config key seeds)" };
        var targets = new Option<string?>("--targets")
        {
            Description = "Compute budgets instead of the λs list, as fractions of the way from MTL's MACs (0) to STL's (1), e.g. 0.25,0.5,0.75: " +
                          "one InterroGate run trained to each (config key targets; replaces lambdaS)",
        };
        var cmd = new Command(name, description) { config, set, outDir, device, seeds, targets };
        return (cmd, p =>
        {
            var cfg = Presets.LoadComparison(p.GetValue(config)!, p.GetValue(set)!);
            if (p.GetValue(seeds) is { } list) cfg = cfg with { Seeds = ParseSeeds(list) };
            if (p.GetValue(targets) is { } fractions) cfg = cfg with { LambdaS = [], Targets = ParseTargets(fractions) };
            foreach (var note in OverrideNotes(cfg, p.GetValue(set)!)) AnsiConsole.MarkupLine($"[yellow]note:[/] {Markup.Escape(note)}");
            if (p.GetValue(device) is { } d) cfg = cfg.OnDevice(d);
            string dir = CommonOptions.OutputFolder(p.GetValue(outDir) ?? Path.Combine("runs", cfg.Name));
            Devices.Resolve(cfg.Training.Device, cfg.Training.Tf32); // before anything trains
            return (cfg, dir);
        });
    }

    /// <summary>
    /// What a --set on a comparison does not do that a user may expect: a training.* key does not reach InterroGate's
    /// runs where the comparison has their own interroGateTraining section. interroGate.lambdaS next to a λs list is
    /// an error: each InterroGate run takes its λs from the list.
    /// </summary>
    internal static IEnumerable<string> OverrideNotes(CompareConfig cfg, IReadOnlyList<string> overrides)
    {
        var keys = overrides.Select(o => o.Split('=', 2)[0].Trim()).ToHashSet(StringComparer.Ordinal);
        if (keys.Contains("interroGate.lambdaS") && cfg.LambdaS.Count > 0)
            throw new ConfigException("interroGate.lambdaS", $"a comparison trains InterroGate at each value of lambdaS ({string.Join(", ", cfg.LambdaS)}); " +
                                                             "set that list instead, e.g. --set 'lambdaS=[3]'");
        if (cfg.InterroGateTraining is null) yield break;
        foreach (var key in keys.Where(k => k.StartsWith("training.", StringComparison.Ordinal) && !keys.Contains("interroGateTraining." + k["training.".Length..])))
            yield return $"{key} applies to the STL and MTL runs; the InterroGate runs train with interroGateTraining " +
                         $"(--set interroGateTraining.{key["training.".Length..]}=... for them too)";
    }

    private static void Announce(CompareConfig cfg, string dir)
    {
        var rows = new List<string> { "STL", "MTL" };
        if (cfg.Methods.Count > 0) rows.Add($"MTL + {string.Join(", ", cfg.Methods.Select(m => m.Create(2).Name))}");
        rows.AddRange(cfg.Architectures.Select(a => a.Type));
        if (cfg.LambdaS.Count > 0) rows.Add($"InterroGate at λs = {string.Join(", ", cfg.LambdaS)}");
        if (cfg.Targets is { Count: > 0 } budgets) rows.Add($"InterroGate trained to {string.Join(", ", budgets.Select(b => b.Label))}");
        if (cfg.TauGrid is { } taus) rows.Add($"τ per task in {{{string.Join(", ", taus)}}}");
        if (cfg.Grid is { } grid) rows.AddRange(grid.Select(kv => $"{kv.Key} in {{{string.Join(", ", kv.Value.Select(v => v.GetRawText()))}}}"));
        if (cfg.Seeds is { } s) rows.Add($"seeds {string.Join(", ", s)}");
        AnsiConsole.MarkupLine($"[bold]{Markup.Escape(cfg.Name)}[/]: {Markup.Escape(string.Join("; ", rows))} on {cfg.Backbone.Name} (width {cfg.Backbone.Width}) -> {Markup.Escape(dir)}");
    }

    private static void PrintTable(Analysis.ComparisonTable table, string md, string json, IReadOnlyList<string> figures, bool details)
    {
        AnsiConsole.WriteLine();
        Console.WriteLine(table.ToMarkdown(details));
        AnsiConsole.MarkupLine($"written: {Markup.Escape(string.Join(", ", Written(md, json, figures)))}");
    }

    /// <summary>The table files, then what was written beside them: cost.md, each figure (as NAME.png/svg) and the sharing patterns in gates/.</summary>
    private static IEnumerable<string> Written(string md, string json, IReadOnlyList<string> figures)
    {
        yield return md;
        yield return Path.GetFileName(json);
        yield return ComparisonRunner.CostFileName;
        string folder = Path.GetDirectoryName(Path.GetFullPath(md))!;
        var (patterns, others) = (figures.Where(f => Path.GetFileName(Path.GetDirectoryName(f)) == "gates").ToArray(),
            figures.Where(f => Path.GetFileName(Path.GetDirectoryName(f)) != "gates"));
        foreach (var figure in others) yield return Path.ChangeExtension(Path.GetRelativePath(folder, figure), null) + ".png/svg";
        if (patterns.Length > 0) yield return $"gates/ ({patterns.Length} sharing pattern{(patterns.Length == 1 ? "" : "s")})";
    }

    /// <summary>"0.25,0.5" as budgets at those fractions of the way from MTL to STL; anything else is an error naming --targets.</summary>
    internal static Gating.BudgetTarget[] ParseTargets(string list)
    {
        var parts = list.Split(',', StringSplitOptions.TrimEntries);
        var targets = new Gating.BudgetTarget[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!double.TryParse(parts[i], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double f) || f is < 0 or > 1)
                throw new ConfigException("targets", $"'{list}' is not a comma-separated list of fractions in [0, 1] (0 = MTL's MACs, 1 = STL's; e.g. 0.25,0.5,0.75)");
            targets[i] = Gating.BudgetTarget.AtFraction(f);
        }
        return targets;
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
