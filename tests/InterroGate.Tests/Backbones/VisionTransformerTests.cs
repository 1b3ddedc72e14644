using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Export;
using InterroGate.Gating;
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
    public void STL_and_MTL_on_a_ViT_give_every_parameter_a_gradient(string architecture)
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

    private static InterroGateModel Gated(GatingMode gating, double alpha, int seed = 0)
    {
        manual_seed(seed);
        var tasks = new TaskSet([new TaskSpec("a", TaskKind.Classification, 4), new TaskSpec("b", TaskKind.Regression, 2)]);
        var model = new InterroGateModel(tasks, ViTSpec.Cpu4(), 3, (32, 32), new InterroGateConfig { Gating = gating, AlphaInit = alpha });
        using var _ = no_grad();
        foreach (var g in model.Encoder.GateLayers) g.Beta?.copy_(randn_like(g.Beta) * 2);
        return model;
    }

    [Fact]
    public void InterroGate_gates_every_linear_projection_of_a_ViT_and_counts_q_k_v_as_three_layers()
    {
        using var conv = Gated(GatingMode.Conv, 0.01);
        var gated = conv.Encoder.Units.Where(u => u.Gated).Select(u => u.Name).ToArray();
        Assert.Equal(1 + 4 * 4, gated.Length); // the patch embedding, then q/k/v, attention output, fc1 and fc2 of each block
        Assert.Equal(["patch_embed", "blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2"], gated[..5]);
        Assert.Equal(3, conv.Encoder.GateLayers[1].Parts);
        Assert.Equal(192, conv.Encoder.GateLayers[1].Channels);
        // The last fc2 feeds only the final norm the heads read: no mix; every other gate layer mixes.
        Assert.Equal(Enumerable.Repeat(true, 16).Append(false), conv.Encoder.GateLayers.Select(g => g.Beta is not null));
        // The attention products are an operation's cost: 2·N²·D per branch, N = 65 tokens (the class token and 8×8 patches).
        Assert.Equal(2L * 65 * 65 * 64, conv.Encoder.Units.Single(u => u.Name == "blocks.0.attn.core").OpMacs);

        // Eq. 4 with q, k and v as three layers: the qkv layer's mean usage weighs 3/(1 + 4·6)... of the 25 layers.
        using (no_grad())
            for (int l = 0; l < conv.Encoder.GateLayers.Count; l++) conv.Encoder.GateLayers[l].Alpha.fill_(l % 2 == 0 ? 2.0 : -1.0);
        double[] usage = conv.Encoder.GateLayers.Select((g, l) => 1 / (1 + Math.Exp(-(l % 2 == 0 ? 2.0 : -1.0)))).ToArray();
        int[] parts = conv.Encoder.GateLayers.Select(g => g.Parts).ToArray();
        double expected = usage.Zip(parts, (u, p) => u * p).Sum() / parts.Sum() * conv.Options.LambdaS; // τ = 0 (the default budget), both tasks alike
        Assert.Equal(expected, conv.Regularizer()!.item<float>(), 1e-4);

        using var block = Gated(GatingMode.Block, 0.01);
        Assert.Equal(["patch_embed", "blocks.0.attn.proj", "blocks.0.mlp.fc2"], block.Encoder.Units.Where(u => u.Gated).Select(u => u.Name).Take(3));
    }

    [Fact]
    public void Open_gates_give_each_task_its_own_ViT_and_closed_gates_the_shared_one()
    {
        var x = randn(2, 3, 32, 32);
        using var _ = no_grad();
        using var open = Gated(GatingMode.Conv, 1);
        open.eval();
        var features = open.Encoder.call(x);
        for (int t = 0; t < 2; t++)
            Assert.True((features[t] - open.Encoder.TaskBranch(t).call(x)).abs().max().item<float>() < 1e-5f, $"task {t}: {(features[t] - open.Encoder.TaskBranch(t).call(x)).abs().max().item<float>()}");
        Assert.False(features[0].allclose(features[1]));
        using var closed = Gated(GatingMode.Conv, -1);
        closed.eval();
        var shared = closed.Encoder.SharedBranch.call(x);
        foreach (var f in closed.Encoder.call(x))
            Assert.True((f - shared).abs().max().item<float>() < 1e-5f * shared.abs().max().item<float>(), $"{(f - shared).abs().max().item<float>()} of {shared.abs().max().item<float>()}");
    }

    [Fact]
    public void A_gated_ViT_trains_its_gates_and_every_branch()
    {
        using var model = Gated(GatingMode.Conv, 0.01);
        using (no_grad())
            foreach (var g in model.Encoder.GateLayers) g.Alpha.copy_(randn_like(g.Alpha));
        var outputs = model.call(randn(4, 3, 32, 32));
        (outputs["a"].square().mean() + outputs["b"].square().mean() + model.Regularizer()!).backward();
        foreach (var g in model.Encoder.GateLayers)
            Assert.True(g.Alpha.grad is { } a && a.abs().sum().item<float>() > 0);
        for (int b = 0; b <= 2; b++)
            Assert.True(model.Encoder.Branch(b).parameters().Count(p => p.grad is { } gr && gr.abs().sum().item<float>() > 0) > 30, $"branch {b}");
    }

    [Fact]
    public void A_class_token_readout_classifies_the_class_token_and_prunes_and_exports()
    {
        var tasks = new TaskSet([new TaskSpec("a", TaskKind.Classification, 4), new TaskSpec("b", TaskKind.Binary, 3)]);
        var config = new RunConfig
        {
            Backbone = new BackboneConfig { Name = "vit_cpu_patch4_32" }, Head = new InterroGate.Heads.HeadConfig { Pool = "class-token" },
            Architecture = new InterroGateConfig { AlphaInit = 0.01 },
        };
        using var model = (InterroGateModel)Factory.CreateModel(config, tasks, (3, 32, 32));
        Assert.True(((ViTSpec)model.Spec).ClassTokenReadout);
        Tests.Pruning.PrunerTests.RandomiseNorms(model);
        Tests.Pruning.PrunerTests.SetGates(model, Tests.Pruning.PrunerTests.Pattern.Random);
        // What the heads read is the class token after the final norm, one 1×1 map per task.
        model.eval();
        using (no_grad())
        {
            var x = randn(1, 3, 32, 32);
            var features = model.Encoder.call(x);
            Assert.Equal([1L, 64, 1, 1], features[0].shape);
        }
        model.train();
        var pruned = Tests.Pruning.PrunerTests.PruneAndCompare(model, 32, tasks);
        Assert.Equal(DeployedCost.OfModel(model, (3, 32, 32)), (pruned.Report.MacsAfter, pruned.Report.ParametersAfter));
        Assert.Contains(pruned.Graph.Nodes, n => n.Op == InterroGate.Pruning.StaticOp.ClassToken);
        string file = Path.Combine(Path.GetTempPath(), $"vit-cls-{Guid.NewGuid():N}.onnx");
        try { Tests.Export.ExportTests.OnnxMatches(pruned.Graph, file); }
        finally { File.Delete(file); }

        // The plain ViT reads out the same token: its forward is the normed class token of Tokens.
        using var vit = new VisionTransformer(OneBlock with { ClassTokenReadout = true }, 3);
        vit.eval();
        using (no_grad())
        {
            var x = randn(2, 3, 16, 16);
            Assert.True(vit.call(x).flatten(1).allclose(vit.Tokens(x)[.., 0]));
        }
        // Where it cannot be: dense tasks, or a ViT without a class token.
        var dense = new TaskSet([new TaskSpec("d", TaskKind.Depth, 1)]);
        Assert.Equal("head.pool", Assert.Throws<ConfigException>(() => Factory.CreateModel(config, dense, (3, 32, 32))).Key);
        Assert.Equal("head.pool", Assert.Throws<ConfigException>(() => Factory.CreateModel(config with { Backbone = new BackboneConfig { Name = "resnet20" } }, tasks, (3, 32, 32))).Key);
    }

    [Fact]
    public void Output_blocks_hand_their_token_maps_to_the_heads_and_later_blocks_are_not_run()
    {
        var spec = OneBlock with { Depth = 3, OutputBlocks = [0, 1] };
        manual_seed(2);
        using var vit = new VisionTransformer(spec, 3);
        vit.eval();
        var x = randn(2, 3, 16, 16);
        // Each block's map: its 16 patch channels, then the class token's 16 beside every patch (for DPT's readout).
        using (no_grad())
        {
            var maps = vit.call(x);
            Assert.Equal([2L, 64, 4, 4], maps.shape);
            var cls = maps[.., 16..32];
            Assert.True((cls - cls[.., .., 0..1, 0..1]).abs().max().item<float>() == 0, "the class token is the same at every position");
            Assert.True((cls[.., .., 0, 0] - maps[.., 0..16].mean([2, 3])).abs().max().item<float>() > 1e-4f, "and not the patches' mean");
        }
        Assert.Equal(64, vit.OutChannels);
        // The plan ends with block 1's map: block 2 is not part of it, and the gated encoder gives the same features.
        Assert.DoesNotContain(vit.Plan().Units, u => u.Name.StartsWith("blocks.2.", StringComparison.Ordinal));
        using var gated = new GatedEncoder(["a", "b"], spec, 3, (16, 16), GatingMode.Conv, -1);
        gated.eval();
        using (no_grad())
        {
            var shared = gated.SharedBranch.call(x);
            Assert.Equal([2L, 64, 4, 4], shared.shape);
            foreach (var f in gated.call(x)) Assert.True((f - shared).abs().max().item<float>() < 1e-5f);
        }
    }

    [Fact]
    public void Image_sizes_that_are_not_multiples_of_the_patch_size_are_refused()
    {
        var config = new RunConfig { Backbone = new BackboneConfig { Name = "vit_cpu_patch4_32" }, Architecture = new InterroGateConfig() };
        var e = Assert.Throws<ConfigException>(() => Factory.CreateModel(config, new TaskSet([new TaskSpec("a", TaskKind.Classification, 4)]), (3, 30, 32)));
        Assert.Equal("backbone.name", e.Key);
        Assert.Contains("multiples of 4", e.Message);
        using var vit = new VisionTransformer(OneBlock, 3);
        Assert.Contains("multiples of 4", Assert.Throws<ArgumentException>(() => vit.call(randn(1, 3, 18, 16))).Message);
        // STL and MTL on a ViT have a static form too (the plan): STL's costs about twice MTL's for two tasks.
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
    public void Weights_of_another_patch_or_width_are_refused_and_another_grid_is_resized()
    {
        string file = Path.Combine(Path.GetTempPath(), $"vit-fit-{Guid.NewGuid():N}.safetensors");
        try
        {
            var config = new RunConfig { Backbone = new BackboneConfig { Name = "vit_cpu_patch4_32" }, Architecture = new HardSharingConfig() };
            using var mtl = Factory.CreateModel(config, new TaskSet([new TaskSpec("a", TaskKind.Classification, 4)]), (3, 32, 32));
            Dictionary<string, Tensor> Weights(ViTSpec spec)
            {
                using var source = new VisionTransformer(spec, 3);
                return source.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
            }
            // Patches of 2 (same width): refused, naming both.
            SafeTensors.Save(file, Weights(ViTSpec.Cpu4() with { PatchSize = 2 }));
            var patch = Assert.Throws<InterroGate.Data.DataFormatException>(() => PretrainedWeights.Apply(mtl, file));
            Assert.Contains("patches of 2 and width 64", patch.Message);
            Assert.Contains("patches of 4 and width 64", patch.Message);
            // Another width: refused.
            SafeTensors.Save(file, Weights(ViTSpec.Cpu4() with { EmbedDim = 32, Heads = 2 }));
            Assert.Contains("width 32", Assert.Throws<InterroGate.Data.DataFormatException>(() => PretrainedWeights.Apply(mtl, file)).Message);
            // Trained at 48×48 (a 12×12 grid): the position embeddings are resized to the 8×8 grid, everything loads.
            var larger = Weights(ViTSpec.Cpu4() with { TrainedSize = 48 });
            SafeTensors.Save(file, larger);
            var report = PretrainedWeights.Apply(mtl, file);
            Assert.Equal(["pos_embed from a 12×12 grid to 8×8"], report.Adapted);
            Assert.Empty(report.Mismatched);
            var expected = VisionTransformer.ResizePositions(larger["pos_embed"], 1, 12, 12, 8, 8);
            Assert.True(mtl.state_dict()["encoder.pos_embed"].allclose(expected));
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public void Position_embeddings_resize_as_a_row_major_grid_and_keep_the_class_token()
    {
        // A 3×5 grid to 6×4 (neither square nor the same aspect, so a transposed or column-major reading shows): the
        // expected tokens are built element by element, patch (i, j) at token 1 + i·gw + j, and bicubic-resized as an
        // image with the embedding dimensions as channels (what timm does).
        manual_seed(5);
        const long gh = 3, gw = 5, h = 6, w = 4, d = 2;
        var pos = randn(1, 1 + gh * gw, d);
        var grid = zeros(1, d, gh, gw);
        for (long i = 0; i < gh; i++)
            for (long j = 0; j < gw; j++)
                for (long c = 0; c < d; c++)
                    grid[0, c, i, j] = pos[0, 1 + i * gw + j, c];
        var image = nn.functional.interpolate(grid, [h, w], mode: InterpolationMode.Bicubic, align_corners: false);
        var resized = VisionTransformer.ResizePositions(pos, 1, gh, gw, h, w);
        Assert.Equal([1L, 1 + h * w, d], resized.shape);
        Assert.True(resized[0, 0].equal(pos[0, 0]).all().item<bool>(), "the class token is kept as it is");
        for (long i = 0; i < h; i++)
            for (long j = 0; j < w; j++)
                for (long c = 0; c < d; c++)
                    Assert.Equal(image[0, c, i, j].item<float>(), resized[0, 1 + i * w + j, c].item<float>(), 1e-6f);
        // An embedding that varies along the columns only stays so: every row of the result is the same.
        var columns = arange(gw, dtype: float32).repeat(gh).reshape(1, gh * gw, 1);
        var byColumn = VisionTransformer.ResizePositions(columns, 0, gh, gw, h, w).reshape(h, w);
        Assert.True((byColumn - byColumn[0]).abs().max().item<float>() < 1e-5f);
        Assert.True(byColumn[0, w - 1].item<float>() > byColumn[0, 0].item<float>() + 2, "columns increase left to right");
        // The same size is the identity.
        Assert.True(VisionTransformer.ResizePositions(pos, 1, gh, gw, gh, gw).allclose(pos, rtol: 1e-5, atol: 1e-6));
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
