using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Gating;
using InterroGate.Heads;
using InterroGate.Pruning;
using InterroGate.Tasks;
using InterroGate.Tests.Pruning;
using static TorchSharp.torch;

namespace InterroGate.Tests.Heads;

/// <summary>The DPT decoder on a ViT: its maps' scales, gated and pruned with the encoder, exported, and its bad inputs.</summary>
[Collection("Torch")]
public sealed class DptHeadTests
{
    private static readonly TaskSet Dense = new([
        new TaskSpec("semseg", TaskKind.Segmentation, 5),
        new TaskSpec("depth", TaskKind.Depth, 1),
    ]);

    private static RunConfig Config(string architecture, string backbone = "vit_cpu_patch4_32", HeadConfig? head = null) => new()
    {
        Backbone = new BackboneConfig { Name = backbone },
        Head = head ?? new HeadConfig { DptFeatures = 16 },
        Architecture = architecture == "interrogate" ? new InterroGateConfig { AlphaInit = 0.01 } : Registry<ArchitectureConfig>.Default(architecture),
    };

    [Theory]
    [InlineData(16, 64)] // ViT-B's patches: maps at 4, 2, 1 and ½ times the grid
    [InlineData(4, 64)]  // the CPU ViT: the grid is already at 1/4, so 1, ½, ¼, ⅛
    public void The_four_maps_are_at_a_quarter_to_a_thirty_second_of_the_input_and_the_prediction_at_its_resolution(int patch, int size)
    {
        manual_seed(0);
        using var head = new DptHead(32, 3, patch, features: 8);
        var grid = size / patch;
        var seen = new List<long[]>();
        foreach (var (name, m) in head.named_modules())
            if (name.StartsWith("layer_rn.", StringComparison.Ordinal) && m is TorchSharp.Modules.Conv2d conv)
                conv.register_forward_hook((_, _, y) => { seen.Add(y.shape); return y; });
        var y = head.call(randn(2, 4 * 32, grid, grid));
        Assert.Equal([2L, 3, size, size], y.shape);
        Assert.Equal([size / 4L, size / 8, size / 16, size / 32], seen.Select(s => s[2]));
        Assert.Contains("multiples of 32", Assert.Throws<ArgumentException>(() => head.call(randn(1, 128, grid + 1, grid))).Message);
        Assert.Contains("four token maps", Assert.Throws<ArgumentException>(() => head.call(randn(1, 32, grid, grid))).Message);
    }

    [Fact]
    public void The_class_token_is_read_out_by_a_projection_of_patch_and_class_token_as_DPT_does()
    {
        // DPT's "project" readout: GELU(Linear(2D → D)([patch | class])) at every position, here a 1×1 convolution.
        manual_seed(1);
        using var head = new DptHead(8, 2, 4, features: 4, readsClassToken: true);
        var weights = head.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.Equal([8L, 16, 1, 1], weights["readout.0.weight"].shape);
        Assert.Contains("four token maps of 16 channels", Assert.Throws<ArgumentException>(() => head.call(randn(1, 32, 8, 8))).Message);
        Assert.Equal([1L, 2, 32, 32], head.call(randn(1, 64, 8, 8)).shape);
        // A head whose maps have no class token (a ViT without one) reads the patches as they are.
        using var plain = new DptHead(8, 2, 4, features: 4);
        Assert.DoesNotContain(plain.named_parameters(), p => p.name.StartsWith("readout", StringComparison.Ordinal));
    }

    [Fact]
    public void Fusion_blocks_upsample_with_aligned_corners_and_residual_units_have_batch_norm()
    {
        // With unit2's convolutions at 0 (a unit is then the identity: x + BN(0) with BN's bias 0) and the 1×1 out_conv
        // the identity, the coarsest fusion block is DPT's ×2 bilinear resize with align_corners = true.
        manual_seed(2);
        using var head = new DptHead(8, 2, 4, features: 3);
        head.eval();
        var modules = head.named_modules().ToDictionary(m => m.name, m => m.module);
        Assert.IsType<TorchSharp.Modules.BatchNorm2d>(modules["fusion.3.unit2.bn1"]);
        Assert.Null(((TorchSharp.Modules.Conv2d)modules["fusion.3.unit2.conv1"]).bias);
        using (no_grad())
        {
            foreach (var conv in new[] { "fusion.3.unit2.conv1", "fusion.3.unit2.conv2" }) ((TorchSharp.Modules.Conv2d)modules[conv]).weight!.zero_();
            var outConv = (TorchSharp.Modules.Conv2d)modules["fusion.3.out_conv"];
            outConv.weight!.copy_(eye(3).view(3, 3, 1, 1));
            outConv.bias!.zero_();
        }
        var x = randn(1, 3, 4, 5);
        using var _ = no_grad();
        var y = ((nn.Module<Tensor, Tensor?, Tensor>)modules["fusion.3"]).call(x, null);
        var expected = nn.functional.interpolate(x, size: [8, 10], mode: InterpolationMode.Bilinear, align_corners: true);
        Assert.True((y - expected).abs().max().item<float>() < 1e-6f);
        Assert.True((y - nn.functional.interpolate(x, size: [8, 10], mode: InterpolationMode.Bilinear, align_corners: false)).abs().max().item<float>() > 1e-3f);
    }

    [Theory]
    [InlineData(PrunerTests.Pattern.Random)]
    [InlineData(PrunerTests.Pattern.OneSpecificRestShared)]
    public void A_gated_ViT_with_DPT_heads_prunes_to_what_it_computes_at_its_predicted_cost_and_exports(PrunerTests.Pattern pattern)
    {
        using var model = (InterroGateModel)Factory.CreateModel(Config("interrogate"), Dense, (3, 32, 32));
        Assert.Equal([0, 1, 2, 3], ((ViTSpec)model.Spec).OutputBlocks); // four blocks: each one's output
        Assert.Equal(4 * 2 * 64, model.Encoder.OutChannels); // each block's map: its patches and the class token beside each
        PrunerTests.RandomiseNorms(model);
        PrunerTests.SetGates(model, pattern);
        model.train();
        var pruned = PrunerTests.PruneAndCompare(model, 32, Dense);
        Assert.Equal(DeployedCost.OfModel(model, (3, 32, 32)), (pruned.Report.MacsAfter, pruned.Report.ParametersAfter));

        string file = Path.Combine(Path.GetTempPath(), $"dpt-{Guid.NewGuid():N}.onnx");
        try { Export.ExportTests.OnnxMatches(pruned.Graph, file); }
        finally { File.Delete(file); }
    }

    [Fact]
    public void STL_and_MTL_with_DPT_heads_on_a_ViT_give_the_heads_and_the_encoder_gradients()
    {
        foreach (var architecture in new[] { "stl", "mtl" })
        {
            manual_seed(1);
            using var model = Factory.CreateModel(Config(architecture), Dense, (3, 32, 32));
            var outputs = model.call(randn(2, 3, 32, 32));
            Assert.Equal([2L, 5, 32, 32], outputs["semseg"].shape); // upsampled to the input, as every dense head's
            (outputs["semseg"].square().mean() + outputs["depth"].square().mean()).backward();
            var heads = model.named_parameters().Where(p => p.name.StartsWith("heads.", StringComparison.Ordinal)).ToArray();
            Assert.All(heads, p => Assert.True(p.parameter.grad is { } g && g.abs().sum().item<float>() > 0, $"{architecture}: {p.name} gets no gradient"));
            // The encoder below the blocks the heads read: its first layer (every encoder's patch embedding) gets gradients too.
            var patches = model.named_parameters().Where(p => p.name.Contains(".patch_embed.", StringComparison.Ordinal)).ToArray();
            Assert.Equal(architecture == "stl" ? 2 * 2 : 2, patches.Length); // weight and bias, per task for STL
            Assert.All(patches, p => Assert.True(p.parameter.grad is { } g && g.abs().sum().item<float>() > 0, $"{architecture}: {p.name} gets no gradient"));
        }
    }

    [Fact]
    public void DPT_where_it_cannot_be_built_is_a_configuration_error_naming_the_key()
    {
        ConfigException Refused(RunConfig config, (int, int, int) image) =>
            Assert.Throws<ConfigException>(() => Factory.CreateModel(config, Dense, image));
        Assert.Equal("head.dense", Refused(Config("mtl", "resnet18", new HeadConfig { Dense = "dpt" }), (3, 32, 32)).Key);
        Assert.Equal("head.dense", Refused(Config("mtl"), (3, 48, 48)).Key); // 48: a multiple of the patch, not of 32
        var blocks = Refused(Config("mtl", head: new HeadConfig { DptBlocks = [0, 1, 2, 4] }), (3, 32, 32));
        Assert.Equal("head.dptBlocks[3]", blocks.Key);
        Assert.Contains("0 to 3", blocks.Message);
        Assert.Equal("head.dptBlocks[2]", Refused(Config("mtl", head: new HeadConfig { DptBlocks = [0, 2, 1, 3] }), (3, 32, 32)).Key);
        // ASPP on a ViT reads the final map as usual: no blocks handed over.
        using var aspp = Factory.CreateModel(Config("mtl", head: new HeadConfig { Dense = "aspp", Channels = 8 }), Dense, (3, 32, 32));
        Assert.Equal([2L, 5, 32, 32], aspp.call(randn(2, 3, 32, 32))["semseg"].shape);
    }
}
