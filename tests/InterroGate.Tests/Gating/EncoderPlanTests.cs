using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Gating;
using InterroGate.Tests.Pruning;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Tests.Gating;

/// <summary>
/// A backbone family the library has never seen, given as a spec and a plan only: the one gated encoder runs it, the
/// pruner prunes it to the gated model's outputs, and its pruned cost is the static network's.
/// </summary>
[Collection("Torch")]
public sealed class EncoderPlanTests
{
    /// <summary>
    /// a: 3×3/2 conv; b: 3×3 conv of a plus a 1×1 projection of a; c: 3×3/2 conv of b; d: the 1×1 of c upsampled to b's
    /// size plus b itself. The heads read d and c, c upsampled to d's size and concatenated (6 + 8 channels).
    /// </summary>
    private sealed class Toy : nn.Module<Tensor, Tensor>, IPlannedEncoder
    {
        private readonly Conv2d conv_a, conv_b, proj_b, conv_c, conv_d;
        private readonly BatchNorm2d bn_a, bn_b, bnproj_b, bn_c, bn_d;

        public Toy(long inChannels) : base(nameof(Toy))
        {
            InChannels = inChannels;
            conv_a = nn.Conv2d(inChannels, 4, 3, stride: 2, padding: 1, bias: false);
            bn_a = nn.BatchNorm2d(4);
            conv_b = nn.Conv2d(4, 6, 3, padding: 1, bias: false);
            bn_b = nn.BatchNorm2d(6);
            proj_b = nn.Conv2d(4, 6, 1, bias: false);
            bnproj_b = nn.BatchNorm2d(6);
            conv_c = nn.Conv2d(6, 8, 3, stride: 2, padding: 1, bias: false);
            bn_c = nn.BatchNorm2d(8);
            conv_d = nn.Conv2d(8, 6, 1, bias: false);
            bn_d = nn.BatchNorm2d(6);
            RegisterComponents();
        }

        public long InChannels { get; }
        public long OutChannels => 14;

        private static Tensor Up(Tensor x, Tensor like) =>
            nn.functional.interpolate(x, [like.shape[2], like.shape[3]], mode: InterpolationMode.Bilinear, align_corners: false);

        public override Tensor forward(Tensor x)
        {
            var a = nn.functional.relu(bn_a.call(conv_a.call(x)));
            var b = nn.functional.relu(bn_b.call(conv_b.call(a)) + bnproj_b.call(proj_b.call(a)));
            var c = nn.functional.relu(bn_c.call(conv_c.call(b)));
            var d = nn.functional.relu(Up(bn_d.call(conv_d.call(c)), b) + b);
            return cat([d, Up(c, d)], 1);
        }

        public EncoderPlan Plan()
        {
            static Toy T(nn.Module n) => (Toy)n;
            return new EncoderPlan(
            [
                new PlanUnit("a", [new PlanTerm(EncoderPlan.Image, n => (T(n).conv_a, T(n).bn_a))]),
                new PlanUnit("b", [new PlanTerm(0, n => (T(n).conv_b, T(n).bn_b)), new PlanTerm(0, n => (T(n).proj_b, T(n).bnproj_b), ".proj")], EndsBlock: false),
                new PlanUnit("c", [new PlanTerm(1, n => (T(n).conv_c, T(n).bn_c))]),
                new PlanUnit("d", [new PlanTerm(2, n => (T(n).conv_d, T(n).bn_d), ".up", ResizeLike: 1), new PlanTerm(1, null, ".identity")]),
            ], [3, 2]).Validated();
        }
    }

    private sealed record ToySpec : IEncoderSpec
    {
        public string Name => "toy";
        public long OutChannels => 14;
        public int OutputStride => 2;
        public nn.Module<Tensor, Tensor> CreateEncoder(long inChannels) => new Toy(inChannels);
    }

    private static InterroGateModel Model(GatingMode gating, PrunerTests.Pattern pattern, int seed = 0)
    {
        manual_seed(seed);
        var model = new InterroGateModel(PrunerTests.Tasks, new ToySpec(), 3, (20, 20), new InterroGateConfig { Gating = gating });
        PrunerTests.RandomiseNorms(model);
        PrunerTests.SetGates(model, pattern);
        return model;
    }

    [Fact]
    public void The_plan_of_a_new_backbone_gates_its_units_and_describes_their_cost()
    {
        using var conv = Model(GatingMode.Conv, PrunerTests.Pattern.Random);
        var units = conv.Encoder.Units;
        Assert.Equal(["a", "b", "c", "d"], units.Select(u => u.Name));
        Assert.Equal(4, conv.Encoder.GateLayers.Count);
        Assert.Equal([true, true, true, false], units.Select(u => u.HasMix)); // d is read only by the heads
        Assert.Equal([2, 1], units[3].Reads);
        Assert.Equal([(10L, 10L), (10L, 10L), (5L, 5L), (10L, 10L)], units.Select(u => (u.OutHeight, u.OutWidth)));
        Assert.Equal(8 * 1 * 5 * 5, units[3].Convs[0].MacsPerFilter); // the 1×1 runs at c's size, before upsampling

        using var block = Model(GatingMode.Block, PrunerTests.Pattern.Random);
        Assert.Equal([0, -1, 1, 2], block.Encoder.Units.Select(u => u.GateIndex));
    }

    [Theory]
    [InlineData(GatingMode.Conv)]
    [InlineData(GatingMode.Block)]
    public void With_all_gates_open_each_task_runs_its_own_copy_and_with_all_closed_the_shared_one(GatingMode gating)
    {
        using var model = Model(gating, PrunerTests.Pattern.AllSpecific);
        model.eval();
        var x = randn(2, 3, 20, 20);
        using var _ = no_grad();
        var open = model.Encoder.call(x);
        for (int t = 0; t < PrunerTests.Tasks.Count; t++)
            Assert.True(open[t].equal(model.Encoder.TaskBranch(t).call(x)).all().item<bool>(), $"task {t}");

        PrunerTests.SetGates(model, PrunerTests.Pattern.AllShared);
        var closed = model.Encoder.call(x);
        var shared = model.Encoder.SharedBranch.call(x);
        for (int t = 0; t < PrunerTests.Tasks.Count; t++)
            Assert.True((closed[t] - shared).abs().max().item<float>() <= 1e-5f * shared.abs().max().item<float>(), $"task {t}");
    }

    public static IEnumerable<object[]> Cases() =>
        Enum.GetValues<PrunerTests.Pattern>().SelectMany(p => new[] { new object[] { GatingMode.Conv, p }, [GatingMode.Block, p] });

    [Theory]
    [MemberData(nameof(Cases))]
    public void The_pruned_network_computes_what_the_gated_one_does_at_the_cost_its_gates_predict(GatingMode gating, PrunerTests.Pattern pattern)
    {
        using var model = Model(gating, pattern);
        model.train();
        var pruned = PrunerTests.PruneAndCompare(model, 20, PrunerTests.Tasks);
        var (macs, parameters) = DeployedCost.OfModel(model, (3, 20, 20));
        Assert.Equal(macs, pruned.Report.MacsAfter);
        Assert.Equal(parameters, pruned.Report.ParametersAfter);
    }

    [Fact]
    public void Branch_fusion_computes_what_separate_branches_do_on_any_plan()
    {
        using var model = Model(GatingMode.Conv, PrunerTests.Pattern.Random);
        model.eval();
        var x = randn(2, 3, 20, 20);
        using var _ = no_grad();
        var separate = model.Encoder.call(x);
        model.Encoder.Fusion = BranchFusion.On;
        var fused = model.Encoder.call(x);
        for (int t = 0; t < PrunerTests.Tasks.Count; t++)
            Assert.True((fused[t] - separate[t]).abs().max().item<float>() <= 1e-5f * separate[t].abs().max().item<float>(), $"task {t}");
    }

    [Fact]
    public void A_plan_that_reads_a_later_unit_or_ends_in_an_ungated_unit_is_refused()
    {
        var later = new EncoderPlan([new PlanUnit("a", [new PlanTerm(1, null)]), new PlanUnit("b", [new PlanTerm(0, null)])], [1]);
        Assert.Contains("does not come before it", Assert.Throws<ArgumentException>(() => later.Validated()).Message);
        var e = Assert.Throws<ArgumentException>(() => new GatedEncoder(["a"], new UngatedOutputSpec(), 3, (8, 8), GatingMode.Block, 0.01));
        Assert.Contains("unit(s) last are not gated", e.Message);
    }

    private sealed record UngatedOutputSpec : IEncoderSpec
    {
        public string Name => "ungated-output";
        public long OutChannels => 4;
        public int OutputStride => 1;
        public nn.Module<Tensor, Tensor> CreateEncoder(long inChannels) => new OneUnit(inChannels);
    }

    private sealed class OneUnit : nn.Module<Tensor, Tensor>, IPlannedEncoder
    {
        private readonly Conv2d conv;
        private readonly BatchNorm2d bn;
        public OneUnit(long inChannels) : base(nameof(OneUnit))
        {
            InChannels = inChannels;
            conv = nn.Conv2d(inChannels, 4, 3, padding: 1);
            bn = nn.BatchNorm2d(4);
            RegisterComponents();
        }
        public long InChannels { get; }
        public long OutChannels => 4;
        public override Tensor forward(Tensor x) => nn.functional.relu(bn.call(conv.call(x)));
        public EncoderPlan Plan() => new([new PlanUnit("last", [new PlanTerm(EncoderPlan.Image, n => (((OneUnit)n).conv, ((OneUnit)n).bn))], EndsBlock: false)], [0]);
    }
}
