// The cost of a network as it would be deployed (BN folded; InterroGate pruned by its gates), total and per task.
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Heads;
using InterroGate.Layers;
using InterroGate.Pruning;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Analysis;

/// <summary>A network's MACs and parameters, and per task what serving that task alone needs (empty where not split).</summary>
public sealed record CostSummary(string Title, long Macs, long Parameters, IReadOnlyDictionary<string, (long Macs, long Parameters)> PerTask);

/// <summary>Costs as the comparison tables and `interrogate cost` report them (convention: <see cref="CostCounter.Convention"/>).</summary>
public static class DeployedCost
{
    /// <summary>How the comparison tables count: <see cref="CostCounter.Convention"/>, of the network as deployed.</summary>
    public const string Convention = CostCounter.Convention +
        ", of each network as deployed (batch norm folded into the convolutions; InterroGate pruned by its gates)";

    /// <summary>
    /// MACs and parameters of the network that would be deployed (BN folded into the convolutions; see
    /// <see cref="Pruning.StaticConversion"/>): InterroGate's as pruned by its gates.
    /// </summary>
    public static (long Macs, long Parameters) OfModel(MultiTaskModel model, (int Channels, int Height, int Width) image)
    {
        ArgumentNullException.ThrowIfNull(model);
        new Data.ImageInput(image.Channels, image.Height, image.Width).Validate(nameof(image));
        if (model is not InterroGateModel ig)
        {
            // The input on the model's device and in its dtype (a model just trained on a GPU is still there).
            var first = model.parameters().First();
            var (device, dtype) = (first.device, first.dtype);
            var report = CostCounter.Count(model, x => model.call(x.to(dtype, device)), [1, image.Channels, image.Height, image.Width]);
            return (report.Macs, report.Params - FoldedAway(model.modules()));
        }
        var heads = ig.HeadCost();
        var pruned = ig.PredictPrunedEncoderCost();
        return (pruned.Macs + heads.Macs, pruned.Parameters + heads.Parameters);
    }

    /// <summary>
    /// Parameters that folding each batch norm of <paramref name="modules"/> (in registration order) into the convolution
    /// before it removes: the BN's scale and shift become that convolution's bias (C fewer), and a bias the convolution
    /// had merges into it (C more; the HRNet head's first convolution has one).
    /// </summary>
    public static long FoldedAway(IEnumerable<TorchSharp.torch.nn.Module> modules)
    {
        long removed = 0;
        TorchSharp.torch.nn.Module? previous = null;
        foreach (var m in modules)
        {
            if (m is TorchSharp.Modules.BatchNorm2d bn)
            {
                removed += bn.weight!.numel();
                if (previous is TorchSharp.Modules.Conv2d { bias: { } bias }) removed += bias.numel();
            }
            if (!m.children().Any()) previous = m; // the layer the next one reads, in a chain
        }
        return removed;
    }

    /// <summary>The largest input a cost is counted on (a forward pass at batch 1 runs).</summary>
    public const long MaxPixels = 4096L * 4096;

    /// <summary>
    /// The cost of <paramref name="name"/>: an architecture name (built on <paramref name="backboneName"/> for
    /// <paramref name="taskCount"/> 10-class tasks, as initialised), a backbone name (its encoder with a 1000-class linear
    /// classifier), a static model file or checkpoint (as deployed: pruned or BN-folded), or a run preset or config file (a
    /// freshly initialised model on its data set's input). <paramref name="size"/> overrides the input's height and width.
    /// </summary>
    public static CostSummary Of(string name, (int H, int W)? size, int channels, string backboneName, int taskCount)
    {
        ConfigException.Require(channels is >= 1 and <= 4096, "--channels", channels, "1 to 4096 input channels");
        if (size is var (sh, sw))
            ConfigException.Require((long)sh * sw <= MaxPixels, "--input", $"{sh}x{sw}", $"at most {MaxPixels:N0} pixels (4096x4096): MACs are counted on a real forward pass");
        // An architecture by name: built on --backbone for --tasks classification tasks, as initialised.
        if (Factory.Architectures.ContainsKey(name) && !File.Exists(name))
        {
            if (taskCount < 1) throw new ConfigException("--tasks", $"{taskCount}; at least 1");
            var (h, w) = size ?? (224, 224);
            var config = new RunConfig
            {
                Name = name,
                Backbone = new BackboneConfig { Name = backboneName },
                Architecture = Registry<ArchitectureConfig>.Default(name),
            };
            var tasks = new TaskSet(Enumerable.Range(1, taskCount).Select(i => new TaskSpec($"task{i}", TaskKind.Classification, 10)));
            using var built = Factory.CreateModel(config, tasks, (channels, h, w));
            built.eval();
            string named = $"{name} on {backboneName}, {taskCount} tasks (as initialised; BN folded)";
            if (!StaticConversion.Supports(built)) return CountBuilt(built, (channels, h, w), named);
            using var g = StaticConversion.ToStatic(built, new ImageInput(channels, h, w)).Graph;
            return OfGraph(g, named);
        }
        // A backbone by name: its encoder + a 1000-class linear classifier (the torchvision ResNets as published).
        if (BackboneCatalog.Descriptions.ContainsKey(name) && !File.Exists(name))
        {
            var (h, w) = size ?? (224, 224);
            var spec = BackboneCatalog.Spec(name);
            if (spec is ViTSpec vit && (h % vit.PatchSize != 0 || w % vit.PatchSize != 0))
                throw new ConfigException("--input", $"{h}x{w} for {name}; a ViT with patches of {vit.PatchSize} needs a height and width that are multiples of {vit.PatchSize}");
            using var net = new Chain(spec.CreateEncoder(channels), new ClassificationHead(spec.OutChannels, 1000));
            var r = CostCounter.Count(net, x => net.call(x), [1, channels, h, w]);
            return new CostSummary($"{name} ({channels}×{h}×{w}, with a 1000-class linear classifier)", r.Macs, r.Params, new Dictionary<string, (long, long)>());
        }
        StaticGraph graph;
        string title;
        if (File.Exists(name) && (ModelFiles.IsStatic(name) || !name.EndsWith(".json", StringComparison.OrdinalIgnoreCase)))
        {
            if (ModelFiles.IsStatic(name))
            {
                graph = StaticModelFile.Load(name);
                title = $"{name} (static network)";
            }
            else
            {
                var (model, input, _) = ModelFiles.LoadCheckpoint(name);
                using (model)
                {
                    model.eval();
                    if (!StaticConversion.Supports(model))
                        return CountBuilt(model, size is { } z ? (input.Channels, z.H, z.W) : (input.Channels, input.Height, input.Width),
                            $"{name} ({model.Architecture}, as trained; no static form)");
                    graph = StaticConversion.ToStatic(model, input).Graph;
                }
                title = $"{name} (deployed: pruned or BN-folded)";
            }
        }
        else
        {
            // A run preset or config file: a freshly initialised model on its data set's input.
            if (!File.Exists(name) && !Presets.RunNames.Contains(name))
                throw ConfigException.ForArgument("CONFIG", $"'{name}' is none of what cost counts: an architecture ({string.Join(", ", Factory.Architectures.Keys)}), " +
                                                    $"a backbone ({string.Join(", ", BackboneCatalog.Descriptions.Keys)}), a checkpoint or static model file, " +
                                                    "a run configuration file, or a run preset (`interrogate list` names them all; e.g. multifashion-quick/interrogate)");
            var config = Presets.LoadRun(name, []);
            var data = DataCatalog.Open(config.Data);
            var tasks = Factory.ResolveTasks(data.Train.Tasks, config.Tasks);
            using var model = Factory.CreateModel(config, tasks, data.Train.ImageShape);
            model.eval();
            title = $"{name} ({config.Architecture.Type}, {config.Backbone.Name}, as initialised)";
            if (!StaticConversion.Supports(model))
            {
                var shape = data.Train.ImageShape;
                return CountBuilt(model, size is { } z ? (shape.Channels, z.H, z.W) : shape, title);
            }
            graph = StaticConversion.ToStatic(model, data.Train.Input).Graph;
        }
        using (graph)
        {
            if (size is not { } s) return OfGraph(graph, title);
            using var resized = graph.WithInput(graph.Input with { Height = s.H, Width = s.W });
            return OfGraph(resized, title);
        }
    }

    /// <summary>
    /// MTAN and cross-stitch have no static form (their attention and cross-stitch units mix the tasks at every stage),
    /// nor do STL and MTL on a backbone without a plan: they are counted as built, BN folded into the
    /// convolutions as for every other row; no per-task split.
    /// </summary>
    private static CostSummary CountBuilt(MultiTaskModel model,
        (int Channels, int Height, int Width) image, string title)
    {
        var (macs, parameters) = OfModel(model, image);
        return new CostSummary(title, macs, parameters, new Dictionary<string, (long, long)>());
    }

    /// <summary>A static network's cost, total and per task (the nodes each task's prediction depends on).</summary>
    public static CostSummary OfGraph(StaticGraph graph, string title)
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
        return new CostSummary($"{title} at {input.Channels}×{input.Height}×{input.Width}", report.Macs, report.Params, perTask);
    }
}
