using System.CommandLine;
using System.Text.Json;
using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Heads;
using InterroGate.Training;
using Spectre.Console;
using static TorchSharp.torch;

namespace InterroGate.Cli.Commands;

/// <summary>prune, export, predict and cost: from a trained model to a static network and its numbers.</summary>
internal static class DeployCommands
{
    // camelCase like every other JSON the command line writes (the pruning report's C# properties included).
    private static readonly JsonSerializerOptions Indented = new()
    {
        WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static Command Prune()
    {
        var checkpoint = new Argument<string>("checkpoint") { Description = "An InterroGate checkpoint written by train or compare" };
        var output = new Option<string?>("--out", "-o") { Description = "Static model file to write (default: <checkpoint>.pruned.safetensors)" };
        var json = new Option<bool>("--json") { Description = "Print the prune report as JSON" };
        var cmd = new Command("prune", "Make the gates constant and remove every filter nobody reads: a static network for all tasks.") { checkpoint, output, json };
        cmd.SetAction(p => CommonOptions.Guard(_ =>
        {
            string path = p.GetValue(checkpoint)!;
            string target = CommonOptions.WithExtension(CommonOptions.OutputFile(p.GetValue(output) ?? Path.ChangeExtension(path, null) + ".pruned.safetensors", path),
                ".safetensors", "a static model (safetensors)");
            var (model, input, meta) = ModelFiles.LoadCheckpoint(path);
            using var loaded = model;
            if (model is not InterroGateModel ig)
                throw new CheckpointException(path, $"holds {Architectures.ArchitectureNames.AModel(meta.Architecture)}; only InterroGate models are pruned (use `interrogate export` to turn STL or MTL models into static networks).");
            var result = Pruner.Prune(ig, input);
            using var graph = result.Graph;
            StaticModelFile.Save(target, result.Graph);
            if (p.GetValue(json))
            {
                var budget = result.Report.Budget;
                Console.WriteLine(JsonSerializer.Serialize(new { checkpoint = path, output = target, report = result.Report,
                    budget = budget is null ? null : new { kind = budget.Kind, target = budget.Target, achieved = budget.Achieved, gap = budget.Gap } }, Indented));
                return 0;
            }
            Console.WriteLine(result.Report.ToMarkdown([.. ig.Tasks.Names, "shared"]));
            AnsiConsole.MarkupLine($"[green]wrote[/] {Markup.Escape(target)}");
            return 0;
        }));
        return cmd;
    }

    public static Command Export()
    {
        var model = new Argument<string>("model") { Description = "A checkpoint (any architecture) or a static model file (.safetensors)" };
        var format = new Option<string>("--format")
        {
            Description = "onnx or safetensors (the static network), or state-dict (a checkpoint's weights under PyTorch names, as safetensors)",
            Required = true,
        };
        format.AcceptOnlyFromAmong("onnx", "safetensors", "state-dict");
        var output = new Option<string?>("--out", "-o") { Description = "File to write (default: next to the model)" };
        var cmd = new Command("export", "Write a model as a static network (ONNX, one output per task, or safetensors) or a checkpoint's PyTorch state dict.") { model, format, output };
        cmd.SetAction(p => CommonOptions.Guard(_ =>
        {
            string path = p.GetValue(model)!, kind = p.GetValue(format)!;
            if (kind == "state-dict")
            {
                if (ModelFiles.IsStatic(path))
                    throw new Training.CheckpointException(path, "is a safetensors file (a static model or exported weights), not a training checkpoint; --format state-dict exports a training checkpoint's weights (give its .ckpt)");
                string file = CommonOptions.WithExtension(CommonOptions.OutputFile(p.GetValue(output) ?? Path.ChangeExtension(path, null) + ".state.safetensors", path),
                    ".safetensors", "a state dict (safetensors)");
                var (trained, input, meta) = ModelFiles.LoadCheckpoint(path);
                using (trained) StateDictExport.Save(file, trained, meta, input);
                AnsiConsole.MarkupLine($"[green]wrote[/] {Markup.Escape(file)} ({meta.Architecture} on {Markup.Escape(meta.Backbone)}: the state dict under PyTorch names, with the run's configuration as metadata)");
                return 0;
            }
            string target = CommonOptions.OutputFile(p.GetValue(output) ?? Path.ChangeExtension(path, null) + (kind == "onnx" ? ".onnx" : ".static.safetensors"), path);
            if (kind == "onnx") CommonOptions.WithExtension(target, ".onnx", "an ONNX model");
            else CommonOptions.WithExtension(target, ".safetensors", "a static model (safetensors)");
            using var graph = ModelFiles.LoadStatic(path);
            if (kind == "onnx") OnnxExporter.Export(graph, target);
            else StaticModelFile.Save(target, graph);
            AnsiConsole.MarkupLine($"[green]wrote[/] {Markup.Escape(target)} ({graph.Tasks.Count} task output{(graph.Tasks.Count == 1 ? "" : "s")}: {Markup.Escape(string.Join(", ", graph.Tasks.Names))})");
            return 0;
        }));
        return cmd;
    }

    private static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".npy"];

    /// <summary>
    /// The image files named: a folder stands for its image files (by name, not its subfolders). An argument that looks
    /// like an option is one the command does not have, not an image.
    /// </summary>
    internal static IReadOnlyList<string> ImageArguments(IEnumerable<string> arguments) => arguments.SelectMany(a =>
    {
        if (a.StartsWith("--", StringComparison.Ordinal) && !File.Exists(a))
            throw new ConfigException(a, "predict has no such option (its options: --json, --maps)");
        if (!Directory.Exists(a)) return [a];
        var inside = Directory.GetFiles(a).Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant())).Order(StringComparer.Ordinal).ToArray();
        return inside.Length > 0 ? inside : throw ConfigException.ForArgument("IMAGES", $"{a} is a folder without image files ({string.Join(", ", ImageExtensions)})");
    }).ToArray();

    public static Command Predict()
    {
        var model = new Argument<string>("model") { Description = "A static model file (.safetensors) or a checkpoint" };
        var images = new Argument<string[]>("images") { Description = "PNG, JPEG, BMP, GIF or WebP images, or .npy arrays, or folders of them", Arity = ArgumentArity.OneOrMore };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var maps = new Option<string?>("--maps")
        {
            Description = "A folder to write each dense task's map to, at the image's size: IMAGE.TASK.png for segmentation " +
                          "(the class of each pixel), saliency and edges (the probability × 255), IMAGE.TASK.npy for depth [H, W] and normals [3, H, W] (float32)",
        };
        var cmd = new Command("predict", "Predict every task for each image, in one forward pass per batch.") { model, images, json, maps };
        cmd.SetAction(p => CommonOptions.Guard(_ =>
        {
            var files = ImageArguments(p.GetValue(images)!);
            string? mapFolder = p.GetValue(maps);
            if (mapFolder is not null && File.Exists(mapFolder)) throw new ConfigException("--maps", $"{mapFolder} is a file; give a folder (it is created if missing)");
            using var predictor = new Predictor(ModelFiles.LoadStatic(p.GetValue(model)!));
            if (mapFolder is not null && !predictor.Tasks.Any(t => t.IsDense))
                throw new ConfigException("--maps", "the model has no dense task (segmentation, depth, normals, saliency, edges) to write a map of");
            var results = predictor.PredictFiles(files);
            var written = mapFolder is null ? new Dictionary<(int, string), string>() : MapFiles.Write(mapFolder, results);
            if (p.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(results.Select((r, i) => new
                {
                    image = r.Source,
                    error = r.Error,
                    note = r.Note,
                    tasks = r.Tasks?.ToDictionary(kv => kv.Key, kv => (object)(kv.Value switch
                    {
                        { Class: int c } => new { kind = kv.Value.Kind.ToString().ToLowerInvariant(), @class = c, probability = kv.Value.Values[c], probabilities = kv.Value.Values },
                        { Map: { } m } => new { kind = kv.Value.Kind.ToString().ToLowerInvariant(), shape = m.Shape, summary = m.Summary, map = written.GetValueOrDefault((i, kv.Key)) },
                        _ => (object)new { kind = kv.Value.Kind.ToString().ToLowerInvariant(), values = kv.Value.Values },
                    })),
                }), Indented));
            else
            {
                var t = new Table().AddColumn("image");
                foreach (var task in predictor.Tasks) t.AddColumn(Markup.Escape(task.Name));
                foreach (var r in results)
                {
                    var cells = new List<string> { Markup.Escape(Path.GetFileName(r.Source)) };
                    if (r.Tasks is null) cells.AddRange(predictor.Tasks.Select(_ => "[red]error[/]"));
                    else cells.AddRange(predictor.Tasks.Select(task => Markup.Escape(Describe(r.Tasks[task.Name]))));
                    t.AddRow(cells.ToArray());
                }
                AnsiConsole.Write(t);
                foreach (var r in results.Where(r => r.Error is not null)) Console.Error.WriteLine($"error: {r.Error}");
                foreach (var r in results.Where(r => r.Note is not null)) AnsiConsole.MarkupLine($"[grey]{Markup.Escape(r.Source)}: {Markup.Escape(r.Note!)}[/]");
                if (written.Count > 0) AnsiConsole.MarkupLine($"[grey]{written.Count} map{(written.Count == 1 ? "" : "s")} written to {Markup.Escape(mapFolder!)}[/]");
            }
            return results.Any(r => r.Error is not null) ? 1 : 0;
        }));
        return cmd;
    }

    private static string Describe(TaskPrediction p) => p switch
    {
        { Class: int c } => $"class {c} ({p.Values[c]:P1})",
        { Map: { } m } => m.Summary,
        _ => string.Join(" ", p.Values.Select(v => v.ToString("F3"))),
    };

    public static Command Cost()
    {
        var model = new Argument<string>("model")
        {
            Description = "A backbone name (its encoder with a 1000-class linear classifier), an architecture name (stl, mtl, interrogate, mtan, cross-stitch; with --backbone and --tasks), a run preset, a run config file, a checkpoint or a static model file",
        };
        var backbone = new Option<string>("--backbone") { Description = "Backbone of an architecture given by name", DefaultValueFactory = _ => "resnet18" };
        var taskCount = new Option<int>("--tasks") { Description = "Number of tasks (10-class classification) of an architecture given by name", DefaultValueFactory = _ => 2 };
        var inputSize = new Option<string?>("--input") { Description = "Input size HxW (default: the model's own, or 224x224 for a backbone or an architecture name)" };
        var channels = new Option<int>("--channels") { Description = "Input channels for a backbone or architecture given by name", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var cmd = new Command("cost", $"Parameters and MACs, total and per task. {CostCounter.Convention}.") { model, inputSize, channels, backbone, taskCount, json };
        cmd.SetAction(p => CommonOptions.Guard(_ =>
        {
            Runtime.NativeRuntime.EnsureLoaded();
            string name = p.GetValue(model)!;
            var size = ParseSize(p.GetValue(inputSize));
            var cost = DeployedCost.Of(name, size, p.GetValue(channels), p.GetValue(backbone)!, p.GetValue(taskCount));
            var (title, total, perTask) = (cost.Title, (cost.Macs, Params: cost.Parameters), cost.PerTask);
            if (p.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new { model = name, title, macs = total.Macs, parameters = total.Params, tasks = perTask.ToDictionary(kv => kv.Key, kv => new { macs = kv.Value.Macs, parameters = kv.Value.Parameters }), convention = CostCounter.Convention }, Indented));
                return 0;
            }
            var t = new Table { Title = new TableTitle(Markup.Escape(title)) }.AddColumn("").AddColumn("MACs").AddColumn("GMACs").AddColumn("parameters");
            t.AddRow("total", total.Macs.ToString("N0"), (total.Macs / 1e9).ToString("F3"), total.Params.ToString("N0"));
            foreach (var (task, c) in perTask) t.AddRow(Markup.Escape(task), c.Macs.ToString("N0"), (c.Macs / 1e9).ToString("F3"), c.Parameters.ToString("N0"));
            AnsiConsole.Write(t);
            AnsiConsole.MarkupLine($"[grey]{Markup.Escape(CostCounter.Convention)}. Per task: what serving that task alone needs.[/]");
            return 0;
        }));
        return cmd;
    }

    private static (int H, int W)? ParseSize(string? text)
    {
        if (text is null) return null;
        var parts = text.ToLowerInvariant().Split('x');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int h) || !int.TryParse(parts[1], out int w) || h <= 0 || w <= 0)
            throw new ConfigException("--input", $"'{text}' is not a size; write HxW with positive integers, e.g. 224x224");
        return (h, w);
    }
}
