using InterroGate.Analysis;
using TorchSharp;
using System.CommandLine;
using System.Text.Json;
using InterroGate.Configuration;
using InterroGate.Runtime;
using InterroGate.Training;
using Spectre.Console;

namespace InterroGate.Cli.Commands;

internal static class EvaluateCommand
{
    public static Command Create()
    {
        var checkpoint = new Argument<string>("checkpoint") { Description = "A checkpoint written by train or compare" };
        var split = new Option<string>("--split") { Description = "val or test", DefaultValueFactory = _ => "test" };
        split.AcceptOnlyFromAmong("val", "test");
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var device = CommonOptions.Device();
        var bnBatches = new Option<int>("--bn-batches")
        {
            Description = "First re-estimate the batch-norm statistics from this many training batches (docs/method.md, \"Batch-norm statistics\"); 0: as stored",
        };
        var dataRoot = new Option<string?>("--data-root")
        {
            Description = "The run's data folder, where it is now: replaces data.root of the run's configuration (a data set that moved, or the same one on another machine)",
        };
        var cmd = new Command("evaluate", "Evaluate a checkpoint on the validation or test split, with its cost.") { checkpoint, split, json, device, bnBatches, dataRoot };
        cmd.SetAction(p => CommonOptions.Guard(cancel =>
        {
            var path = p.GetValue(checkpoint)!;
            var meta = Checkpoint.ReadMeta(path);
            var runConfig = ConfigJson.Deserialize<RunConfig>(meta.Config, source: path);
            if (p.GetValue(dataRoot) is { } root)
            {
                if (runConfig.Data.Dataset == "synthetic")
                    throw new ConfigException("--data-root", $"the run's data set ({runConfig.Data.Dataset}) is generated, not read from a folder");
                if (!Directory.Exists(root)) throw new Data.DatasetNotFoundException($"--data-root: {root} is not a folder");
                runConfig = runConfig with { Data = runConfig.Data with { Root = Path.GetFullPath(root) } };
            }
            using var data = OpenData(runConfig.Data, hint: p.GetValue(dataRoot) is null);
            // The images the model was trained on: a folder of other sizes or another normalisation would be evaluated
            // without a word (a convolutional network runs on any size).
            if (meta.Input is { } trained && data.Train.Input is var now && !SameInput(trained, now))
                throw new Data.DataFormatException(runConfig.Data.Root ?? runConfig.Data.Dataset,
                    $"holds {Describe(now)} images; {path} was trained on {Describe(trained)} ones");
            var (config, model, _) = PreparedRun.Load(path, data.Train.ImageShape, data.Train.Tasks);
            using var loaded = model;
            var set = p.GetValue(split) == "val" ? data.Validation : data.Test;
            foreach (var (skippedSplit, count) in DataCatalog.Skipped(data))
                Console.Error.WriteLine($"warning: {count} ids of the {skippedSplit} list left out: their files are missing (data.skipMissing)");
            var (macs, parameters) = DeployedCost.OfModel(model, data.Train.ImageShape); // counted on the CPU
            var target = Devices.Resolve(p.GetValue(device) ?? config.Training.Device, config.Training.Tf32);
            model.to(target);
            int reestimate = p.GetValue(bnBatches);
            if (reestimate < 0) throw new ConfigException("--bn-batches", $"{reestimate} is out of range; valid: >= 0 (training batches to re-estimate batch-norm statistics from; 0: as stored)");
            if (reestimate > 0)
            {
                int used = BatchNormStatistics.ReestimateAsTrained(model, config, data.Train, meta.Epoch, reestimate, target, cancel);
                if (!p.GetValue(json)) AnsiConsole.MarkupLine($"batch-norm statistics re-estimated from {used} training batches of {config.Training.BatchSize} (the first of epoch {Math.Max(1, meta.Epoch)})");
            }
            var result = Evaluator.Evaluate(model, set, config.Training.EvalBatchSize, cancel, config.Training.Precision, config.Training.ChannelsLast);
            var nonFinite = DataCatalog.NonFiniteDepth(data);
            foreach (var (depthSplit, count) in nonFinite)
                Console.Error.WriteLine($"warning: {DataCatalog.NonFiniteDepthMessage(depthSplit, count)}");
            if (p.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new { checkpoint = path, architecture = model.Architecture, split = p.GetValue(split), metrics = result.Metrics, details = result.Details, losses = result.Losses, macs, parameters, skippedIds = DataCatalog.Skipped(data), nonFiniteDepthPixels = nonFinite }, new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }));
                return 0;
            }
            var t = new Table { Title = new TableTitle($"{p.GetValue(split)} split ({Markup.Escape(path)})") }
                .AddColumn("task").AddColumn("metric").AddColumn("value").AddColumn("loss");
            foreach (var task in model.Tasks)
            {
                t.AddRow(task.Name, task.MetricName, $"{result.Metrics[task.Name]:F4}", $"{result.Losses[task.Name]:F4}");
                // The task kind's secondary metrics (depth abs-rel, normals median and within-angle fractions, ...).
                if (result.Details.TryGetValue(task.Name, out var details))
                    foreach (var (name, value) in details.Where(d => d.Key != task.MetricName))
                        t.AddRow("", Markup.Escape(name), $"{value:F4}", "");
            }
            AnsiConsole.Write(t);
            AnsiConsole.MarkupLine($"{model.Architecture}: {macs / 1e6:F2} M MACs, {parameters / 1e6:F3} M parameters (deployed network; 1 MAC = 2 FLOPs)");
            return 0;
        }));
        return cmd;
    }

    /// <summary>The same image size and, within rounding, the same normalisation.</summary>
    private static bool SameInput(Data.ImageInput a, Data.ImageInput b) =>
        (a.Channels, a.Height, a.Width) == (b.Channels, b.Height, b.Width)
        && Math.Abs(a.Mean - b.Mean) <= 1e-9 * Math.Max(1, Math.Abs(a.Mean)) && Math.Abs(a.Std - b.Std) <= 1e-9 * Math.Max(1, Math.Abs(a.Std));

    private static string Describe(Data.ImageInput i) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{i.Channels}×{i.Height}×{i.Width} (normalised with mean {i.Mean:G4}, std {i.Std:G4})");

    /// <summary>The run's data; where its folder is not found, the message says how to point at its new place.</summary>
    private static Data.DatasetSplits OpenData(DataConfig data, bool hint)
    {
        try
        {
            return DataCatalog.Open(data);
        }
        catch (Data.DatasetNotFoundException e) when (hint)
        {
            throw new Data.DatasetNotFoundException($"{e.Message} (the data set this run was trained on, as its configuration names it; if it moved, give its new place with --data-root)");
        }
    }
}
