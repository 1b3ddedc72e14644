using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Gating;
using InterroGate.Heads;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Tests.Analysis;

[Collection("Torch")]
public sealed class CostTests
{
    [Fact]
    public void Convolutions_and_linear_layers_are_counted_in_closed_form()
    {
        var net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride: 2, padding: 1),          // 8·3·9·4·4 = 3456
            nn.Conv2d(8, 8, 3, padding: 1, groups: 4),          // 8·2·9·4·4 = 2304
            nn.Flatten(),
            nn.Linear(8 * 16, 10));                             // 1280
        var r = CostCounter.Count(net, x => net.call(x), [1, 3, 8, 8]);
        Assert.Equal(3456 + 2304 + 1280, r.Macs);
        Assert.Equal(2 * r.Macs, r.Flops);
        Assert.Equal((8 * 27 + 8) + (8 * 18 + 8) + (128 * 10 + 10), r.Params);
        Assert.Equal(3, r.Layers.Count);
    }

    [Theory]
    [InlineData("resnet18", 1_814_073_344L, 11_689_512L)]
    [InlineData("resnet50", 4_089_184_256L, 25_557_032L)]
    public void Torchvision_ResNets_at_224_match_their_published_cost(string name, long macs, long parameters)
    {
        var model = new HardSharing(new TaskSet([new TaskSpec("imagenet", TaskKind.Classification, 1000)]), BackboneCatalog.Spec(name), 3);
        var r = CostCounter.Count(model, x => model.call(x), [1, 3, 224, 224]);
        Assert.Equal(macs, r.Macs);
        Assert.Equal(parameters, r.Params);
    }

    [Theory]
    [InlineData("resnet20")]
    [InlineData("resnet18")]
    public void The_gated_network_costs_its_T_plus_1_branches_and_T_heads_once_each(string backbone)
    {
        var (ig, encoder) = Model(GatingMode.Conv, backbone);
        var r = CostCounter.Count(ig, x => ig.call(x), [1, 3, 36, 36]);
        long features = ig.Encoder.OutChannels;
        Assert.Equal(4 * encoder + features * (4 + 3 + 2), r.Macs); // shared + 3 task branches; linear heads of 4, 3, 2 classes
        Assert.Equal(r.Layers.Count, r.Layers.Select(l => l.Name).Distinct().Count());
    }

    /// <summary>One convolution held by two fields, so TorchSharp registers it under two names.</summary>
    private sealed class Aliased : nn.Module<Tensor, Tensor>
    {
        private readonly TorchSharp.Modules.Conv2d conv = nn.Conv2d(3, 8, 3);
        private readonly nn.Module alias;

        public Aliased() : base(nameof(Aliased))
        {
            alias = conv;
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => conv.call(x);
    }

    [Fact]
    public void A_module_registered_under_two_names_is_counted_once()
    {
        var net = new Aliased();
        Assert.Equal(2, net.named_modules().Count());
        var r = CostCounter.Count(net, x => net.call(x), [1, 3, 6, 6]);
        Assert.Equal(8 * 3 * 9 * 4 * 4, r.Macs);
        Assert.Single(r.Layers);
    }

    private static (InterroGateModel Ig, long EncoderMacs) Model(GatingMode mode, string backbone = "resnet20")
    {
        var tasks = new TaskSet([new TaskSpec("a", TaskKind.Classification, 4), new TaskSpec("b", TaskKind.Classification, 3), new TaskSpec("c", TaskKind.Classification, 2)]);
        var spec = backbone == "resnet20" ? ResNetSpec.ResNet20(0.5) : BackboneCatalog.ResNet(backbone);
        var ig = new InterroGateModel(tasks, spec, 3, (36, 36), new InterroGateConfig { Gating = mode });
        var plain = new ResNet(spec, 3);
        return (ig, CostCounter.Count(plain, x => plain.call(x), [1, 3, 36, 36]).Macs);
    }

    private static void Gates(InterroGateModel m, Func<int, int, float> value)
    {
        using var _ = no_grad();
        foreach (var g in m.Encoder.GateLayers)
            for (int t = 0; t < g.Tasks; t++)
                for (int c = 0; c < g.Channels; c++) g.Alpha[t, c] = value(t, c);
    }

    [Theory]
    [InlineData(GatingMode.Conv, "resnet20")]
    [InlineData(GatingMode.Block, "resnet20")]
    [InlineData(GatingMode.Conv, "resnet18")]
    public void Predicted_pruned_cost_spans_MTL_to_STL(GatingMode mode, string backbone)
    {
        var (ig, encoder) = Model(mode, backbone);
        Gates(ig, (_, _) => -1);
        var shared = ig.PredictPrunedEncoderCost();
        Assert.Equal(encoder, shared.Macs);                 // MTL: one encoder
        Assert.All(shared.TaskMacs, m => Assert.Equal(0, m));
        Gates(ig, (_, _) => 1);
        Assert.Equal(3 * encoder, ig.PredictPrunedEncoderCost().Macs); // STL: T encoders
        Gates(ig, (t, _) => t == 0 ? 1 : -1);
        var one = ig.PredictPrunedEncoderCost();
        Assert.Equal(2 * encoder, one.Macs);                // task a alone + the shared encoder
        Assert.Equal(encoder, one.TaskMacs[0]);
        Assert.Equal(encoder, one.SharedMacs);
        // Channel-level: gate c on for task 0 only where c is even → strictly between.
        Gates(ig, (t, c) => t == 0 && c % 2 == 0 ? 1 : -1);
        var half = ig.PredictPrunedEncoderCost();
        Assert.InRange(half.Macs, encoder + 1, 2 * encoder - 1);
    }

    [Fact]
    public void Pruned_parameters_count_folded_filters_and_kept_mixes()
    {
        var (ig, _) = Model(GatingMode.Conv);
        Gates(ig, (_, _) => 1);
        var stl = ig.PredictPrunedEncoderCost();
        // All task-specific: three plain encoders with BN folded (one bias per filter), no shared filter, no mix.
        var plain = new ResNet(ResNetSpec.ResNet20(0.5), 3);
        long convWeights = plain.named_parameters().Where(p => p.parameter.dim() == 4).Sum(p => p.parameter.numel());
        long filters = plain.named_parameters().Where(p => p.parameter.dim() == 4).Sum(p => p.parameter.shape[0]);
        Assert.Equal(3 * (convWeights + filters), stl.Parameters);
        Assert.Equal(stl.TotalFilters * 3 / 4, stl.KeptFilters);
    }
}
