using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Gating;
using InterroGate.Tasks;
using Microsoft.ML.OnnxRuntime;
using SkiaSharp;
using static TorchSharp.torch;

using InterroGate.Tests.Pruning;

namespace InterroGate.Tests.Export;

/// <summary>The static network leaves the project as ONNX and safetensors, and predicts from image files.</summary>
[Collection("Torch")]
public sealed class ExportTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-export-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);
    private string P(string name) => Path.Combine(_dir, name);

    private static double RelativeError(float[] a, float[] b) =>
        a.Zip(b, (x, y) => Math.Abs(x - y)).Max() / Math.Max(b.Max(Math.Abs), 1e-12f);

    [Theory]
    [InlineData("resnet20", GatingMode.Conv, PrunerTests.Pattern.Random, 16)]
    [InlineData("resnet20", GatingMode.Block, PrunerTests.Pattern.OneSpecificRestShared, 16)]
    [InlineData("resnet18", GatingMode.Conv, PrunerTests.Pattern.Random, 64)]
    [InlineData("resnet50", GatingMode.Conv, PrunerTests.Pattern.AllShared, 32)]
    [InlineData("resnet18-os8", GatingMode.Conv, PrunerTests.Pattern.Random, 32)]
    [InlineData("vit_cpu_patch4_32", GatingMode.Conv, PrunerTests.Pattern.Random, 32)]
    [InlineData("vit_cpu_patch4_32", GatingMode.Block, PrunerTests.Pattern.AllSpecific, 16)]
    public void OnnxRuntime_computes_what_TorchSharp_does(string backbone, GatingMode mode, PrunerTests.Pattern pattern, int size)
    {
        var model = PrunerTests.Model(backbone, mode, pattern, size);
        OnnxMatches(Pruner.Prune(model, new ImageInput(3, size, size)).Graph, P("m.onnx"));
    }

    /// <summary>Exports <paramref name="graph"/> to <paramref name="file"/> and checks that ONNX Runtime predicts every task as the static network does.</summary>
    internal static void OnnxMatches(StaticGraph graph, string file)
    {
        OnnxExporter.Export(graph, file);
        var (c, h, w) = (graph.Input.Channels, graph.Input.Height, graph.Input.Width);
        var x = randn(2, c, h, w);
        using var net = new StaticNetwork(graph);
        Dictionary<string, TorchSharp.torch.Tensor> expected;
        using (no_grad()) expected = net.call(x);

        using var session = new InferenceSession(file);
        Assert.Equal(graph.Tasks.Select(t => t.Name), session.OutputMetadata.Keys);
        var input = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(x.data<float>().ToArray(), [2, c, h, w]);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(OnnxExporter.InputName, input)]);
        foreach (var r in results)
        {
            var actual = r.AsEnumerable<float>().ToArray();
            var want = expected[r.Name].data<float>().ToArray();
            Assert.Equal(want.Length, actual.Length);
            Assert.True(RelativeError(actual, want) <= 1e-4, $"{r.Name}: {RelativeError(actual, want)}");
        }
    }

    [Fact]
    public void STL_and_MTL_models_become_the_static_networks_they_are()
    {
        manual_seed(5);
        var tasks = PrunerTests.Tasks;
        var spec = ResNetSpec.ResNet20(0.5);
        foreach (MultiTaskModel model in new MultiTaskModel[] { new SingleTask(tasks, spec, 3), new HardSharing(tasks, spec, 3) })
        {
            model.eval();
            var pruned = StaticConversion.ToStatic(model, new ImageInput(3, 16, 16));
            using var net = new StaticNetwork(pruned.Graph);
            var x = randn(2, 3, 16, 16);
            using (no_grad())
            {
                var a = model.call(x);
                var b = net.call(x);
                foreach (var t in tasks) Assert.True(allclose(a[t.Name], b[t.Name], 1e-4, 1e-5), $"{model.Architecture} {t.Name}");
            }
            var cost = InterroGate.Analysis.DeployedCost.OfModel(model, (3, 16, 16));
            Assert.Equal(cost.Macs, pruned.Report.MacsAfter);
            Assert.Equal(cost.Parameters, pruned.Report.ParametersAfter);
        }
    }

    [Fact]
    public void A_static_model_file_round_trips_and_a_bad_one_is_named()
    {
        var graph = Pruner.Prune(PrunerTests.Model("resnet20", GatingMode.Conv, PrunerTests.Pattern.Random, 16), new ImageInput(3, 16, 16, 0.25, 0.5)).Graph;
        StaticModelFile.Save(P("m.safetensors"), graph);
        var back = StaticModelFile.Load(P("m.safetensors"));
        Assert.Equal(graph.Input, back.Input);
        using var a = new StaticNetwork(graph);
        using var b = new StaticNetwork(back);
        var x = randn(1, 3, 16, 16);
        using (no_grad()) foreach (var t in PrunerTests.Tasks) Assert.True(a.call(x)[t.Name].equal(b.call(x)[t.Name]).all().item<bool>());

        // Weights without our structure: a plain safetensors file.
        SafeTensors.Save(P("plain.safetensors"), new Dictionary<string, TorchSharp.torch.Tensor> { ["w"] = zeros(2) });
        Assert.Contains("no static network", Assert.Throws<SafeTensorsException>(() => StaticModelFile.Load(P("plain.safetensors"))).Message);

        // A tensor whose shape does not fit its node is named.
        var tensors = graph.Tensors.ToDictionary();
        var conv = graph.Nodes.First(n => n.Op == StaticOp.Conv);
        tensors[$"{conv.Name}.weight"] = zeros(1, 1, 3, 3);
        SafeTensors.Save(P("broken.safetensors"), tensors, new Dictionary<string, string> { [StaticModelFile.FormatKey] = StaticModelFile.Format, [StaticModelFile.StructureKey] = graph.StructureJson() });
        var e = Assert.Throws<SafeTensorsException>(() => StaticModelFile.Load(P("broken.safetensors")));
        Assert.Contains($"'{conv.Name}.weight'", e.Message);
        Assert.Contains("broken.safetensors", e.Message);
    }

    private static void WritePng(string path, int width, int height, bool gray, Func<int, int, byte> pixel)
    {
        var info = new SKImageInfo(width, height, gray ? SKColorType.Gray8 : SKColorType.Rgba8888, gray ? SKAlphaType.Opaque : SKAlphaType.Unpremul);
        using var bitmap = new SKBitmap(info);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                byte v = pixel(x, y);
                bitmap.SetPixel(x, y, new SKColor(v, v, v));
            }
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(path, data.ToArray());
    }

    [Fact]
    public void The_predictor_predicts_every_task_and_names_the_images_it_cannot_read()
    {
        var tasks = new TaskSet([new TaskSpec("kind", TaskKind.Classification, 4), new TaskSpec("tags", TaskKind.Binary, 2), new TaskSpec("size", TaskKind.Regression, 1)]);
        manual_seed(7);
        var model = new InterroGateModel(tasks, ResNetSpec.ResNet20(0.25), 1, (12, 12), new InterroGateConfig());
        var input = new ImageInput(1, 12, 12, 0.3, 0.4);
        StaticModelFile.Save(P("m.safetensors"), Pruner.Prune(model, input).Graph);

        Func<int, int, byte> pattern = (x, y) => (byte)(x * 20 + y * 3);
        WritePng(P("gray.png"), 12, 12, gray: true, pattern);
        WritePng(P("big.png"), 24, 24, gray: true, pattern);
        WritePng(P("colour.png"), 12, 12, gray: false, (x, y) => 0);
        File.WriteAllBytes(P("broken.png"), [0x89, (byte)'P', (byte)'N', (byte)'G', 1, 2, 3]);
        var pixels = Enumerable.Range(0, 144).Select(i => pattern(i % 12, i / 12)).ToArray();
        Npy.Write(P("gray.npy"), [12, 12], pixels);
        Npy.Write(P("empty.npy"), [0, 12], Array.Empty<byte>());
        Npy.Write(P("nan.npy"), [12, 12], Enumerable.Range(0, 144).Select(i => i % 50 == 0 ? float.NaN : 0f).ToArray());

        using var predictor = Predictor.Load(P("m.safetensors"));
        var results = predictor.PredictFiles([P("gray.png"), P("broken.png"), P("colour.png"), P("gray.npy"), P("big.png"), P("missing.png"), P("empty.npy"), P("nan.npy")]);
        Assert.Equal(8, results.Count);
        Assert.Contains("holds 3 values that are not finite", results[7].Error);
        Assert.Null(results[0].Error);
        Assert.Contains("broken.png", results[1].Error);
        Assert.Contains("cannot be decoded", results[1].Error);
        Assert.Contains("colour.png", results[2].Error);
        Assert.Contains("the model reads 1", results[2].Error);
        Assert.Null(results[3].Error);
        Assert.Contains("resized from 24×24", results[4].Note);
        Assert.Contains("no such file", results[5].Error);
        Assert.Contains("an empty image (0×12 pixels)", results[6].Error);

        // The PNG and the .npy hold the same pixels: the same predictions, equal to the model's own.
        model.eval();
        var expected = model.call(input.FromBytes(tensor(pixels).view(1, 1, 12, 12)));
        foreach (var r in new[] { results[0], results[3] })
        {
            Assert.Equal((int)expected["kind"].argmax(1).item<long>(), r.Tasks!["kind"].Class);
            Assert.Equal(1.0, r.Tasks["kind"].Values.Sum(), 5);
            Assert.Equal(expected["size"][0, 0].item<float>(), r.Tasks["size"].Values[0], 4);
            Assert.Equal(expected["tags"].sigmoid()[0, 1].item<float>(), r.Tasks["tags"].Values[1], 4);
        }
    }
}
