using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Gating;
using InterroGate.Heads;
using InterroGate.Objectives;
using InterroGate.Tasks;
using InterroGate.Training;
using Microsoft.ML.OnnxRuntime;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Tests.Heads;

/// <summary>Dense tasks end to end: ASPP heads on every architecture, predictions at the labels' resolution, pruning and export.</summary>
[Collection("Torch")]
public sealed class DenseHeadTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-dense-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    internal static readonly TaskSet Tasks = new([
        new TaskSpec("semseg", TaskKind.Segmentation, 5),
        new TaskSpec("depth", TaskKind.Depth, 1),
        new TaskSpec("normals", TaskKind.Normals, 3),
        new TaskSpec("sal", TaskKind.Saliency, 1),
        new TaskSpec("edge", TaskKind.Edges, 1),
        new TaskSpec("kind", TaskKind.Classification, 4),
    ]);

    private static readonly HeadConfig SmallAspp = new() { Channels = 8 };

    private static Dictionary<string, Tensor> Targets(int b, int h, int w)
    {
        var normals = nn.functional.normalize(randn(b, 3, h, w), p: 2, dim: 1);
        return new()
        {
            ["semseg"] = randint(0, 5, [b, h, w]).masked_fill(rand(b, h, w).lt(0.2), TaskSpec.IgnoreLabel),
            ["depth"] = rand(b, 1, h, w) * 5 * rand(b, 1, h, w).gt(0.1),
            ["normals"] = normals,
            ["sal"] = rand(b, 1, h, w).gt(0.5).to(float32),
            ["edge"] = rand(b, 1, h, w).gt(0.9).to(float32),
            ["kind"] = randint(0, 4, [b]),
        };
    }

    [Fact]
    public void ASPP_keeps_torchvision_names_and_the_features_resolution()
    {
        manual_seed(1);
        var head = new AsppHead(16, 5, [2, 4, 6], channels: 8);
        var names = head.named_parameters().Select(p => p.name).ToHashSet();
        foreach (var n in new[] { "aspp.convs.0.0.weight", "aspp.convs.0.1.weight", "aspp.convs.3.0.weight", "aspp.convs.4.1.weight", "aspp.project.0.weight", "conv.weight", "bn.bias", "classifier.bias" })
            Assert.Contains(n, names);
        var convs = head.named_modules().Where(m => m.module is Conv2d).ToDictionary(m => m.name, m => (Conv2d)m.module);
        Assert.Equal(new long[] { 1, 2, 4, 6 }, Enumerable.Range(0, 4).Select(i => convs[$"aspp.convs.{i}.0"].dilation[0]));
        Assert.Equal(new long[] { 2, 5, 7, 9 }, head.call(randn(2, 16, 7, 9)).shape);
        Assert.Equal([12, 24, 36], AsppHead.RatesFor(8));
        Assert.Equal([6, 12, 18], AsppHead.RatesFor(16));
    }

    [Theory]
    [InlineData("stl")]
    [InlineData("mtl")]
    [InlineData("interrogate-conv")]
    [InlineData("interrogate-block")]
    [InlineData("mtan")]
    [InlineData("cross-stitch")]
    public void Every_architecture_predicts_dense_tasks_at_the_labels_resolution_with_a_gradient_for_every_parameter(string arch)
    {
        manual_seed(3);
        var spec = BackboneCatalog.ResNet("resnet18", outputStride: 8);
        int h = 24, w = 32;
        MultiTaskModel model = arch switch
        {
            "stl" => new SingleTask(Tasks, spec, 3, SmallAspp),
            "mtl" => new HardSharing(Tasks, spec, 3, SmallAspp),
            "interrogate-conv" => new InterroGateModel(Tasks, spec, 3, (h, w), new InterroGateConfig { Tau = [0.2] }, SmallAspp),
            "interrogate-block" => new InterroGateModel(Tasks, spec, 3, (h, w), new InterroGateConfig { Gating = GatingMode.Block, Tau = [0.2] }, SmallAspp),
            "mtan" => new Mtan(Tasks, spec, 3, SmallAspp),
            _ => new CrossStitch(Tasks, spec, 3, 0.9, SmallAspp),
        };
        if (model is InterroGateModel ig)
            using (no_grad())
                foreach (var g in ig.Encoder.GateLayers)
                {
                    g.Alpha.copy_(randn_like(g.Alpha));
                    g.Alpha[.., 0] = 1;
                    g.Alpha[.., 1] = -1;
                }
        using var scope = NewDisposeScope();
        var x = randn(2, 3, h, w);
        var outputs = model.call(x);
        Assert.Equal(new long[] { 2, 5, h, w }, outputs["semseg"].shape);
        Assert.Equal(new long[] { 2, 3, h, w }, outputs["normals"].shape);
        foreach (var t in new[] { "depth", "sal", "edge" }) Assert.Equal(new long[] { 2, 1, h, w }, outputs[t].shape);
        Assert.Equal(new long[] { 2, 4 }, outputs["kind"].shape);

        var losses = new MultiTaskObjective(Tasks).Losses(outputs, Targets(2, h, w));
        Assert.All(losses, l => Assert.True(double.IsFinite(l.item<float>()) && l.item<float>() > 0));
        var total = losses.Aggregate((a, b) => a + b);
        if (model.Regularizer() is { } r) total = total + r;
        total.backward();
        var missing = model.named_parameters().Where(p => p.parameter.grad is null || p.parameter.grad.abs().sum().item<float>() == 0).Select(p => p.name).ToArray();
        // The last gated layer has no β (nobody reads its mix); every other parameter must be reached.
        Assert.Empty(missing);
    }

    /// <summary>An InterroGate model on dilated ResNet-18 with ASPP heads, random weights, BN statistics, β and gates.</summary>
    private static InterroGateModel GatedDense(int h, int w, int seed)
    {
        manual_seed(seed);
        var model = new InterroGateModel(Tasks, BackboneCatalog.Spec("resnet18", outputStride: 8), 3, (h, w), new InterroGateConfig(), SmallAspp);
        InterroGate.Tests.Pruning.PrunerTests.RandomiseNorms(model);
        using var _ = no_grad();
        foreach (var g in model.Encoder.GateLayers)
        {
            g.Beta?.copy_(randn_like(g.Beta) * 2);
            g.Alpha.copy_(randn_like(g.Alpha));
        }
        return model;
    }

    private static double RelativeError(Tensor a, Tensor b) => (a - b).abs().max().item<float>() / Math.Max(b.abs().max().item<float>(), 1e-12);

    [Fact]
    public void The_pruned_dense_network_is_the_gated_one_and_costs_what_its_gates_predict()
    {
        int h = 24, w = 32;
        var model = GatedDense(h, w, seed: 4);
        var pruned = Pruner.Prune(model, new ImageInput(3, h, w));
        Assert.Contains(pruned.Graph.Nodes, n => n.Op == StaticOp.Resize);
        Assert.Contains(pruned.Graph.Nodes, n => n.Op == StaticOp.Concat);
        model.eval();
        using var net = new StaticNetwork(pruned.Graph);
        var x = randn(2, 3, h, w);
        using (no_grad())
        {
            var expected = model.call(x);
            var actual = net.call(x);
            foreach (var t in Tasks)
            {
                Assert.Equal(expected[t.Name].shape, actual[t.Name].shape);
                Assert.True(RelativeError(actual[t.Name], expected[t.Name]) <= 1e-4, $"{t.Name}: {RelativeError(actual[t.Name], expected[t.Name])}");
            }
        }
        var (macs, parameters) = DeployedCost.OfModel(model, (3, h, w));
        Assert.Equal(macs, pruned.Report.MacsAfter);
        Assert.Equal(parameters, pruned.Report.ParametersAfter);

        // The structure with the new operators survives the model file.
        StaticModelFile.Save(Path.Combine(_dir, "m.safetensors"), pruned.Graph);
        using var again = new StaticNetwork(StaticModelFile.Load(Path.Combine(_dir, "m.safetensors")));
        using (no_grad())
        {
            var a = net.call(x);
            var b = again.call(x);
            foreach (var t in Tasks) Assert.True(a[t.Name].equal(b[t.Name]).all().item<bool>(), t.Name);
        }
    }

    [Fact]
    public void STL_and_MTL_with_dense_heads_become_static_networks_with_the_same_outputs()
    {
        manual_seed(6);
        int h = 16, w = 16;
        var spec = BackboneCatalog.Spec("resnet18", outputStride: 16);
        foreach (MultiTaskModel model in new MultiTaskModel[] { new SingleTask(Tasks, spec, 3, SmallAspp), new HardSharing(Tasks, spec, 3, SmallAspp) })
        {
            InterroGate.Tests.Pruning.PrunerTests.RandomiseNorms(model);
            model.eval();
            var pruned = StaticConversion.ToStatic(model, new ImageInput(3, h, w));
            using var net = new StaticNetwork(pruned.Graph);
            var x = randn(2, 3, h, w);
            using (no_grad())
            {
                var a = model.call(x);
                var b = net.call(x);
                foreach (var t in Tasks) Assert.True(RelativeError(b[t.Name], a[t.Name]) <= 1e-4, $"{model.Architecture} {t.Name}");
            }
            var cost = DeployedCost.OfModel(model, (3, h, w));
            Assert.Equal(cost.Macs, pruned.Report.MacsAfter);
            Assert.Equal(cost.Parameters, pruned.Report.ParametersAfter);
        }
    }

    [Fact]
    public void OnnxRuntime_computes_the_dense_outputs_TorchSharp_does()
    {
        int h = 24, w = 32;
        var graph = Pruner.Prune(GatedDense(h, w, seed: 8), new ImageInput(3, h, w)).Graph;
        string path = Path.Combine(_dir, "m.onnx");
        OnnxExporter.Export(graph, path);
        var x = randn(3, 3, h, w);
        using var net = new StaticNetwork(graph);
        Dictionary<string, Tensor> expected;
        using (no_grad()) expected = net.call(x);

        using var session = new InferenceSession(path);
        var input = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(x.data<float>().ToArray(), [3, 3, h, w]);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(OnnxExporter.InputName, input)]);
        Assert.Equal(expected.Keys.Order(), results.Select(r => r.Name).Order());   // every task's output, none else
        foreach (var r in results)
        {
            var tensorValue = r.AsTensor<float>();
            Assert.Equal(expected[r.Name].shape, tensorValue.Dimensions.ToArray().Select(d => (long)d).ToArray());
            var actual = tensor(tensorValue.ToArray()).view(expected[r.Name].shape);
            Assert.True(RelativeError(actual, expected[r.Name]) <= 1e-4, $"{r.Name}: {RelativeError(actual, expected[r.Name])}");
        }
    }
}
