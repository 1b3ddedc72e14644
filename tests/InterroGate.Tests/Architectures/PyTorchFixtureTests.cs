using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using static TorchSharp.torch;

namespace InterroGate.Tests.Architectures;

/// <summary>
/// Files written by real PyTorch (tests/fixtures/pytorch, made by its make_fixtures.py from torchvision's own ResNet
/// blocks): the state dicts load by name into our ResNet, and our ResNet then computes the feature map PyTorch computed.
/// </summary>
[Collection("Torch")]
public sealed class PyTorchFixtureTests
{
    /// <summary>A file of tests/fixtures/pytorch, found above the test folder (GradientFixtureTests reads there too).</summary>
    internal static string Fixture(string file)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string path = Path.Combine(dir.FullName, "tests", "fixtures", "pytorch", file);
            if (File.Exists(path)) return path;
        }
        throw new FileNotFoundException($"tests/fixtures/pytorch/{file} above the test folder");
    }

    /// <summary>The shapes make_fixtures.py builds: torchvision's stem and one block per stage at narrow widths.</summary>
    private static ResNetSpec Spec(string name) => name switch
    {
        "basic" => new ResNetSpec("basic", BlockType.Basic, [1, 1, 1, 1], [8, 16, 24, 32], 8, false, [false, false, false]),
        "bottleneck" => new ResNetSpec("bottleneck", BlockType.Bottleneck, [1, 1, 1, 1], [4, 8, 16, 32], 8, false, [false, false, false]),
        _ => throw new ArgumentException(name),
    };

    /// <summary>A model holding one backbone, as every architecture holds its backbones.</summary>
    private sealed class Holder : nn.Module<Tensor, Tensor>
    {
        private readonly ResNet backbone;
        public Holder(ResNetSpec spec) : base("holder")
        {
            backbone = new ResNet(spec, 3);
            RegisterComponents();
        }
        public override Tensor forward(Tensor x) => backbone.call(x);
    }

    /// <summary>max |ours − reference| over max |reference|.</summary>
    internal static double RelativeDifference(Tensor ours, Tensor reference) =>
        (ours - reference).abs().max().item<float>() / Math.Max(reference.abs().max().item<float>(), 1e-12f);

    [Theory]
    [InlineData("basic", "basic.pth", "")]
    [InlineData("bottleneck", "bottleneck.pth", "")]
    [InlineData("bottleneck", "bottleneck-module.pth", "module.")]
    public void A_state_dict_saved_by_torch_loads_by_name_and_gives_PyTorch_s_features(string net, string file, string prefix)
    {
        manual_seed(1);
        using var model = new Holder(Spec(net));
        var report = PretrainedWeights.Apply(model, Fixture(file));
        Assert.Equal(prefix, report.StrippedPrefix);
        Assert.Empty(report.Missing);
        Assert.Empty(report.Mismatched);
        Assert.Equal([prefix + "fc.bias", prefix + "fc.weight"], report.Unexpected);
        Assert.Equal(report.Targets, report.Loaded);

        var expected = PretrainedWeights.Read(Fixture($"{net}-expected.pth"));
        model.eval();
        using var _ = no_grad();
        var features = model.call(expected["input"]);
        Assert.Equal(expected["features"].shape, features.shape);
        // Eval mode: the running statistics PyTorch saved (set away from 0 and 1) decide the output.
        Assert.True(RelativeDifference(features, expected["features"]) < 1e-5, $"{file}: relative difference {RelativeDifference(features, expected["features"]):E2}");
    }

    [Fact]
    public void A_state_dict_in_torch_save_s_legacy_format_is_refused_with_the_line_that_resaves_it()
    {
        using var model = new Holder(Spec("bottleneck"));
        var e = Assert.Throws<DataFormatException>(() => PretrainedWeights.Apply(model, Fixture("bottleneck-legacy.pth")));
        Assert.Contains("bottleneck-legacy.pth", e.Message);
        Assert.Contains("legacy", e.Message);
        Assert.Contains("torch.save(torch.load(", e.Message);
    }

    [Fact]
    public void The_features_differ_when_the_running_statistics_are_not_loaded()
    {
        // The comparison above can fail: the same weights with fresh running statistics give other features.
        manual_seed(1);
        using var model = new Holder(Spec("basic"));
        PretrainedWeights.Apply(model, Fixture("basic.pth"));
        foreach (var (name, buffer) in model.named_buffers())
            if (name.EndsWith("running_mean", StringComparison.Ordinal)) buffer.zero_();
            else if (name.EndsWith("running_var", StringComparison.Ordinal)) buffer.fill_(1);
        var expected = PretrainedWeights.Read(Fixture("basic-expected.pth"));
        model.eval();
        using var _ = no_grad();
        Assert.True(RelativeDifference(model.call(expected["input"]), expected["features"]) > 1e-2);
    }

    [Fact]
    public void A_network_of_another_shape_is_told_which_tensors_do_not_fit()
    {
        manual_seed(1);
        using var model = new Holder(Spec("basic") with { Widths = [8, 16, 24, 40] });
        var report = PretrainedWeights.Apply(model, Fixture("basic.pth"));
        Assert.Contains("layer4.0.conv1.weight [32,24,3,3] for [40,24,3,3]", report.Mismatched);
        Assert.Contains("layer4.0.bn2.running_var [32] for [40]", report.Mismatched);
        Assert.DoesNotContain(report.Mismatched, m => m.StartsWith("layer3.", StringComparison.Ordinal));
        Assert.True(report.Loaded < report.Targets);
    }
}
