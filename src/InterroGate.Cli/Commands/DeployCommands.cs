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
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    public static Command Prune()
    {
        var checkpoint = new Argument<string>("checkpoint") { Description = "An InterroGate checkpoint written by train or compare" };
        var output = new Option<string?>("--out", "-o") { Description = "Static model file to write (default: <checkpoint>.pruned.safetensors)" };
        var json = new Option<bool>("--json") { Description = "Print the prune report as JSON" };
        var cmd = new Command("prune", "Make the gates constant and remove every filter nobody reads: a static network for all tasks.") { checkpoint, output, json };
        cmd.SetAction(p => CommonOptions.Guard(_ =>
        {
            string path = p.GetValue(checkpoint)!;
            var (model, input, meta) = ModelFiles.LoadCheckpoint(path);
            if (model is not InterroGateModel ig)
                throw new CheckpointException(path, $"holds a {meta.Architecture} model; only InterroGate models are pruned (use `interrogate export` to turn STL or MTL models into static networks).");
            var result = Pruner.Prune(ig, input);
            string target = p.GetValue(output) ?? Path.ChangeExtension(path, null) + ".pruned.safetensors";
            StaticModelFile.Save(target, result.Graph);
            // A model trained to a budget: the target beside what the pruned network measures.
            var budget = ig.Budget is { } b
                ? new
                {
                    kind = b.Target.Kind.ToString().ToLowerInvariant(),
                    target = b.TargetCost(),
                    achieved = (double)(b.Target.Kind == Gating.BudgetKind.Parameters ? result.Report.ParametersAfter : result.Report.MacsAfter),
                }
                : null;
            if (p.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new { checkpoint = path, output = target, report = result.Report,
                    budget = budget is null ? null : new { budget.kind, budget.target, budget.achieved, gap = (budget.achieved - budget.target) / budget.target } }, Indented));
                return 0;
            }
            Console.WriteLine(result.Report.ToMarkdown([.. ig.Tasks.Names, "shared"]));
            if (budget is not null)
                Console.WriteLine($"budget: target {budget.target / 1e6:F3} M {(budget.kind == "parameters" ? "parameters" : "MACs")}, pruned network {budget.achieved / 1e6:F3} M " +
                                  $"(gap {(budget.achieved - budget.target) / budget.target:+0.0%;-0.0%})");
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
                    throw new Training.CheckpointException(path, "is a static model; --format state-dict exports a training checkpoint's weights (give its .ckpt)");
                var (trained, input, meta) = ModelFiles.LoadCheckpoint(path);
                string file = p.GetValue(output) ?? Path.ChangeExtension(path, null) + ".state.safetensors";
                using (trained) StateDictExport.Save(file, trained, meta, input);
                AnsiConsole.MarkupLine($"[green]wrote[/] {Markup.Escape(file)} ({meta.Architecture} on {Markup.Escape(meta.Backbone)}: the state dict under PyTorch names, with the run's configuration as metadata)");
                return 0;
            }
            var graph = ModelFiles.LoadStatic(path);
            string target = p.GetValue(output) ?? Path.ChangeExtension(path, null) + (kind == "onnx" ? ".onnx" : ".static.safetensors");
            if (kind == "onnx") OnnxExporter.Export(graph, target);
            else StaticModelFile.Save(target, graph);
            AnsiConsole.MarkupLine($"[green]wrote[/] {Markup.Escape(target)} ({graph.Tasks.Count} task outputs: {Markup.Escape(string.Join(", ", graph.Tasks.Names))})");
            return 0;
        }));
        return cmd;
    }

    public static Command Predict()
    {
        var model = new Argument<string>("model") { Description = "A static model file (.safetensors) or a checkpoint" };
        var images = new Argument<string[]>("images") { Description = "PNG, JPEG, BMP, GIF or WebP images, or .npy arrays", Arity = ArgumentArity.OneOrMore };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var cmd = new Command("predict", "Predict every task for each image, in one forward pass per batch.") { model, images, json };
        cmd.SetAction(p => CommonOptions.Guard(_ =>
        {
            using var predictor = new Predictor(ModelFiles.LoadStatic(p.GetValue(model)!));
            var results = predictor.PredictFiles(p.GetValue(images)!);
            if (p.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(results.Select(r => new
                {
                    image = r.Source,
                    error = r.Error,
                    note = r.Note,
                    tasks = r.Tasks?.ToDictionary(kv => kv.Key, kv => (object)(kv.Value.Class is int c
                        ? new { kind = kv.Value.Kind.ToString().ToLowerInvariant(), @class = c, probability = kv.Value.Values[c], probabilities = kv.Value.Values }
                        : new { kind = kv.Value.Kind.ToString().ToLowerInvariant(), values = kv.Value.Values })),
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
            }
            return results.Any(r => r.Error is not null) ? 1 : 0;
        }));
        return cmd;
    }

    private static string Describe(TaskPrediction p) => p.Class is int c
        ? $"class {c} ({p.Values[c]:P1})"
        : string.Join(" ", p.Values.Select(v => v.ToString("F3")));

    public static Command Cost()
    {
        var model = new Argument<string>("model")
        {
            Description = "A backbone name (its encoder with a 1000-class linear classifier), an architecture name (stl, mtl, interrogate; with --backbone and --tasks), a run preset, a run config file, a checkpoint or a static model file",
        };
        var backbone = new Option<string>("--backbone") { Description = "Backbone of an architecture given by name", DefaultValueFactory = _ => "resnet18" };
        var taskCount = new Option<int>("--tasks") { Description = "Number of tasks (10-class classification) of an architecture given by name", DefaultValueFactory = _ => 2 };
        var inputSize = new Option<string?>("--input") { Description = "Input size HxW (default: the model's own, or 224x224 for a backbone)" };
        var channels = new Option<int>("--channels") { Description = "Input channels for a backbone name", DefaultValueFactory = _ => 3 };
        var json = new Option<bool>("--json") { Description = "Print JSON" };
        var cmd = new Command("cost", $"Parameters and MACs, total and per task. {CostCounter.Convention}.") { model, inputSize, channels, backbone, taskCount, json };
        cmd.SetAction(p => CommonOptions.Guard(_ =>
        {
            Runtime.NativeRuntime.EnsureLoaded();
            string name = p.GetValue(model)!;
            var size = ParseSize(p.GetValue(inputSize));
            var (title, total, perTask) = Measure(name, size, p.GetValue(channels), p.GetValue(backbone)!, p.GetValue(taskCount));
            if (p.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new { model = name, title, macs = total.Macs, parameters = total.Params, tasks = perTask.ToDictionary(kv => kv.Key, kv => new { macs = kv.Value.Macs, parameters = kv.Value.Params }), convention = CostCounter.Convention }, Indented));
                return 0;
            }
            var t = new Table { Title = new TableTitle(Markup.Escape(title)) }.AddColumn("").AddColumn("MACs").AddColumn("GMACs").AddColumn("parameters");
            t.AddRow("total", total.Macs.ToString("N0"), (total.Macs / 1e9).ToString("F3"), total.Params.ToString("N0"));
            foreach (var (task, c) in perTask) t.AddRow(Markup.Escape(task), c.Macs.ToString("N0"), (c.Macs / 1e9).ToString("F3"), c.Params.ToString("N0"));
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

    private static (string Title, (long Macs, long Params) Total, IReadOnlyDictionary<string, (long Macs, long Params)> PerTask) Measure(string name, (int H, int W)? size, int channels, string backboneName, int taskCount)
    {
        // An architecture by name: built on --backbone for --tasks classification tasks, as initialised.
        if (Factory.Architectures.ContainsKey(name) && !File.Exists(name))
        {
            if (taskCount < 1) throw new ConfigException("--tasks", $"{taskCount}; at least 1");
            var (h, w) = size ?? (224, 224);
            var config = new RunConfig
            {
                Name = name,
                Backbone = new BackboneConfig { Name = backboneName },
                Architecture = name switch
                {
                    "stl" => new SingleTaskConfig(),
                    "mtl" => new HardSharingConfig(),
                    "interrogate" => new InterroGateConfig(),
                    "mtan" => new MtanConfig(),
                    "cross-stitch" => new CrossStitchConfig(),
                    _ => throw new ConfigException("model", $"'{name}' is an architecture `cost` cannot build; valid: {string.Join(", ", Factory.Architectures.Keys)}"),
                },
            };
            var tasks = new Tasks.TaskSet(Enumerable.Range(1, taskCount).Select(i => new Tasks.TaskSpec($"task{i}", Tasks.TaskKind.Classification, 10)));
            using var built = Factory.CreateModel(config, tasks, (channels, h, w));
            built.eval();
            string named = $"{name} on {backboneName}, {taskCount} tasks (as initialised; BN folded)";
            if (built is Mtan or CrossStitch) return CountBuilt(built, (channels, h, w), named);
            var g = StaticConversion.ToStatic(built, new Data.ImageInput(channels, h, w)).Graph;
            return CountStatic(g, named);
        }
        // A backbone by name: its encoder + a 1000-class linear classifier (the torchvision ResNets as published).
        if (BackboneCatalog.Descriptions.ContainsKey(name) && !File.Exists(name))
        {
            var (h, w) = size ?? (224, 224);
            var spec = BackboneCatalog.Spec(name);
            using var net = nn.Sequential(spec.CreateEncoder(channels), new ClassificationHead(spec.OutChannels, 1000));
            var r = CostCounter.Count(net, x => net.call(x), [1, channels, h, w]);
            return ($"{name} ({channels}×{h}×{w}, with a 1000-class linear classifier)", (r.Macs, r.Params), new Dictionary<string, (long, long)>());
        }
        StaticGraph graph;
        string title;
        if (File.Exists(name) && (ModelFiles.IsStatic(name) || !name.EndsWith(".json", StringComparison.OrdinalIgnoreCase)))
        {
            graph = ModelFiles.LoadStatic(name);
            title = ModelFiles.IsStatic(name) ? $"{name} (static network)" : $"{name} (deployed: pruned or BN-folded)";
        }
        else
        {
            // A run preset or config file: a freshly initialised model on its data set's input.
            var config = Presets.LoadRun(name, []);
            var data = DataCatalog.Open(config.Data);
            var tasks = Factory.ResolveTasks(data.Train.Tasks, config.Tasks);
            using var model = Factory.CreateModel(config, tasks, data.Train.ImageShape);
            model.eval();
            title = $"{name} ({config.Architecture.Type}, {config.Backbone.Name}, as initialised)";
            if (model is Mtan or CrossStitch)
            {
                var shape = data.Train.ImageShape;
                return CountBuilt(model, size is { } z ? (shape.Channels, z.H, z.W) : shape, title);
            }
            graph = StaticConversion.ToStatic(model, data.Train.Input).Graph;
        }
        if (size is { } s) graph = new StaticGraph(graph.Nodes, graph.Tensors, graph.Outputs, graph.Tasks, graph.Input with { Height = s.H, Width = s.W });
        return CountStatic(graph, title);
    }

    /// <summary>
    /// MTAN and cross-stitch have no static form (their attention and cross-stitch units mix the tasks at every stage):
    /// they are counted as built, BN folded into the convolutions as for every other row; no per-task split.
    /// </summary>
    private static (string, (long, long), IReadOnlyDictionary<string, (long Macs, long Params)>) CountBuilt(MultiTaskModel model,
        (int Channels, int Height, int Width) image, string title)
    {
        var (macs, parameters) = ComparisonRunner.Cost(model, image);
        return (title, (macs, parameters), new Dictionary<string, (long, long)>());
    }

    private static (string, (long, long), IReadOnlyDictionary<string, (long Macs, long Params)>) CountStatic(StaticGraph graph, string title)
    {
        using var static_ = new StaticNetwork(graph);
        var input = graph.Input;
        var report = CostCounter.Count(static_, x => static_.call(x), [1, input.Channels, input.Height, input.Width]);
        // Per task: the layers its prediction depends on.
        var cones = graph.Cones();
        var byModule = report.Layers.ToDictionary(l => l.Name, l => l);
        var perTask = new Dictionary<string, (long, long)>();
        foreach (var (task, cone) in cones)
        {
            var layers = cone.Select(n => graph.Nodes[n].Name.Replace('.', '_')).Where(byModule.ContainsKey).Select(k => byModule[k]).ToArray();
            long mixParams = cone.Where(n => graph.Nodes[n].Op == StaticOp.Mix).Sum(n => graph.Tensor(graph.Nodes[n], "weight").numel());
            perTask[task] = (layers.Sum(l => l.Macs), layers.Sum(l => l.Parameters) + mixParams);
        }
        return ($"{title} at {input.Channels}×{input.Height}×{input.Width}", (report.Macs, report.Params), perTask);
    }
}
