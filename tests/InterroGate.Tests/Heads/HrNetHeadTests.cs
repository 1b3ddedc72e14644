using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Heads;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Tests.Heads;

/// <summary>The HRNet head as a static network, and which dense head a configuration gives on which backbone.</summary>
[Collection("Torch")]
public sealed class HrNetHeadTests
{
    private static readonly TaskSpec Semseg = new("semseg", TaskKind.Segmentation, 5);

    [Fact]
    public void The_emitted_static_head_computes_the_heads_evaluation_output()
    {
        manual_seed(11);
        var head = new HrNetHead(12, 5);
        InterroGate.Tests.Pruning.PrunerTests.RandomiseNorms(head);
        using (no_grad())
            foreach (var p in head.parameters()) p.copy_(randn_like(p) * 0.5); // biases and BN affine away from their defaults too
        head.eval();

        var g = new GraphBuilder(12);
        int output = head.Emit(g, GraphBuilder.InputNode, "heads.semseg");
        var graph = g.Build(new Dictionary<string, int> { ["semseg"] = output }, new TaskSet([Semseg]), new ImageInput(12, 7, 9));
        // Two convolutions (the first with BN folded in) and a ReLU: BN leaves no node of its own.
        Assert.Equal(new[] { StaticOp.Input, StaticOp.Conv, StaticOp.Relu, StaticOp.Conv }, graph.Nodes.Select(n => n.Op).ToArray());
        Assert.Equal(new long[] { 12, 12, 12, 5 }, graph.Nodes.Select(n => n.Channels).ToArray());

        using var net = new StaticNetwork(graph);
        using var _ = no_grad();
        var x = randn(2, 12, 7, 9);
        var expected = head.call(x);
        var actual = net.call(x)["semseg"];
        Assert.Equal(expected.shape, actual.shape);
        double error = (actual - expected).abs().max().item<float>() / expected.abs().max().item<float>();
        Assert.True(error <= 1e-5, $"relative error {error}");
        // Folding must have used the running statistics: the training-mode output (batch statistics) differs.
        head.train();
        Assert.False(head.call(x).allclose(actual, rtol: 1e-3, atol: 1e-3));
    }

    [Fact]
    public void Auto_gives_the_papers_head_for_the_backbone_and_explicit_heads_stay_as_named()
    {
        var hrnet = BackboneCatalog.Spec("hrnet18-small");
        var resnet = BackboneCatalog.Spec("resnet18", outputStride: 8);
        Assert.Equal("auto", new HeadConfig().Dense);
        Assert.IsType<HrNetHead>(HeadFactory.Create(Semseg, hrnet));
        Assert.IsType<AsppHead>(HeadFactory.Create(Semseg, resnet));
        Assert.Equal(270, ((HrNetHead)HeadFactory.Create(Semseg, hrnet)).InChannels);

        var aspp = Assert.IsType<AsppHead>(HeadFactory.Create(Semseg, hrnet, new HeadConfig { Dense = "aspp", Channels = 8 }));
        Assert.Equal([3, 6, 9], aspp.Rates);
        Assert.IsType<HrNetHead>(HeadFactory.Create(Semseg, resnet, new HeadConfig { Dense = "hrnet" }));
        Assert.IsType<ClassificationHead>(HeadFactory.Create(new TaskSpec("kind", TaskKind.Classification, 4), hrnet));
    }

    [Fact]
    public void Head_names_in_a_config_file_are_read_and_checked()
    {
        const string run = """
            { "name": "t", "data": { "dataset": "synthetic" }, "backbone": { "name": "hrnet18" }, "head": { "dense": "DENSE" } }
            """;
        foreach (var dense in new[] { "aspp", "hrnet", "auto" })
        {
            var c = ConfigJson.Deserialize<RunConfig>(run.Replace("DENSE", dense));
            c.Validate(1);
            Assert.Equal(dense, c.Head.Dense);
            Assert.Contains($"\"dense\": \"{dense}\"", ConfigJson.Serialize(c));
        }
        Assert.Equal("auto", ConfigJson.Deserialize<RunConfig>("""{ "name": "t" }""").Head.Dense);
        var e = Assert.Throws<ConfigException>(() => ConfigJson.Deserialize<RunConfig>(run.Replace("DENSE", "fcn")).Validate(1));
        Assert.Equal("head.dense", e.Key);
        Assert.Contains("auto, aspp, hrnet", e.Message);
    }
}
