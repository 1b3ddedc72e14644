using InterroGate.Backbones;
using InterroGate.Heads;
using static TorchSharp.torch;

namespace InterroGate.Tests.Backbones;

[Collection("Torch")]
public sealed class ResNetTests
{
    private static long Count(nn.Module m) => m.parameters().Sum(p => p.numel());

    [Theory]
    [InlineData("resnet18", 11_689_512)]
    [InlineData("resnet34", 21_797_672)]
    [InlineData("resnet50", 25_557_032)]
    public void Torchvision_networks_have_torchvision_parameter_counts(string name, long expected)
    {
        var encoder = new ResNet(BackboneCatalog.ResNet(name), 3);
        var fc = new ClassificationHead(encoder.OutChannels, 1000);
        Assert.Equal(expected, Count(encoder) + Count(fc));
    }

    [Fact]
    public void Dilated_stages_dilate_as_the_dense_reference_code_does()
    {
        // A stage dilated instead of strided: its first 3×3 (the one that would have had the stride) keeps the previous
        // stage's dilation, every other 3×3 takes the stage's. ResNet-18 at output stride 8: layer3 dilation 2, layer4 4.
        string Dilations(ResNet net) => string.Join(" ", net.Blocks.Select(b =>
            string.Join("/", Enumerable.Range(0, b.Units).Select(b.ConvOf).Where(c => c.kernel_size[0] == 3).Select(c => c.dilation[0]))));
        Assert.Equal("1/1 1/1 1/1 1/1 1/2 2/2 2/4 4/4", Dilations(new ResNet(ResNetSpec.ResNet18(ResNetSpec.DilationForOutputStride(8)), 3)));
        Assert.Equal("1/1 1/1 1/1 1/1 1/1 1/1 1/2 2/2", Dilations(new ResNet(ResNetSpec.ResNet18(ResNetSpec.DilationForOutputStride(16)), 3)));
        // Bottlenecks have one 3×3, the strided one: it keeps the previous dilation (torchvision's replace_stride_with_dilation).
        var r50 = new ResNet(ResNetSpec.ResNet50(ResNetSpec.DilationForOutputStride(8)), 3);
        Assert.Equal("1 1 1 1 1 1 1 1 2 2 2 2 2 2 4 4", Dilations(r50));
        using var _ = NewDisposeScope();
        Assert.Equal([1, 512, 8, 8], new ResNet(ResNetSpec.ResNet18(ResNetSpec.DilationForOutputStride(8)), 3).forward(zeros(1, 3, 64, 64)).shape);
    }

    [Fact]
    public void Parameter_names_follow_torchvision()
    {
        var keys = new ResNet(ResNetSpec.ResNet50(), 3).state_dict().Keys.ToHashSet();
        foreach (var k in new[] { "conv1.weight", "bn1.running_mean", "layer1.0.conv3.weight", "layer1.0.downsample.0.weight",
                                  "layer1.0.downsample.1.bias", "layer4.2.bn3.num_batches_tracked" })
            Assert.Contains(k, keys);
        Assert.DoesNotContain(keys, k => k.StartsWith("fc.", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(1.0, 16, 64)]
    [InlineData(0.5, 8, 32)]
    [InlineData(0.25, 4, 16)]
    public void ResNet20_scales_its_widths(double width, long stem, long output)
    {
        var net = new ResNet(ResNetSpec.ResNet20(width), 1);
        Assert.Equal(stem, net.StemConv.out_channels);
        Assert.Equal(output, net.OutChannels);
        Assert.Equal(9, net.Blocks.Count);
        using var y = net.call(randn(2, 1, 32, 32));
        Assert.Equal(new long[] { 2, output, 8, 8 }, y.shape); // no stem pooling: 32 -> 32 -> 16 -> 8
    }

    [Theory]
    [InlineData(32, 2)]
    [InlineData(16, 4)]
    [InlineData(8, 8)]
    public void Dilation_sets_the_output_stride(int outputStride, long size)
    {
        var net = new ResNet(BackboneCatalog.ResNet("resnet18", outputStride: outputStride), 3);
        net.eval();
        using var y = net.call(randn(1, 3, 64, 64));
        Assert.Equal(size, y.shape[2]);
    }

    [Fact]
    public void Any_number_of_input_channels_is_accepted()
    {
        using var y = new ResNet(ResNetSpec.ResNet20(0.25), 5).call(randn(2, 5, 16, 16));
        Assert.Equal(16, y.shape[1]);
    }

    [Fact]
    public void Bad_specs_are_rejected_with_the_valid_range()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ResNetSpec.ResNet20(0));
        Assert.Contains("> 0", e.Message);
        var width = Assert.Throws<ArgumentException>(() => BackboneCatalog.Spec("resnet18", width: 0.5));
        Assert.Equal("width", width.ParamName);
        Assert.Contains("1 (resnet18 takes no width multiplier)", width.Message);
        Assert.Contains("valid", Assert.Throws<ArgumentException>(() => BackboneCatalog.Spec("vgg")).Message);
    }
}
