using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Heads;
using InterroGate.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Tests.Backbones;

[Collection("Torch")]
public sealed class HRNetTests
{
    private static long Count(nn.Module m) => m.parameters().Sum(p => p.numel());

    /// <summary>
    /// Parameters and MACs of an HRNetV2 encoder in closed form, written from the structure of the official
    /// seg_hrnet.py (not from the module): stem, layer1, transitions, branches of BasicBlocks, fuse layers.
    /// Parameters: conv weights plus BN weight and bias. MACs: C_in·C_out·k²·H_out·W_out per convolution.
    /// </summary>
    private static (long Params, long Macs) ClosedForm(long width, int stage1Blocks, int[] modules, int blocks, long height, long widthPx, long inChannels = 3)
    {
        long p = 0, macs = 0;
        static long Half(long n) => (n + 1) / 2; // 3×3, stride 2, padding 1
        void Conv(long cin, long cout, long k, (long H, long W) size) { p += cin * cout * k * k; macs += cin * cout * k * k * size.H * size.W; }
        void Bn(long c) => p += 2 * c;

        var s2 = (Half(height), Half(widthPx));
        Conv(inChannels, 64, 3, s2); Bn(64);
        var s4 = (Half(s2.Item1), Half(s2.Item2));
        Conv(64, 64, 3, s4); Bn(64);
        for (int b = 0; b < stage1Blocks; b++)
        {
            long cin = b == 0 ? 64 : 256;
            Conv(cin, 64, 1, s4); Bn(64); Conv(64, 64, 3, s4); Bn(64); Conv(64, 256, 1, s4); Bn(256);
            if (b == 0) { Conv(64, 256, 1, s4); Bn(256); } // the projection shortcut
        }
        var sizes = new List<(long H, long W)> { s4 };
        var channels = new List<long> { 256 };
        for (int s = 0; s < modules.Length; s++)
        {
            int n = s + 2;
            var next = Enumerable.Range(0, n).Select(b => width << b).ToList();
            // Transition: the 256-channel stage-1 output gets a 3×3 to Width; the new branch a 3×3/2 from the lowest one.
            if (channels[0] != next[0]) { Conv(channels[0], next[0], 3, sizes[0]); Bn(next[0]); }
            var low = (Half(sizes[^1].H), Half(sizes[^1].W));
            Conv(channels[^1], next[^1], 3, low); Bn(next[^1]);
            sizes.Add(low);
            channels = next;
            for (int m = 0; m < modules[s]; m++)
            {
                for (int b = 0; b < n; b++)
                    for (int k = 0; k < 2 * blocks; k++) { Conv(channels[b], channels[b], 3, sizes[b]); Bn(channels[b]); }
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < n; j++)
                    {
                        if (j > i) { Conv(channels[j], channels[i], 1, sizes[j]); Bn(channels[i]); }
                        for (int k = 0; k < i - j; k++) // j < i: i − j stride-2 steps, the last one changes the width
                        {
                            long cout = k == i - j - 1 ? channels[i] : channels[j];
                            Conv(channels[j], cout, 3, sizes[j + k + 1]); Bn(cout);
                        }
                    }
            }
        }
        return (p, macs);
    }

    private static (long Params, long Macs) W18(long h, long w) => ClosedForm(18, 4, [1, 4, 3], 4, h, w);

    /// <summary>The head in closed form: 1×1 C→C (bias) + BN + 1×1 C→K (bias), at stride 4.</summary>
    private static (long Params, long Macs) HeadClosedForm(long c, long k, long h, long w)
    {
        long pixels = ((h + 1) / 2 + 1) / 2 * (((w + 1) / 2 + 1) / 2);
        return (c * c + c + 2 * c + c * k + k, (c * c + c * k) * pixels);
    }

    [Fact]
    public void Batch_norms_average_their_statistics_with_the_official_momentum()
    {
        var net = new HRNet(HRNetSpec.V2(), 3);
        var norms = net.modules().OfType<TorchSharp.Modules.BatchNorm2d>().ToArray();
        Assert.True(norms.Length > 100);
        Assert.All(norms, n => Assert.Equal(0.01, n.momentum));
        // And in every branch of an InterroGate encoder built on it.
        using var encoder = new InterroGate.Gating.GatedEncoder(["a", "b"], InterroGate.Tests.Gating.GatedHRNetTests.Tiny, 3, (32, 32),
            InterroGate.Gating.GatingMode.Conv, alphaInit: 1);
        var gated = encoder.modules().OfType<TorchSharp.Modules.BatchNorm2d>().ToArray();
        Assert.True(gated.Length > 20);
        Assert.All(gated, n => Assert.Equal(0.01, n.momentum));
    }

    [Fact]
    public void W18_outputs_270_channels_at_stride_4()
    {
        var net = new HRNet(HRNetSpec.V2(), 3);
        Assert.Equal(270, net.OutChannels);
        Assert.Equal(4, net.OutputStride);
        Assert.Equal(new long[] { 18, 36, 72, 144 }, net.BranchChannels);
        using var y = net.call(randn(2, 3, 64, 64));
        Assert.Equal(new long[] { 2, 270, 16, 16 }, y.shape);
        Assert.True(isfinite(y).all().item<bool>());
    }

    [Fact]
    public void Sizes_not_divisible_by_32_work_as_in_the_official_code()
    {
        // 50×70: stem 25×35 -> 13×18; each new branch halves rounding up (3×3/2, padding 1): 7×9, 4×5, 2×3.
        // The fuse layers upsample to the target branch's own size, so 2×3 -> 4×5 -> 7×9 -> 13×18 all add up.
        var net = new HRNet(HRNetSpec.V2(), 3);
        net.eval();
        using var x = randn(1, 3, 50, 70);
        var branches = net.Branches(x);
        Assert.Equal(new[] { (18L, 13L, 18L), (36L, 7L, 9L), (72L, 4L, 5L), (144L, 2L, 3L) },
            branches.Select(b => (b.shape[1], b.shape[2], b.shape[3])).ToArray());
        using var y = net.call(x);
        Assert.Equal(new long[] { 1, 270, 13, 18 }, y.shape);
    }

    [Fact]
    public void The_lower_branches_are_upsampled_bilinearly_without_aligned_corners()
    {
        var net = new HRNet(HRNetSpec.V2(), 3);
        net.eval();
        using var _ = no_grad();
        using var x = randn(1, 3, 64, 64);
        var branches = net.Branches(x);
        using var y = net.call(x);
        Assert.True(y.narrow(1, 0, 18).allclose(branches[0]));
        using var up = nn.functional.interpolate(branches[3], [16, 16], mode: InterpolationMode.Bilinear, align_corners: false);
        using var upAligned = nn.functional.interpolate(branches[3], [16, 16], mode: InterpolationMode.Bilinear, align_corners: true);
        Assert.True(y.narrow(1, 126, 144).allclose(up, rtol: 1e-5, atol: 1e-6));
        Assert.False(y.narrow(1, 126, 144).allclose(upAligned, rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void Parameter_counts_match_the_official_structure_and_published_figures()
    {
        // HRNetV2-W18 encoder (no head): 9,562,260, the closed form of seg_hrnet.py with the hrnet_w18 config.
        var w18 = W18(64, 64);
        Assert.Equal(9_562_260, w18.Params);
        Assert.Equal(w18.Params, Count(new HRNet(HRNetSpec.V2(), 3)));

        // The same closed form reproduces the official HRNet-Semantic-Segmentation README / TPAMI figures with
        // the 19-class Cityscapes head: HRNetV2-W48 65.9 M and HRNetV2-W18-Small-v2 3.9 M parameters.
        var w48 = ClosedForm(48, 4, [1, 4, 3], 4, 64, 64);
        Assert.Equal(65.9, Math.Round((w48.Params + HeadClosedForm(720, 19, 64, 64).Params) / 1e6, 1));
        using (var net48 = new HRNet(HRNetSpec.V2(48), 3)) Assert.Equal(w48.Params, Count(net48));
        Assert.Equal(HeadClosedForm(720, 19, 64, 64).Params, Count(new HrNetHead(720, 19)));
        var small = ClosedForm(18, 2, [1, 3, 2], 2, 64, 64);
        Assert.Equal(3.9, Math.Round((small.Params + HeadClosedForm(270, 19, 64, 64).Params) / 1e6, 1));
        Assert.Equal(small.Params, Count(new HRNet(HRNetSpec.W18SmallV2(), 3)));

        // The paper's Table 10, NYUD-v2 HRNet-18 (semseg 40 classes, depth 1, normals 3): MTL 9.8 M = E + ΣH, STL 28.9 M = Σ(E + H).
        long[] heads = [40, 1, 3];
        long headParams = heads.Sum(k => Count(new HrNetHead(270, k)));
        Assert.Equal(heads.Sum(k => HeadClosedForm(270, k, 64, 64).Params), headParams);
        Assert.Equal(9.8, Math.Round((w18.Params + headParams) / 1e6, 1));
        Assert.Equal(28.9, Math.Round((3 * w18.Params + headParams) / 1e6, 1));
    }

    [Fact]
    public void MTL_macs_at_NYUD_resolution_match_the_closed_form_and_the_paper()
    {
        // The paper's NYUD-v2 setting through the registry: MTL on hrnet18 with the default (auto: HRNet) heads.
        var tasks = new TaskSet([new TaskSpec("semseg", TaskKind.Segmentation, 40), new TaskSpec("depth", TaskKind.Depth, 1), new TaskSpec("normals", TaskKind.Normals, 3)]);
        var config = new RunConfig { Data = new DataConfig { Dataset = "synthetic" }, Backbone = new BackboneConfig { Name = "hrnet18" }, Architecture = new HardSharingConfig() };
        var model = Factory.CreateModel(config, tasks, (3, 480, 640));
        var expected = W18(480, 640);
        Assert.Equal(20_093_774_400, expected.Macs);
        var r = CostCounter.Count(model, x => model.call(x), [1, 3, 480, 640]);
        Assert.Equal(expected.Macs, r.Layers.Where(l => l.Name.StartsWith("encoder.", StringComparison.Ordinal)).Sum(l => l.Macs));
        foreach (var t in tasks)
            Assert.Equal(HeadClosedForm(270, t.Outputs, 480, 640).Macs, r.Layers.Where(l => l.Name.StartsWith($"heads.{t.Name}.", StringComparison.Ordinal)).Sum(l => l.Macs));
        Assert.Equal(expected.Params + tasks.Sum(t => HeadClosedForm(270, t.Outputs, 480, 640).Params), r.Params);

        // The paper's Table 10 implies E ≈ 20.3 G and H ≈ 1.4 G from Table 10 (MTL 24.5 G = E + ΣH, STL 65.1 G = Σ(E + H));
        // its "GFlops" are MACs at 480×640. Heads at 120×160: 19,200 · 270 · (270 + K). bench/RESULTS.md: 24.52 G.
        long headMacs = new long[] { 40, 1, 3 }.Sum(k => HeadClosedForm(270, k, 480, 640).Macs);
        Assert.Equal(19_200L * 270 * (3 * 270 + 44), headMacs);
        Assert.Equal(expected.Macs + headMacs, r.Macs);
        Assert.Equal(24.52, Math.Round(r.Macs / 1e9, 2));
        Assert.Equal(24.5, Math.Round(r.Macs / 1e9, 1));
        Assert.InRange((3.0 * expected.Macs + headMacs) / 65.1e9, 0.99, 1.0);
        Assert.InRange(expected.Macs / 20.3e9, 0.98, 1.0);

        // The 448×576 training crop (stride-4 map 112×144), in closed form only: a second forward costs seconds.
        Assert.Equal(16_878_770_496, W18(448, 576).Macs);
    }

    [Theory]
    [InlineData(40L)]
    [InlineData(1L)]
    [InlineData(3L)]
    public void Head_keeps_stride_4_and_counts_its_two_convolutions(long outputs)
    {
        var head = new HrNetHead(270, outputs);
        var r = CostCounter.Count(head, x => head.call(x), [1, 270, 120, 160]);
        Assert.Equal(HeadClosedForm(270, outputs, 480, 640).Macs, r.Macs);
        Assert.Equal(HeadClosedForm(270, outputs, 480, 640).Params, r.Params);
        using var y = head.call(randn(2, 270, 13, 18));
        Assert.Equal(new long[] { 2, outputs, 13, 18 }, y.shape);
    }

    [Fact]
    public void A_gradient_reaches_every_parameter()
    {
        var net = new HRNet(HRNetSpec.V2(), 3);
        var head = new HrNetHead(net.OutChannels, 3);
        using var y = head.call(net.call(randn(2, 3, 64, 64)));
        y.sum().backward();
        foreach (var (name, p) in net.named_parameters().Concat(head.named_parameters()))
        {
            Assert.True(p.grad is not null, $"{name} has no gradient");
            Assert.True(isfinite(p.grad!).all().item<bool>(), $"{name} has a non-finite gradient");
            Assert.True(p.grad!.abs().sum().item<float>() > 0, $"{name} has a zero gradient");
        }
    }

    [Fact]
    public void State_dict_keys_are_the_official_ones()
    {
        var keys = new HRNet(HRNetSpec.V2(), 3).state_dict().Keys.ToHashSet();
        foreach (var k in new[]
                 {
                     "conv1.weight", "bn1.running_mean", "conv2.weight", "bn2.num_batches_tracked",
                     "layer1.0.conv1.weight", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_var", "layer1.3.bn3.bias",
                     "transition1.0.0.weight", "transition1.0.1.weight", "transition1.1.0.0.weight", "transition1.1.0.1.running_mean",
                     "transition2.2.0.0.weight", "transition3.3.0.0.weight",
                     "stage2.0.branches.0.0.conv1.weight", "stage2.0.branches.1.3.bn2.bias",
                     "stage2.0.fuse_layers.0.1.0.weight", "stage2.0.fuse_layers.0.1.1.running_var", "stage2.0.fuse_layers.1.0.0.0.weight",
                     "stage3.3.fuse_layers.2.0.1.0.weight", "stage3.3.fuse_layers.2.0.1.1.bias",
                     "stage4.2.branches.3.3.conv2.weight", "stage4.2.fuse_layers.3.0.2.1.running_mean", "stage4.2.fuse_layers.0.3.0.weight",
                 })
            Assert.Contains(k, keys);
        // Empty slots (identity transitions and the fuse layer of a branch into itself) hold no keys, as None in PyTorch.
        Assert.DoesNotContain(keys, k => k.StartsWith("transition2.0.", StringComparison.Ordinal) || k.StartsWith("transition3.2.", StringComparison.Ordinal));
        Assert.DoesNotContain(keys, k => k.StartsWith("stage3.0.fuse_layers.1.1.", StringComparison.Ordinal));
        // A ReLU has no state: the last step of a higher-to-lower chain is conv + BN only.
        Assert.DoesNotContain(keys, k => k.StartsWith("stage4.2.fuse_layers.3.0.2.2", StringComparison.Ordinal));
        // Branch inputs already have the branch width, so no block inside a stage has a projection shortcut.
        Assert.DoesNotContain(keys, k => k.StartsWith("stage", StringComparison.Ordinal) && k.Contains(".downsample.", StringComparison.Ordinal));
        string[] roots = ["conv1.", "bn1.", "conv2.", "bn2.", "layer1.", "transition1.", "transition2.", "transition3.", "stage2.", "stage3.", "stage4."];
        Assert.All(keys, k => Assert.Contains(roots, r => k.StartsWith(r, StringComparison.Ordinal)));

        var head = new HrNetHead(270, 40).state_dict().Keys.ToHashSet();
        Assert.Equal(new[] { "last_layer.0.bias", "last_layer.0.weight", "last_layer.1.bias", "last_layer.1.num_batches_tracked",
                             "last_layer.1.running_mean", "last_layer.1.running_var", "last_layer.1.weight",
                             "last_layer.3.bias", "last_layer.3.weight" }, head.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void A_state_dict_loads_by_name_into_a_fresh_network()
    {
        var a = new HRNet(HRNetSpec.V2(8), 3);
        var b = new HRNet(HRNetSpec.V2(8), 3);
        a.eval(); b.eval();
        using var x = randn(1, 3, 32, 32);
        using var _ = no_grad();
        Assert.False(a.call(x).allclose(b.call(x)));
        b.load_state_dict(a.state_dict());
        Assert.True(a.call(x).allclose(b.call(x)));
    }

    [Fact]
    public void Converts_to_another_dtype_as_a_device_move_would()
    {
        // Module.to walks every registered child: the slot lists and module lists must survive it (see ModuleMap).
        var net = new HRNet(HRNetSpec.V2(8), 3);
        net.to(float64);
        Assert.All(net.parameters(), p => Assert.Equal(ScalarType.Float64, p.dtype));
        using var y = net.call(randn(2, 3, 32, 32, dtype: ScalarType.Float64));
        Assert.Equal(ScalarType.Float64, y.dtype);
    }

    [Theory]
    [InlineData(8L, 1L)]
    [InlineData(32L, 4L)]
    public void Width_and_input_channels_are_parameters(long width, long inChannels)
    {
        var net = new HRNet(HRNetSpec.V2(width), inChannels);
        Assert.Equal(15 * width, net.OutChannels);
        Assert.Equal(new[] { width, 2 * width, 4 * width, 8 * width }, net.BranchChannels);
        Assert.Equal(ClosedForm(width, 4, [1, 4, 3], 4, 32, 32, inChannels).Params, Count(net));
        using var y = net.call(randn(2, inChannels, 32, 32));
        Assert.Equal(new long[] { 2, 15 * width, 8, 8 }, y.shape);
    }

    [Fact]
    public void The_structure_is_exposed_for_walking()
    {
        var net = new HRNet(HRNetSpec.V2(), 3);
        Assert.Equal(4, net.Layer1.Count);
        Assert.Equal(new[] { 1, 4, 3 }, net.Stages.Select(s => s.Count).ToArray());
        Assert.Equal(3, net.Transitions.Count);
        Assert.Null(net.Transitions[1][0]);
        Assert.NotNull(net.Transitions[1][2]);
        var module = net.Stages[2][0];
        Assert.Equal(new long[] { 18, 36, 72, 144 }, module.BranchChannels);
        Assert.Equal(4, module.Branches.Count);
        Assert.Null(module.FuseLayer(2, 2));
        Assert.NotNull(module.FuseLayer(0, 3));
    }

    [Fact]
    public void Bad_arguments_are_rejected_with_the_valid_range()
    {
        Assert.Contains("> 0", Assert.Throws<ArgumentOutOfRangeException>(() => HRNetSpec.V2(0)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new HRNet(HRNetSpec.V2(), 0));
        Assert.Contains("1 to 3", Assert.Throws<ArgumentException>(() => new HRNet(HRNetSpec.V2() with { StageModules = [] }, 3)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new HrNetHead(270, 0));
    }
}
