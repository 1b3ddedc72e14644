using System.CommandLine;
using InterroGate.Analysis;
using Spectre.Console;

namespace InterroGate.Cli.Commands;

/// <summary>`interrogate gates RUN_OR_CHECKPOINT`: the learned sharing pattern, its gate statistics and the paper's Figure 4.</summary>
internal static class GatesCommand
{
    public static Command Create()
    {
        var source = new Argument<string>("run") { Description = "A run folder written by train or compare (its last.ckpt and metrics.jsonl), or an InterroGate checkpoint" };
        var output = new Option<string?>("--out", "-o") { Description = "Folder for gates.md, gates.png and gates.svg (default: the run's folder)" };
        var cmd = new Command("gates", "Per gated layer and task: task-specific fraction, α spread, task gradient against the sparsity push; writes the Figure 4 plot.") { source, output };
        cmd.SetAction(p => CommonOptions.Guard(_ =>
        {
            Runtime.NativeRuntime.EnsureLoaded();
            if (p.GetValue(output) is { } outDir) CommonOptions.OutputFolder(outDir);
            var report = GateReport.Load(p.GetValue(source)!);
            string dir = p.GetValue(output) ?? Path.GetDirectoryName(Path.GetFullPath(report.Checkpoint))!;
            // The run's folder, with its seed's folder where a comparison over seeds made it (seed-1/interrogate-ls4).
            string runDir = Path.GetDirectoryName(Path.GetFullPath(report.Checkpoint))!, runName = Path.GetFileName(runDir);
            if (Path.GetFileName(Path.GetDirectoryName(runDir)) is { } parent && parent.StartsWith("seed-", StringComparison.Ordinal)) runName = $"{parent}/{runName}";
            var (png, svg) = GatePatternPlot.Save(report.Layers, report.Tasks, Path.Combine(dir, "gates"),
                $"Task-specific channels per gated layer: {runName}", report.LayerNames);
            string markdown = report.ToMarkdown(), md = Path.Combine(dir, "gates.md");
            Training.RunFiles.WriteAtomically(md, markdown);
            // The whole table has ten columns per task: into a file or a pipe as it is, on a terminal the two that say most.
            if (Console.IsOutputRedirected) Console.WriteLine(markdown);
            else
            {
                var t = new Table().AddColumn("layer").AddColumn("C");
                foreach (var task in report.Tasks) t.AddColumn($"{Markup.Escape(task)} specific").AddColumn($"{Markup.Escape(task)} push/steady sd");
                foreach (var l in report.Layers)
                {
                    string name = report.LayerNames is { } names && l.Layer < names.Count ? $"{l.Layer} {names[l.Layer]}" : $"{l.Layer}";
                    var cells = new List<string> { Markup.Escape(name), $"{l.Channels}" };
                    foreach (var s in l.Tasks)
                        cells.AddRange([$"{100 * s.Specific:F0}%", double.IsFinite(s.PushOverSteadySpread) ? $"{s.PushOverSteadySpread:F1}" : ""]);
                    t.AddRow(cells.ToArray());
                }
                AnsiConsole.Write(t);
                foreach (var line in markdown.Split('\n').SkipWhile(l => !l.StartsWith("Task-specific channels:", StringComparison.Ordinal)).Take(1))
                    Console.WriteLine(line.TrimEnd());
            }
            AnsiConsole.MarkupLine($"[green]wrote[/] {Markup.Escape(md)} (every column), {Markup.Escape(png)}, {Markup.Escape(svg)}");
            return 0;
        }));
        return cmd;
    }
}
