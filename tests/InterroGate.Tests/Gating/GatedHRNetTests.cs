using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Gating;
using InterroGate.Tests.Pruning;
using static TorchSharp.torch;

namespace InterroGate.Tests.Gating;

/// <summary>The gated HRNet: every task its own HRNet with its gates open, the shared one with them closed, gradients to the gates.</summary>
[Collection("Torch")]
public sealed class GatedHRNetTests
{
    private static readonly string[] TaskNames = ["a", "b", "c"];

    /// <summary>Two stages of one module of one block per branch, Width 4: every kind of unit, a two-step fuse path included.</summary>
    internal static readonly HRNetSpec Tiny = new("tiny", 4, 1, [1, 1], 1);

    private static HRNetSpec Spec(string name) => name == "tiny" ? Tiny : HRNetSpec.W18SmallV2();

    private static GatedEncoder Encoder(HRNetSpec spec, int size, int seed = 0)
    {
        manual_seed(seed);
        var encoder = new GatedEncoder(TaskNames, spec, 3, (size, size), GatingMode.Conv, alphaInit: 1);
        PrunerTests.RandomiseNorms(encoder);
        using var _ = no_grad();
        foreach (var g in encoder.GateLayers) g.Beta?.copy_(randn_like(g.Beta) * 2);
        return encoder;
    }

    private static double RelativeError(Tensor a, Tensor b) => (a - b).abs().max().item<float>() / Math.Max(b.abs().max().item<float>(), 1e-12f);

    [Theory]
    [InlineData("tiny", 32)]
    [InlineData("small", 32)]
    public void With_all_gates_open_each_task_runs_its_own_HRNet_and_with_all_closed_the_shared_one(string name, int size)
    {
        var encoder = Encoder(Spec(name), size);
        encoder.eval();
        var x = randn(2, 3, size, size);
        using var _ = no_grad();

        var open = encoder.call(x);
        Assert.Equal(TaskNames.Length, open.Length);
        for (int t = 0; t < TaskNames.Length; t++)
        {
            var own = encoder.TaskBranch(t).call(x);
            Assert.Equal(own.shape, open[t].shape);
            Assert.True(open[t].equal(own).all().item<bool>(), $"task {t}: {RelativeError(open[t], own)}"); // G = 1 picks the own copy exactly
        }

        foreach (var g in encoder.GateLayers) g.Alpha.fill_(-1);
        var closed = encoder.call(x);
        var shared = encoder.SharedBranch.call(x);
        for (int t = 0; t < TaskNames.Length; t++)
            Assert.True(RelativeError(closed[t], shared) <= 1e-5, $"task {t}: {RelativeError(closed[t], shared)}"); // the mix weights sum to 1 up to rounding
    }

    [Fact]
    public void Mixed_gates_differ_from_both_ends_and_the_gradient_reaches_every_gate_and_mix()
    {
        var encoder = Encoder(Tiny, 32);
        using (no_grad())
            foreach (var g in encoder.GateLayers) g.Alpha.copy_(randn_like(g.Alpha));
        encoder.train();
        var x = randn(2, 3, 32, 32);
        var features = encoder.call(x);
        using (no_grad())
            for (int t = 0; t < TaskNames.Length; t++)
            {
                Assert.True(RelativeError(features[t], encoder.TaskBranch(t).call(x)) > 1e-3);
                Assert.True(RelativeError(features[t], encoder.SharedBranch.call(x)) > 1e-3);
            }
        features.Select((f, t) => f.square().mean() * (t + 1)).Aggregate((a, b) => a + b).backward();
        for (int i = 0; i < encoder.GateLayers.Count; i++)
        {
            var g = encoder.GateLayers[i];
            Assert.True(g.Alpha.grad is { } da && da.abs().sum().item<float>() > 0, $"α of {encoder.Units[i].Name}");
            if (g.Beta is not null) Assert.True(g.Beta.grad is { } db && db.abs().sum().item<float>() > 0, $"β of {encoder.Units[i].Name}");
        }
        Assert.All(encoder.SharedParameters(), p => Assert.NotNull(p.grad));
    }

    [Fact]
    public void Every_convolution_sits_in_one_gated_unit_and_the_units_add_up_to_the_HRNet()
    {
        // Tiny: stem 2, layer1 3, transition1 2, stage2 2×2 + 2 fuse outputs, transition2 1, stage3 3×2 + 3 fuse outputs + 1 inner step.
        var tiny = new GatedEncoder(["a", "b"], Tiny, 3, (40, 56), GatingMode.Conv, alphaInit: 1);
        Assert.Equal(24, tiny.GateLayers.Count);
        Assert.Equal(tiny.Plan.Outputs, Enumerable.Range(0, 24).Where(u => tiny.GateLayers[u].Beta is null));
        Assert.Equal(new[] { "stage3.0.fuse_layers.0", "stage3.0.fuse_layers.1", "stage3.0.fuse_layers.2" }, tiny.Plan.Outputs.Select(u => tiny.Units[u].Name));
        Assert.Contains(tiny.Units, u => u.Name == "stage3.0.fuse_layers.2.0.0");
        Assert.Equal(new long[] { 4, 8, 16 }, tiny.Plan.Outputs.Select(u => tiny.Units[u].OutChannels));

        // Every convolution of one branch, counted once: the units' MACs and weights are the plain HRNet's.
        foreach (var (spec, h, w) in new[] { (Tiny, 40, 56), (HRNetSpec.W18SmallV2(), 50, 70), (HRNetSpec.V2(), 64, 64) })
        {
            var encoder = spec == Tiny ? tiny : new GatedEncoder(["a"], spec, 3, (h, w), GatingMode.Conv, alphaInit: 1);
            var plain = encoder.SharedBranch;
            var counted = CostCounter.Count(plain, x => plain.call(x), [1, 3, h, w]);
            Assert.Equal(counted.Macs, (long)encoder.GatedLayerMacs().Sum());
            long convWeights = plain.modules().OfType<TorchSharp.Modules.Conv2d>().Sum(c => c.weight!.numel());
            Assert.Equal(convWeights, encoder.Units.Sum(u => u.OutChannels * u.Convs.Sum(c => c.ParametersPerFilter - 1)));
        }
    }

    [Fact]
    public void Block_gating_gates_the_units_that_end_a_block_and_leaves_the_inner_units_of_residual_blocks_ungated()
    {
        var tasks = PrunerTests.Tasks;
        using var block = new InterroGateModel(tasks, Tiny, 3, (32, 32), new InterroGateConfig { Gating = GatingMode.Block });
        using var conv = new InterroGateModel(tasks, Tiny, 3, (32, 32), new InterroGateConfig());
        Assert.IsType<HRNet>(block.Encoder.SharedBranch);
        Assert.Equal(Tiny.OutChannels, block.Encoder.OutChannels);
        var ungated = block.Encoder.Units.Where(u => !u.Gated).Select(u => u.Name).ToArray();
        // Tiny: layer1 (one Bottleneck: conv1, conv2 inner), stage2 two branches and stage3 three of one BasicBlock (conv1 inner).
        Assert.Equal(["layer1.0.conv1", "layer1.0.conv2", "stage2.0.branches.0.0.conv1", "stage2.0.branches.1.0.conv1",
                      "stage3.0.branches.0.0.conv1", "stage3.0.branches.1.0.conv1", "stage3.0.branches.2.0.conv1"], ungated);
        Assert.Equal(conv.Encoder.GateLayers.Count - ungated.Length, block.Encoder.GateLayers.Count);
        Assert.All(block.Encoder.Units.Where(u => !u.Gated), u => Assert.False(u.HasMix));
    }

    [Fact]
    public void In_the_model_every_parameter_gets_a_gradient()
    {
        manual_seed(7);
        var tasks = PrunerTests.Tasks;
        var model = new InterroGateModel(tasks, Tiny, 2, (32, 32), new InterroGateConfig { Tau = [0.2] });
        using (no_grad())
            foreach (var g in model.Encoder.GateLayers)
            {
                // Every copy is read: channel 0 task-specific for all tasks, channel 1 shared by all, the rest random.
                g.Alpha.copy_(randn_like(g.Alpha));
                g.Alpha[.., 0] = 1;
                g.Alpha[.., 1] = -1;
            }
        var outputs = model.call(randn(3, 2, 32, 32));
        Tensor total = model.Regularizer()!;
        foreach (var t in tasks)
        {
            Assert.Equal(new long[] { 3, t.Outputs }, outputs[t.Name].shape);
            total = total + outputs[t.Name].square().mean();
        }
        total.backward();
        foreach (var (name, p) in model.named_parameters())
        {
            Assert.True(p.grad is not null, $"{name} has no gradient");
            Assert.True(p.grad!.isfinite().all().item<bool>() && p.grad.abs().sum().item<float>() > 0, $"{name}: {p.grad.abs().sum().item<float>()}");
        }
    }
}
