using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Export;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Tests.Backbones;

/// <summary>The ViT encoder: timm's names and sizes, the published cost, other input sizes, and training in STL and MTL.</summary>
[Collection("Torch")]
public sealed class VisionTransformerTests
{
    private static readonly ViTSpec OneBlock = new("vit-test", 4, 16, 1, 2, TrainedSize: 16);

    [Fact]
    public void Parameters_carry_timms_names_and_shapes()
    {
        using var vit = new VisionTransformer(OneBlock, 3);
        var shapes = vit.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        var expected = new Dictionary<string, long[]>
        {
            ["cls_token"] = [1, 1, 16], ["pos_embed"] = [1, 17, 16],
            ["patch_embed.proj.weight"] = [16, 3, 4, 4], ["patch_embed.proj.bias"] = [16],
            ["blocks.0.norm1.weight"] = [16], ["blocks.0.norm1.bias"] = [16],
            ["blocks.0.attn.qkv.weight"] = [48, 16], ["blocks.0.attn.qkv.bias"] = [48],
            ["blocks.0.attn.proj.weight"] = [16, 16], ["blocks.0.attn.proj.bias"] = [16],
            ["blocks.0.norm2.weight"] = [16], ["blocks.0.norm2.bias"] = [16],
            ["blocks.0.mlp.fc1.weight"] = [64, 16], ["blocks.0.mlp.fc1.bias"] = [64],
            ["blocks.0.mlp.fc2.weight"] = [16, 64], ["blocks.0.mlp.fc2.bias"] = [16],
            ["norm.weight"] = [16], ["norm.bias"] = [16],
        };
        Assert.Equal(expected.Keys.Order(), shapes.Keys.Order());
        foreach (var (name, shape) in expected) Assert.Equal(shape, shapes[name]);
        // Without a class token there is no cls_token and one position per patch.
        using var noClass = new VisionTransformer(OneBlock with { ClassToken = false }, 3);
        Assert.DoesNotContain(noClass.named_parameters(), p => p.name == "cls_token");
        Assert.Equal([1L, 16, 16], noClass.named_parameters().Single(p => p.name == "pos_embed").parameter.shape);
    }

    [Fact]
    public void ViT_B_16_costs_what_is_published()
    {
        // timm's vit_base_patch16_224 with its 1000-class classifier: 86,567,656 parameters and 17.58 GMACs (fvcore's count,
        // layer norms included); the attention matrix products are 0.715 G of it.
        var cost = DeployedCost.Of("vit_base_patch16_224", (224, 224), 3, "resnet18", 2);
        Assert.Equal(86_567_656L, cost.Parameters);
        Assert.Equal(17_582_740_224L, cost.Macs);
    }

    [Fact]
    public void The_token_grid_follows_the_input_size_and_the_position_embeddings_are_resized()
    {
        manual_seed(3);
        using var vit = new VisionTransformer(OneBlock, 3);
        vit.eval();
        using var _ = no_grad();
        var x = randn(2, 3, 16, 16);
        Assert.Equal([2L, 16, 4, 4], vit.call(x).shape);
        Assert.Equal([2L, 16, 6, 8], vit.call(randn(2, 3, 24, 32)).shape); // a 6×8 grid from the trained 4×4 one
        var tokens = vit.Tokens(x); // the class token first
        Assert.Equal([2L, 17, 16], tokens.shape);
        // A constant position embedding resizes to the same constant, so a larger image of a repeated pattern sees the same embedding everywhere.
        foreach (var (name, p) in vit.named_parameters())
            if (name == "pos_embed") p.fill_(0.5f);
        var tiled = randn(1, 3, 4, 4).repeat(1, 1, 6, 6); // 24×24: 36 identical patches
        var map = vit.call(tiled); // [1, 16, 6, 6]
        var first = map[.., .., 0, 0];
        Assert.True((map - first.unsqueeze(-1).unsqueeze(-1)).abs().max().item<float>() < 1e-4f, "identical patches with identical (resized) position embeddings give identical tokens");
    }

    [Theory]
    [InlineData("stl")]
    [InlineData("mtl")]
    public void STL_and_MTL_train_on_a_ViT(string architecture)
    {
        manual_seed(5);
        var tasks = new TaskSet([new TaskSpec("a", TaskKind.Classification, 4), new TaskSpec("b", TaskKind.Regression, 2)]);
        var config = new RunConfig
        {
            Backbone = new BackboneConfig { Name = "vit_cpu_patch4_32" },
            Architecture = Registry<ArchitectureConfig>.Default(architecture),
        };
        using var model = Factory.CreateModel(config, tasks, (3, 32, 32));
        var outputs = model.call(randn(2, 3, 32, 32));
        Assert.Equal([2L, 4], outputs["a"].shape);
        (outputs["a"].square().mean() + outputs["b"].square().mean()).backward();
        foreach (var (name, p) in model.named_parameters())
            Assert.True(p.grad is { } g && g.abs().sum().item<float>() > 0, $"{name} gets no gradient");
    }

    [Fact]
    public void InterroGate_refuses_a_ViT_until_it_has_a_gated_form()
    {
        var config = new RunConfig { Backbone = new BackboneConfig { Name = "vit_cpu_patch4_32" }, Architecture = new InterroGateConfig() };
        var e = Assert.Throws<ConfigException>(() => Factory.CreateModel(config, new TaskSet([new TaskSpec("a", TaskKind.Classification, 4)]), (3, 32, 32)));
        Assert.Equal("backbone.name", e.Key);
        Assert.Contains("vit_cpu_patch4_32", e.Message);
        // Without a plan there is no static network either: the cost of STL and MTL on it is counted as built.
        var mtl = DeployedCost.Of("mtl", (32, 32), 3, "vit_cpu_patch4_32", 2);
        var stl = DeployedCost.Of("stl", (32, 32), 3, "vit_cpu_patch4_32", 2);
        Assert.True(stl.Parameters > 1.9 * mtl.Parameters && stl.Macs > 1.9 * mtl.Macs, $"STL {stl.Macs} / MTL {mtl.Macs}");
    }

    [Fact]
    public void A_timm_state_dict_starts_an_MTL_model_and_its_classifier_is_listed_as_unexpected()
    {
        // A file laid out as timm saves a ViT: the encoder's tensors by name, plus its classifier "head".
        manual_seed(1);
        var spec = ViTSpec.Cpu4();
        using var source = new VisionTransformer(spec, 3);
        var tensors = source.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        tensors["head.weight"] = randn(1000, 64);
        tensors["head.bias"] = zeros(1000);
        string file = Path.Combine(Path.GetTempPath(), $"vit-timm-{Guid.NewGuid():N}.safetensors");
        try
        {
            SafeTensors.Save(file, tensors);
            var config = new RunConfig { Backbone = new BackboneConfig { Name = "vit_cpu_patch4_32" }, Architecture = new HardSharingConfig() };
            using var mtl = Factory.CreateModel(config, new TaskSet([new TaskSpec("a", TaskKind.Classification, 4)]), (3, 32, 32));
            var report = PretrainedWeights.Apply(mtl, file);
            Assert.Equal(["encoder"], report.Backbones);
            Assert.Empty(report.Missing);
            Assert.Equal(["head.bias", "head.weight"], report.Unexpected);
            Assert.True(mtl.state_dict()["encoder.blocks.3.mlp.fc2.weight"].equal(tensors["blocks.3.mlp.fc2.weight"]).all().item<bool>());
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public void Weights_saved_by_name_load_into_a_fresh_ViT()
    {
        manual_seed(1);
        using var a = new VisionTransformer(OneBlock, 3);
        manual_seed(2);
        using var b = new VisionTransformer(OneBlock, 3);
        string file = Path.Combine(Path.GetTempPath(), $"vit-{Guid.NewGuid():N}.safetensors");
        try
        {
            SafeTensors.SaveModule(file, a);
            SafeTensors.LoadInto(b, file); // by name, every tensor present and of its shape
            a.eval();
            b.eval();
            using var _ = no_grad();
            var x = randn(1, 3, 16, 16);
            Assert.True(a.call(x).equal(b.call(x)).all().item<bool>());
        }
        finally { File.Delete(file); }
    }
}
