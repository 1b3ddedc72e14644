using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Gating;
using InterroGate.Tasks;
using InterroGate.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Tests.Pruning;

/// <summary>The pruned network is the gated one: same outputs in evaluation mode, and the cost the gates predict.</summary>
[Collection("Torch")]
public sealed class PrunerTests
{
    public static readonly TaskSet Tasks = new([
        new TaskSpec("a", TaskKind.Classification, 5),
        new TaskSpec("b", TaskKind.Binary, 3),
        new TaskSpec("c", TaskKind.Regression, 2),
    ]);

    public enum Pattern { AllShared, AllSpecific, Random, OneSpecificRestShared }

    /// <summary>A gated model with random weights, BN statistics and β, and gates set to <paramref name="pattern"/>.</summary>
    public static InterroGateModel Model(string backbone, GatingMode mode, Pattern pattern, int size, long inChannels = 3, int seed = 0)
    {
        manual_seed(seed);
        // "name-os8": the backbone dilated to output stride 8 (DeepLab style).
        var spec = backbone == "resnet20" ? ResNetSpec.ResNet20(0.5)
            : backbone.EndsWith("-os8") ? BackboneCatalog.Spec(backbone[..^4], outputStride: 8) : BackboneCatalog.Spec(backbone);
        var model = new InterroGateModel(Tasks, spec, inChannels, (size, size), new InterroGateConfig { Gating = mode });
        RandomiseNorms(model);
        SetGates(model, pattern);
        return model;
    }

    /// <summary>Random β and gates set to <paramref name="pattern"/>.</summary>
    internal static void SetGates(InterroGateModel model, Pattern pattern)
    {
        using var _ = no_grad();
        foreach (var g in model.Encoder.GateLayers)
        {
            g.Beta?.copy_(randn_like(g.Beta) * 2);
            var alpha = pattern switch
            {
                Pattern.AllShared => full_like(g.Alpha, -1),
                Pattern.AllSpecific => full_like(g.Alpha, 1),
                Pattern.Random => randn_like(g.Alpha),
                _ => cat([full(1, g.Channels, 1f), full(g.Tasks - 1, g.Channels, -1f)]),
            };
            g.Alpha.copy_(alpha);
        }
    }

    /// <summary>Random BN statistics and affine parameters, so that folding BN is tested on more than the identity.</summary>
    internal static void RandomiseNorms(nn.Module model)
    {
        using var _ = no_grad();
        foreach (var (_, m) in model.named_modules())
        {
            if (m is LayerNorm ln)
            {
                ln.weight!.copy_(rand_like(ln.weight) + 0.5);
                ln.bias!.copy_(randn_like(ln.bias) * 0.1);
            }
            if (m is not BatchNorm2d bn) continue;
            bn.running_mean!.copy_(randn_like(bn.running_mean) * 0.1);
            bn.running_var!.copy_(rand_like(bn.running_var) + 0.5);
            bn.weight!.copy_(rand_like(bn.weight) + 0.5);
            bn.bias!.copy_(randn_like(bn.bias) * 0.1);
        }
    }

    private static double RelativeError(Tensor a, Tensor b) => (a - b).abs().max().item<float>() / Math.Max(b.abs().max().item<float>(), 1e-12);

    public static IEnumerable<object[]> Cases()
    {
        // Every backbone with every pattern; block gating on the two block types.
        foreach (var p in Enum.GetValues<Pattern>())
        {
            yield return ["resnet20", GatingMode.Conv, p, 16];
            yield return ["resnet20", GatingMode.Block, p, 16];
            yield return ["resnet18", GatingMode.Conv, p, 64];
            yield return ["resnet34", GatingMode.Conv, p, 32];
            yield return ["resnet50", GatingMode.Conv, p, 32];
        }
        yield return ["resnet18", GatingMode.Block, Pattern.Random, 64];
        yield return ["resnet18-os8", GatingMode.Conv, Pattern.Random, 32];
        yield return ["resnet50", GatingMode.Block, Pattern.Random, 32];
        yield return ["resnet50", GatingMode.Block, Pattern.OneSpecificRestShared, 32];
        // The ViT: linear units on tokens, the operations between them (layer norms, attention, residual sums), the
        // position embeddings resized to a 4×4 grid (trained at 8×8); block gating leaves q, k, v and fc1 ungated.
        foreach (var p in Enum.GetValues<Pattern>()) yield return ["vit_cpu_patch4_32", GatingMode.Conv, p, 16];
        yield return ["vit_cpu_patch4_32", GatingMode.Block, Pattern.Random, 16];
        yield return ["vit_cpu_patch4_32", GatingMode.Block, Pattern.OneSpecificRestShared, 16];
    }

    /// <summary>
    /// Prunes <paramref name="model"/> (in training mode) at <paramref name="size"/>² and checks that pruning is pure
    /// (the model unchanged and still training) and that the static network predicts every task as the gated model does.
    /// </summary>
    internal static PruneResult PruneAndCompare(InterroGateModel model, int size, TaskSet tasks)
    {
        var before = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var pruned = Pruner.Prune(model, new ImageInput(3, size, size));

        // Pure: the trained model is unchanged, and left in the mode it was in.
        Assert.True(model.training);
        foreach (var (k, v) in model.state_dict()) Assert.True(before[k].equal(v).all().item<bool>(), k);

        model.eval();
        using var net = new StaticNetwork(pruned.Graph);
        var x = randn(2, 3, size, size);
        using (no_grad())
        {
            var expected = model.call(x);
            var actual = net.call(x);
            foreach (var t in tasks) Assert.True(RelativeError(actual[t.Name], expected[t.Name]) <= 1e-4, $"{t.Name}: {RelativeError(actual[t.Name], expected[t.Name])}");
        }
        return pruned;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void The_pruned_network_computes_what_the_gated_one_does_at_the_cost_its_gates_predict(string backbone, GatingMode mode, Pattern pattern, int size)
    {
        var model = Model(backbone, mode, pattern, size);
        model.train();
        var pruned = PruneAndCompare(model, size, Tasks);

        // The counted cost of the pruned network is the cost the gates predicted.
        var (macs, parameters) = DeployedCost.OfModel(model, (3, size, size));
        Assert.Equal(macs, pruned.Report.MacsAfter);
        Assert.Equal(parameters, pruned.Report.ParametersAfter);
        Assert.True(pruned.Report.MacsAfter < pruned.Report.MacsBefore);
    }

    [Fact]
    public void Each_pattern_keeps_the_filters_the_rules_say()
    {
        var shared = Pruner.Prune(Model("resnet20", GatingMode.Conv, Pattern.AllShared, 16), new ImageInput(3, 16, 16));
        Assert.All(shared.Report.Layers, l => Assert.Equal(l.Channels, l.KeptPerBranch["shared"]));
        Assert.All(shared.Report.Layers, l => Assert.All(Tasks, t => Assert.Equal(0, l.KeptPerBranch[t.Name])));
        Assert.DoesNotContain(shared.Graph.Nodes, n => n.Op is StaticOp.Mix or StaticOp.Gather); // exactly the MTL network

        var specific = Pruner.Prune(Model("resnet20", GatingMode.Conv, Pattern.AllSpecific, 16), new ImageInput(3, 16, 16));
        Assert.All(specific.Report.Layers, l => Assert.Equal(0, l.KeptPerBranch["shared"]));
        Assert.DoesNotContain(specific.Graph.Nodes, n => n.Name.StartsWith("shared.") || n.Op == StaticOp.Mix);
        // Each task's prediction depends on its own branch only: T separate networks (STL).
        var cones = specific.Graph.Cones();
        foreach (var t in Tasks)
            Assert.All(cones[t.Name].Where(n => n > 0), n => Assert.Contains($".{t.Name}.", "." + specific.Graph.Nodes[n].Name));

        var one = Pruner.Prune(Model("resnet20", GatingMode.Conv, Pattern.OneSpecificRestShared, 16), new ImageInput(3, 16, 16));
        Assert.All(one.Report.Layers, l => Assert.Equal((l.Channels, 0L, 0L, l.Channels), (l.KeptPerBranch["a"], l.KeptPerBranch["b"], l.KeptPerBranch["c"], l.KeptPerBranch["shared"])));
    }

    [Fact]
    public void The_stem_pools_each_branch_before_its_gather_and_mixes_only_channels_a_task_reads_from_its_own_copy()
    {
        var model = Model("resnet18", GatingMode.Conv, Pattern.Random, 32);
        var graph = Pruner.Prune(model, new ImageInput(3, 32, 32)).Graph;
        var nodes = graph.Nodes;
        foreach (var t in Tasks)
        {
            var gather = nodes.Single(n => n.Name == $"tasks.{t.Name}.conv1.gated");
            Assert.All(gather.Inputs, i => Assert.Equal(StaticOp.MaxPool, nodes[i].Op));
        }
        // Each gated layer's mix: T weights for each channel on which some task's gate is 1.
        var gates = model.HardGates();
        var stemMix = nodes.Single(n => n.Name == "mix.conv1");
        long mixed = Enumerable.Range(0, gates[0][0].Length).Count(c => gates[0].Any(task => task[c]));
        Assert.True(mixed < gates[0][0].Length); // the random pattern leaves some channels shared by all tasks
        Assert.Equal(new long[] { Tasks.Count, mixed }, graph.Tensor(stemMix, "weight").shape);
    }

    [Fact]
    public void The_profile_times_every_node_in_graph_order_and_changes_nothing()
    {
        var model = Model("resnet20", GatingMode.Conv, Pattern.Random, 16);
        using var net = new StaticNetwork(Pruner.Prune(model, new ImageInput(3, 16, 16)).Graph);
        var x = randn(2, 3, 16, 16);
        using var _ = no_grad();
        var before = net.call(x);
        var profile = net.Profile(x);
        Assert.Equal(net.Graph.Nodes, profile.Select(p => p.Node));
        Assert.All(profile, p => Assert.True(double.IsFinite(p.Ms) && p.Ms >= 0, $"{p.Node.Name}: {p.Ms} ms"));
        var after = net.call(x);
        foreach (var t in Tasks) Assert.True(before[t.Name].equal(after[t.Name]).all().item<bool>(), t.Name);
    }

    [Fact]
    public void A_static_network_builds_each_gather_plan_once_and_not_at_every_call()
    {
        var model = Model("resnet20", GatingMode.Conv, Pattern.Random, 32);
        model.eval();
        using var net = new StaticNetwork(Pruner.Prune(model, new ImageInput(3, 32, 32)).Graph);
        int gathers = net.Graph.Nodes.Count(n => n.Op == StaticOp.Gather && n.Inputs.Length > 1);
        Assert.True(gathers > 0, "a random pattern should gather from several sources");
        using var _ = no_grad();
        var x = randn(2, 3, 32, 32);
        var first = net.call(x);
        var second = net.call(x);
        Assert.Equal(gathers, net.GatherPlansBuilt);
        foreach (var t in Tasks) Assert.Equal(0, (first[t.Name] - second[t.Name]).abs().max().item<float>());
    }

    [Theory]
    [InlineData("resnet20")]
    [InlineData("vit_cpu_patch4_32")]
    public void A_static_network_converted_after_construction_uses_its_converted_tensors(string backbone)
    {
        // Module.to replaces registered parameters and buffers with new tensors (and disposes the old ones), as a
        // move to the GPU does; the mix weights, gather indices and token tensors must follow.
        int size = backbone.StartsWith("vit") ? 16 : 32;
        var model = Model(backbone, GatingMode.Conv, Pattern.Random, size);
        model.eval();
        using var net = new StaticNetwork(Pruner.Prune(model, new ImageInput(3, size, size)).Graph);
        var x = randn(2, 3, size, size);
        using var _ = no_grad();
        var expected = net.call(x);
        net.to(float64);
        var actual = net.call(x.to(float64));
        foreach (var t in Tasks)
        {
            Assert.Equal(float64, actual[t.Name].dtype);
            Assert.True(RelativeError(actual[t.Name].to(float32), expected[t.Name]) <= 1e-5, t.Name);
        }
    }

    [Fact]
    public void One_task_prunes_to_its_own_network_at_the_cost_its_gates_predict()
    {
        // With one task the shared mix is that task's own output: no mix weights, in the network or in the prediction.
        var one = new TaskSet([new TaskSpec("a", TaskKind.Classification, 5)]);
        manual_seed(2);
        var model = new InterroGateModel(one, ResNetSpec.ResNet20(0.5), 3, (16, 16), new InterroGateConfig());
        RandomiseNorms(model);
        SetGates(model, Pattern.Random);
        var pruned = PruneAndCompare(model, 16, one);
        Assert.DoesNotContain(pruned.Graph.Nodes, n => n.Op == StaticOp.Mix);
        Assert.Equal(pruned.Graph.Tensors.Values.Where(t => t.is_floating_point()).Sum(t => t.numel()), pruned.Report.ParametersAfter);
        Assert.Equal(DeployedCost.OfModel(model, (3, 16, 16)), (pruned.Report.MacsAfter, pruned.Report.ParametersAfter));
    }

    [Theory]
    [InlineData("resnet20")]
    [InlineData("vit_cpu_patch4_32")]
    public void A_model_in_float64_prunes_to_a_float32_network_that_computes_what_it_does_and_exports(string backbone)
    {
        int size = backbone.StartsWith("vit") ? 16 : 32;
        var model = Model(backbone, GatingMode.Conv, Pattern.Random, size);
        model.to(float64);
        var graph = Pruner.Prune(model, new ImageInput(3, size, size)).Graph;
        Assert.All(graph.Tensors, kv => Assert.True(kv.Value.dtype is ScalarType.Float32 or ScalarType.Int64, $"{kv.Key}: {kv.Value.dtype}"));
        model.eval();
        using var net = new StaticNetwork(graph);
        var x = randn(2, 3, size, size);
        using (no_grad())
        {
            var expected = model.call(x.to(float64));
            var actual = net.call(x);
            foreach (var t in Tasks) Assert.True(RelativeError(actual[t.Name], expected[t.Name].to(float32)) <= 1e-4, t.Name);
        }
        string onnx = Path.Combine(Path.GetTempPath(), $"float64-{backbone}-{Guid.NewGuid():N}.onnx");
        try
        {
            InterroGate.Export.OnnxExporter.Export(graph, onnx);
            Assert.True(new FileInfo(onnx).Length > 0);
        }
        finally { File.Delete(onnx); }
    }

    [Fact]
    public void A_graph_whose_input_or_task_widths_disagree_with_its_nodes_is_refused_by_name()
    {
        using var graph = Pruner.Prune(Model("resnet20", GatingMode.Conv, Pattern.Random, 16), new ImageInput(3, 16, 16)).Graph;
        Tensor[] Copies() => graph.Tensors.Values.Select(t => t.alias().DetachFromDisposeScope()).ToArray();
        var e = Assert.Throws<InvalidDataException>(() => graph.WithInput(new ImageInput(1, 16, 16)));
        Assert.Contains("the input node has 3 channels and the input 1", e.Message);
        // Task "a" relabelled with 4 classes where its output node gives 5.
        var relabelled = new TaskSet(graph.Tasks.Select(t => t.Name == "a" ? t with { Outputs = 4 } : t));
        var copies = graph.Tensors.Keys.Zip(Copies()).ToDictionary(p => p.First, p => p.Second);
        e = Assert.Throws<InvalidDataException>(() => new StaticGraph(graph.Nodes, copies, graph.Outputs, relabelled, graph.Input));
        Assert.Contains("task 'a' (Classification) has 4 outputs", e.Message);
        foreach (var t in copies.Values) t.Dispose();
    }

    [Fact]
    public void The_structure_survives_a_round_trip_through_JSON()
    {
        var pruned = Pruner.Prune(Model("resnet18", GatingMode.Conv, Pattern.Random, 32), new ImageInput(3, 32, 32, 0.2, 0.3)).Graph;
        var again = StaticGraph.FromStructure(pruned.StructureJson(), pruned.Tensors);
        Assert.Equal(pruned.Nodes.Select(n => (n.Name, n.Op, string.Join(",", n.Inputs), n.Channels, n.Stride, n.Padding)),
            again.Nodes.Select(n => (n.Name, n.Op, string.Join(",", n.Inputs), n.Channels, n.Stride, n.Padding)));
        Assert.Equal(pruned.Input, again.Input);
        Assert.Equal(pruned.Tasks.Select(t => t.Kind), again.Tasks.Select(t => t.Kind));
    }
}
