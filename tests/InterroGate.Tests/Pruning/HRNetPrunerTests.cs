using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Gating;
using InterroGate.Pruning;
using InterroGate.Heads;
using InterroGate.Tasks;
using InterroGate.Tests.Gating;
using InterroGate.Training;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace InterroGate.Tests.Pruning;

/// <summary>The pruned gated HRNet is the gated one: same outputs in evaluation mode, the cost its gates predict, STL and MTL at the ends.</summary>
[Collection("Torch")]
public sealed class HRNetPrunerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-hrnet-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>tiny: 3 branches; tiny4: 4 branches (a three-step fuse path); small: HRNetV2-W18-Small-v2.</summary>
    private static HRNetSpec Spec(string name) => name switch
    {
        "tiny" => GatedHRNetTests.Tiny,
        "tiny4" => new HRNetSpec("tiny4", 4, 1, [1, 1, 1], 1),
        _ => HRNetSpec.W18SmallV2(),
    };

    /// <summary>A gated HRNet model with random weights, BN statistics and β, and gates set to <paramref name="pattern"/>.</summary>
    private static InterroGateModel Model(string spec, PrunerTests.Pattern pattern, int size, int seed = 0, GatingMode gating = GatingMode.Conv)
    {
        manual_seed(seed);
        var model = new InterroGateModel(PrunerTests.Tasks, Spec(spec), 3, (size, size), new InterroGateConfig { Gating = gating });
        PrunerTests.RandomiseNorms(model);
        PrunerTests.SetGates(model, pattern);
        return model;
    }

    private static double RelativeError(Tensor a, Tensor b) => (a - b).abs().max().item<float>() / Math.Max(b.abs().max().item<float>(), 1e-12f);

    public static IEnumerable<object[]> Cases()
    {
        foreach (var p in Enum.GetValues<PrunerTests.Pattern>()) yield return ["tiny", p, 32];
        yield return ["tiny", PrunerTests.Pattern.Random, 37]; // odd sizes: every branch rounds up, upsampling to 10×10, 5×5
        yield return ["tiny4", PrunerTests.Pattern.Random, 32];
        foreach (var p in Enum.GetValues<PrunerTests.Pattern>()) yield return ["tiny", p, 32, GatingMode.Block]; // gates only where blocks end
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void The_pruned_network_computes_what_the_gated_one_does_at_the_cost_its_gates_predict(string spec, PrunerTests.Pattern pattern, int size,
        GatingMode gating = GatingMode.Conv)
    {
        var model = Model(spec, pattern, size, gating: gating);
        model.train();
        var pruned = PrunerTests.PruneAndCompare(model, size, PrunerTests.Tasks);

        var (macs, parameters) = DeployedCost.OfModel(model, (3, size, size));
        Assert.Equal(macs, pruned.Report.MacsAfter);
        Assert.Equal(parameters, pruned.Report.ParametersAfter);
        Assert.True(pruned.Report.MacsAfter < pruned.Report.MacsBefore);
        Assert.Equal(model.Encoder.Units.Count, pruned.Report.Layers.Count);
    }

    [Fact]
    public void Dense_tasks_prune_at_a_size_that_is_not_square()
    {
        // Dense heads on the concatenated stride-4 features, their predictions upsampled to the input's 24×40.
        var tasks = new TaskSet([
            new TaskSpec("semseg", TaskKind.Segmentation, 5),
            new TaskSpec("depth", TaskKind.Depth, 1),
            new TaskSpec("normals", TaskKind.Normals, 3),
        ]);
        manual_seed(4);
        var model = new InterroGateModel(tasks, GatedHRNetTests.Tiny, 3, (24, 40), new InterroGateConfig(), new HeadConfig { Dense = "aspp", Channels = 8 });
        PrunerTests.RandomiseNorms(model);
        PrunerTests.SetGates(model, PrunerTests.Pattern.Random);
        var pruned = Pruner.Prune(model, new ImageInput(3, 24, 40));
        model.eval();
        using var net = new StaticNetwork(pruned.Graph);
        var x = randn(2, 3, 24, 40);
        using (no_grad())
        {
            var expected = model.call(x);
            var actual = net.call(x);
            foreach (var t in tasks)
            {
                Assert.Equal(new long[] { 2, t.Outputs, 24, 40 }, actual[t.Name].shape);
                Assert.True(RelativeError(actual[t.Name], expected[t.Name]) <= 1e-4, $"{t.Name}: {RelativeError(actual[t.Name], expected[t.Name])}");
            }
        }
        Assert.Equal(DeployedCost.OfModel(model, (3, 24, 40)), (pruned.Report.MacsAfter, pruned.Report.ParametersAfter));
    }

    [Fact]
    public void With_the_HRNet_head_every_architecture_counts_the_parameters_its_static_network_has()
    {
        // The head's first convolution has a bias and a batch norm after it: folded, the two make one bias.
        var tasks = new TaskSet([new TaskSpec("semseg", TaskKind.Segmentation, 5), new TaskSpec("depth", TaskKind.Depth, 1)]);
        var heads = new HeadConfig { Dense = "hrnet" };
        manual_seed(5);
        var gated = new InterroGateModel(tasks, GatedHRNetTests.Tiny, 3, (32, 32), new InterroGateConfig(), heads);
        PrunerTests.SetGates(gated, PrunerTests.Pattern.Random);
        var models = new MultiTaskModel[] { gated, new SingleTask(tasks, GatedHRNetTests.Tiny, 3, heads), new HardSharing(tasks, GatedHRNetTests.Tiny, 3, heads) };
        foreach (var model in models)
        {
            PrunerTests.RandomiseNorms(model);
            model.eval();
            var pruned = model is InterroGateModel ig ? Pruner.Prune(ig, new ImageInput(3, 32, 32)) : StaticConversion.ToStatic(model, new ImageInput(3, 32, 32));
            long inGraph = pruned.Graph.Tensors.Values.Where(t => t.is_floating_point()).Sum(t => t.numel());
            Assert.Equal(inGraph, pruned.Report.ParametersAfter);
            Assert.Equal(DeployedCost.OfModel(model, (3, 32, 32)), (pruned.Report.MacsAfter, pruned.Report.ParametersAfter));
        }
    }

    [Fact]
    public void All_gates_open_cost_what_STL_does_and_all_closed_what_MTL_does()
    {
        var tasks = PrunerTests.Tasks;
        var spec = GatedHRNetTests.Tiny;
        var stl = new SingleTask(tasks, spec, 3);
        var mtl = new HardSharing(tasks, spec, 3);
        Assert.Equal(DeployedCost.OfModel(stl, (3, 32, 32)), DeployedCost.OfModel(Model("tiny", PrunerTests.Pattern.AllSpecific, 32), (3, 32, 32)));
        Assert.Equal(DeployedCost.OfModel(mtl, (3, 32, 32)), DeployedCost.OfModel(Model("tiny", PrunerTests.Pattern.AllShared, 32), (3, 32, 32)));

        // STL and MTL HRNet models become static networks through the same pruner, at the cost counted on them.
        manual_seed(3);
        foreach (MultiTaskModel model in new MultiTaskModel[] { stl, mtl })
        {
            PrunerTests.RandomiseNorms(model);
            model.eval();
            var pruned = StaticConversion.ToStatic(model, new ImageInput(3, 32, 32));
            using var net = new StaticNetwork(pruned.Graph);
            var x = randn(2, 3, 32, 32);
            using (no_grad())
            {
                var a = model.call(x);
                var b = net.call(x);
                foreach (var t in tasks) Assert.True(RelativeError(b[t.Name], a[t.Name]) <= 1e-4, $"{model.Architecture} {t.Name}");
            }
            Assert.Equal(DeployedCost.OfModel(model, (3, 32, 32)), (pruned.Report.MacsAfter, pruned.Report.ParametersAfter));
        }
    }

    [Fact]
    public void Each_pattern_keeps_the_filters_the_rules_say()
    {
        var shared = Pruner.Prune(Model("tiny", PrunerTests.Pattern.AllShared, 32), new ImageInput(3, 32, 32));
        Assert.All(shared.Report.Layers, l => Assert.Equal(l.Channels, l.KeptPerBranch["shared"]));
        Assert.DoesNotContain(shared.Graph.Nodes, n => n.Op is StaticOp.Mix or StaticOp.Gather); // exactly the MTL network

        var specific = Pruner.Prune(Model("tiny", PrunerTests.Pattern.AllSpecific, 32), new ImageInput(3, 32, 32));
        Assert.All(specific.Report.Layers, l => Assert.Equal(0, l.KeptPerBranch["shared"]));
        Assert.DoesNotContain(specific.Graph.Nodes, n => n.Name.StartsWith("shared.") || n.Op is StaticOp.Mix or StaticOp.Gather);
        var cones = specific.Graph.Cones();
        foreach (var t in PrunerTests.Tasks)
            Assert.All(cones[t.Name].Where(n => n > 0), n => Assert.Contains($".{t.Name}.", "." + specific.Graph.Nodes[n].Name));
    }

    [Theory]
    [InlineData("tiny", PrunerTests.Pattern.Random, 37)]
    [InlineData("small", PrunerTests.Pattern.OneSpecificRestShared, 32)]
    public void OnnxRuntime_computes_what_TorchSharp_does(string spec, PrunerTests.Pattern pattern, int size)
    {
        var model = Model(spec, pattern, size);
        var graph = Pruner.Prune(model, new ImageInput(3, size, size)).Graph;
        string path = Path.Combine(_dir, "m.onnx");
        OnnxExporter.Export(graph, path);

        var x = randn(2, 3, size, size);
        using var net = new StaticNetwork(graph);
        Dictionary<string, Tensor> expected;
        model.eval();
        using (no_grad())
        {
            expected = net.call(x);
            var gated = model.call(x); // the full-size preset's pruned network is the gated one too
            foreach (var t in PrunerTests.Tasks) Assert.True(RelativeError(expected[t.Name], gated[t.Name]) <= 1e-4, t.Name);
        }

        using var session = new InferenceSession(path);
        var input = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(x.data<float>().ToArray(), [2, 3, size, size]);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(OnnxExporter.InputName, input)]);
        Assert.Equal(PrunerTests.Tasks.Count, results.Count);
        foreach (var r in results)
        {
            var actual = tensor(r.AsEnumerable<float>().ToArray());
            var want = expected[r.Name].flatten();
            Assert.Equal(want.numel(), actual.numel());
            Assert.True(RelativeError(actual, want) <= 1e-4, $"{r.Name}: {RelativeError(actual, want)}");
        }
    }
}
