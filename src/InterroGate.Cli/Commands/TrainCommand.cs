using System.CommandLine;
using InterroGate.Cli.Rendering;
using InterroGate.Configuration;
using InterroGate.Runtime;
using InterroGate.Training;
using Spectre.Console;

namespace InterroGate.Cli.Commands;

internal static class TrainCommand
{
    public static Command Create()
    {
        var config = new Argument<string>("config") { Description = "A run preset (see `interrogate list`) or a JSON file" };
        var set = CommonOptions.Set();
        var outDir = CommonOptions.Out("checkpoints, metrics.jsonl and config.json");
        var resume = new Option<string?>("--resume") { Description = "Continue from this checkpoint (the same run's last.ckpt)" };
        var device = CommonOptions.Device();
        var overwrite = new Option<bool>("--overwrite") { Description = "Train anew in a folder that already holds a run, replacing its checkpoints and metrics" };
        var accept = new Option<bool>("--accept-changes") { Description = "Resume even where the configuration differs from the checkpoint's (the differing keys are printed)" };
        var cmd = new Command("train", "Train one model (STL, MTL, InterroGate, MTAN or Cross-stitch).") { config, set, outDir, resume, device, overwrite, accept };
        cmd.SetAction(p => CommonOptions.Guard(cancel =>
        {
            var run = Presets.LoadRun(p.GetValue(config)!, CommonOptions.WithDevice(p.GetValue(set)!, p.GetValue(device)));
            string dir = CommonOptions.OutputFolder(p.GetValue(outDir) ?? Path.Combine("runs", run.Name));
            Devices.Resolve(run.Training.Device, run.Training.Tf32); // before the data is read
            var prepared = PreparedRun.Create(run);
            AnsiConsole.MarkupLine($"[bold]{Markup.Escape(run.Name)}[/]: {run.Architecture.Type} on {run.Backbone.Name} (width {run.Backbone.Width}), tasks {Markup.Escape(string.Join(", ", prepared.Tasks.Names))}, {prepared.Data.Train.Count} training samples -> {Markup.Escape(dir)}");
            if (prepared.Pretrained is { } weights) Console.WriteLine($"pretrained: {weights}");
            foreach (var (split, count) in DataCatalog.Skipped(prepared.Data))
                AnsiConsole.MarkupLine($"[yellow]{count} ids of the {split} list left out: their files are missing (data.skipMissing)[/]");
            var result = ConsoleReporter.Run(reporter => new Trainer(run, prepared.Model, prepared.Data, dir, reporter)
            {
                Overwrite = p.GetValue(overwrite), AcceptConfigChanges = p.GetValue(accept),
            }.Run(p.GetValue(resume), cancel));
            foreach (var (split, count) in DataCatalog.NonFiniteDepth(prepared.Data))
                AnsiConsole.MarkupLine($"[yellow]{Markup.Escape(DataCatalog.NonFiniteDepthMessage(split, count))}[/]");
            if (result.Interrupted) return 130;
            // A finished run resumed trains nothing: no speed to give.
            AnsiConsole.MarkupLine($"best epoch {result.BestEpoch + 1}: {Markup.Escape(Format.Metrics(result.BestValidation))}" +
                                   (result.ImagesPerSecond > 0 ? $"; {result.ImagesPerSecond:F0} images/s" : ""));
            AnsiConsole.MarkupLine($"checkpoints: {Markup.Escape(result.BestCheckpoint)}, {Markup.Escape(result.LastCheckpoint)}");
            return 0;
        }));
        return cmd;
    }
}
