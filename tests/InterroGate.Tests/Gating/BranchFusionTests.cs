using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Gating;
using InterroGate.Tasks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Tests.Gating;

/// <summary>Fused branches compute what separate branches compute: outputs, gradients and BN statistics.</summary>
[Collection("Torch")]
public sealed class BranchFusionTests
{
    internal static readonly TaskSet Tasks = new([
        new TaskSpec("a", TaskKind.Classification, 3), new TaskSpec("b", TaskKind.Classification, 4), new TaskSpec("c", TaskKind.Regression, 2)]);

    private static InterroGateModel Model(string backbone, GatingMode gating, BranchFusion fusion, int size)
    {
        manual_seed(7);
        IEncoderSpec spec = backbone switch { "resnet20" => ResNetSpec.ResNet20(0.25), "hrnet-tiny" => GatedHRNetTests.Tiny, _ => BackboneCatalog.Spec(backbone) };
        var model = new InterroGateModel(Tasks, spec, 3, (size, size), new InterroGateConfig { Gating = gating, Fusion = fusion });
        using (no_grad())
            foreach (var g in model.Encoder.GateLayers)
            {
                g.Alpha.copy_(randn_like(g.Alpha)); // about half the channels task-specific
                g.Beta?.copy_(randn_like(g.Beta));
            }
        return model;
    }

    [Fact]
    public void A_fused_model_prunes_to_the_same_network_and_reports_the_same_cost()
    {
        var plain = Model("resnet20", GatingMode.Conv, BranchFusion.Off, 16);
        var fused = Model("resnet20", GatingMode.Conv, BranchFusion.On, 16);
        var input = new InterroGate.Data.ImageInput(3, 16, 16);
        var a = InterroGate.Pruning.Pruner.Prune(plain, input).Report;
        var b = InterroGate.Pruning.Pruner.Prune(fused, input).Report;
        Assert.Equal(a.MacsBefore, b.MacsBefore); // the gated network's convolutions are counted when fused too
        Assert.Equal(a.MacsAfter, b.MacsAfter);
        Assert.Equal(a.ParametersBefore, b.ParametersBefore);
        Assert.All(fused.Encoder.FusedUnits!, Assert.True); // and the model is left fused
    }

    private static void AssertClose(Tensor expected, Tensor actual, double rtol, double atol, string what)
    {
        var diff = (expected - actual).abs();
        var bound = expected.abs() * rtol + atol;
        Assert.True(diff.le(bound).all().item<bool>(), $"{what}: max difference {diff.max().to(float64).item<double>():E2}");
    }

    [Theory]
    [InlineData("resnet20", GatingMode.Conv, 16)]
    [InlineData("resnet20", GatingMode.Block, 16)]
    [InlineData("resnet18", GatingMode.Conv, 32)]
    [InlineData("resnet50", GatingMode.Block, 32)]
    [InlineData("hrnet18-small", GatingMode.Conv, 32)] // fuse paths, resized terms and multi-resolution outputs
    public void Fused_units_match_separate_branches_in_outputs_gradients_and_batch_norm_statistics(string backbone, GatingMode gating, int size)
    {
        // In float64, so that rounding (which batch norm over a few values per channel amplifies in float32)
        // cannot hide a difference or make one: fused and separate must agree to 1e-9.
        var plain = Model(backbone, gating, BranchFusion.Off, size);
        var fused = Model(backbone, gating, BranchFusion.On, size);
        plain.to(float64);
        fused.to(float64);
        Assert.All(fused.Encoder.FusedUnits!, Assert.True);
        var x = randn(4, 3, size, size, dtype: float64);

        plain.train();
        fused.train();
        var yp = plain.call(x);
        var yf = fused.call(x);
        foreach (var t in Tasks.Names) AssertClose(yp[t], yf[t], 1e-9, 1e-12, $"training output {t}");
        yp.Values.Select(v => (v * v).sum()).Aggregate((a, b) => a + b).backward();
        yf.Values.Select(v => (v * v).sum()).Aggregate((a, b) => a + b).backward();
        var fusedParams = fused.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        int compared = 0;
        foreach (var (name, p) in plain.named_parameters())
        {
            if (p.grad is null) continue;
            // Deep networks sum a gradient over many paths in another order when fused: near-zero entries are judged against the largest.
            AssertClose(p.grad, fusedParams[name].grad!, 1e-9, Math.Max(1e-12, 1e-9 * p.grad.abs().max().to(float64).item<double>()), $"gradient of {name}");
            compared++;
        }
        Assert.True(compared > 50, $"{compared} gradients compared");

        var fusedBuffers = fused.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        foreach (var (name, b) in plain.named_buffers())
        {
            if (name.EndsWith("num_batches_tracked", StringComparison.Ordinal)) Assert.Equal(b.item<long>(), fusedBuffers[name].item<long>());
            else AssertClose(b, fusedBuffers[name], 1e-9, 1e-12, name);
        }

        plain.eval();
        fused.eval();
        using (no_grad())
        {
            var ep = plain.call(x);
            var ef = fused.call(x);
            foreach (var t in Tasks.Names) AssertClose(ep[t], ef[t], 1e-9, 1e-12, $"eval output {t}");
        }
    }

    [Theory]
    [InlineData("resnet20", 16)]
    [InlineData("hrnet-tiny", 32)] // resized terms and several outputs: the tuner times every kind of unit
    public void Auto_measures_before_training_not_in_forward_and_leaves_the_model_as_it_was(string backbone, int size)
    {
        var plain = Model(backbone, GatingMode.Conv, BranchFusion.Off, size);
        var auto = Model(backbone, GatingMode.Conv, BranchFusion.Auto, size);
        Assert.Null(auto.Encoder.FusedUnits);
        var x = randn(8, 3, size, size);

        // Neither evaluation nor a training forward pass measures: until measured, every unit runs unfused.
        auto.eval();
        using (no_grad()) auto.call(x);
        Assert.Null(auto.Encoder.FusedUnits);
        auto.train();
        using (no_grad()) auto.call(x);
        Assert.Null(auto.Encoder.FusedUnits);
        // (that pass moved the BN statistics by one batch: start both models from the same state again)
        auto.load_state_dict(plain.state_dict());

        // The measurement, as the Trainer asks for it once before the first step.
        manual_seed(11);
        auto.PrepareSpeed(() => x);
        var noiseAfterMeasuring = rand(5);
        manual_seed(11);
        var noiseWithout = rand(5);
        Assert.True(noiseWithout.equal(noiseAfterMeasuring).all().item<bool>(), "measuring consumed random numbers");
        plain.PrepareSpeed(() => throw new InvalidOperationException("a model that does not measure draws no batch"));

        plain.train();
        auto.train();
        manual_seed(11);
        var yp = plain.call(x);
        var noiseAfterPlain = rand(5);
        manual_seed(11);
        var ya = auto.call(x);
        var noiseAfterAuto = rand(5);

        Assert.Equal(auto.Encoder.Units.Count, auto.Encoder.FusedUnits!.Count);
        Assert.True(noiseAfterPlain.equal(noiseAfterAuto).all().item<bool>(), "measuring consumed random numbers");
        // float32: fused and separate differ by rounding, which a deep network carries to its outputs (judged against the largest).
        foreach (var t in Tasks.Names) AssertClose(yp[t], ya[t], 1e-4, Math.Max(1e-5, 1e-4 * yp[t].abs().max().item<float>()), $"output {t}");
        // The measurement's own forward passes are undone: statistics moved by exactly one batch, as plain's did.
        var autoBuffers = auto.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        foreach (var (name, b) in plain.named_buffers())
        {
            if (name.EndsWith("num_batches_tracked", StringComparison.Ordinal)) Assert.Equal(b.item<long>(), autoBuffers[name].item<long>());
            else AssertClose(b, autoBuffers[name], 1e-4, 1e-6, name);
        }
        Assert.All(auto.parameters(), p => Assert.Null(p.grad));
    }

    [Fact]
    public void Fusion_is_read_from_the_configuration()
    {
        var config = ConfigJson.Deserialize<RunConfig>("""{"architecture": {"type": "interrogate", "fusion": "auto"}}""");
        Assert.Equal(BranchFusion.Auto, Assert.IsType<InterroGateConfig>(config.Architecture).Fusion);
        var e = Assert.Throws<ConfigException>(() => ConfigJson.Deserialize<RunConfig>("""{"architecture": {"type": "interrogate", "fusion": "sometimes"}}"""));
        Assert.Equal("architecture.fusion", e.Key);
        Assert.EndsWith("expects one of \"off\", \"on\", \"auto\", not \"sometimes\"", e.Message);
        // Inside a list too, and a value with characters JSON would escape is shown as written.
        var listed = Assert.Throws<ConfigException>(() => ConfigJson.Deserialize<CompareConfig>("""{"architectures": [{"type": "mtan"}, {"type": "interrogate", "fusion": "some+times"}]}"""));
        Assert.Equal("architectures[1].fusion", listed.Key);
        Assert.EndsWith("not \"some+times\"", listed.Message);
    }
}
