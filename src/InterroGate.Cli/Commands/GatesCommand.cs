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
        var output = new Option<string?>("--out", "-o") { Description = "Folder for gates.png and gates.svg (default: the run's folder)" };
        var cmd = new Command("gates", "Per gated layer and task: task-specific fraction, α spread, task gradient against the sparsity push; writes the Figure 4 plot.") { source, output };
        cmd.SetAction(p => CommonOptions.Guard(_ =>
        {
            Runtime.NativeRuntime.EnsureLoaded();
            if (p.GetValue(output) is { } outDir) CommonOptions.OutputFolder(outDir);
            var report = GateReport.Load(p.GetValue(source)!);
            string dir = p.GetValue(output) ?? Path.GetDirectoryName(Path.GetFullPath(report.Checkpoint))!;
            var (png, svg) = GatePatternPlot.Save(report.Layers, report.Tasks, Path.Combine(dir, "gates"),
                $"Task-specific channels per gated layer: {Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(report.Checkpoint)))}");
            Console.WriteLine(report.ToMarkdown());
            AnsiConsole.MarkupLine($"[green]wrote[/] {Markup.Escape(png)}, {Markup.Escape(svg)}");
            return 0;
        }));
        return cmd;
    }
}
