using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Tasks;

namespace InterroGate.Tests.Configuration;

/// <summary>The backbones by name: HRNets next to ResNets, and the options each family takes.</summary>
public sealed class BackboneConfigTests
{
    private static RunConfig Run(string backbone, ArchitectureConfig architecture, double width = 1, int outputStride = 32) => new()
    {
        Data = new DataConfig { Dataset = "synthetic" },
        Backbone = new BackboneConfig { Name = backbone, Width = width, OutputStride = outputStride },
        Architecture = architecture,
    };

    private static string Shape(IEncoderSpec spec)
    {
        var s = Assert.IsType<HRNetSpec>(spec);
        return $"W{s.Width}: {s.Stage1Blocks} bottlenecks, modules {string.Join("/", s.StageModules)}, {s.BlocksPerBranch} blocks per branch, align corners {s.AlignCorners}";
    }

    [Fact]
    public void HRNet_names_give_the_official_specs()
    {
        Assert.Equal(Shape(HRNetSpec.V2(18)), Shape(BackboneCatalog.Spec("hrnet18")));
        Assert.Equal(Shape(HRNetSpec.W18SmallV2()), Shape(BackboneCatalog.Spec("hrnet18-small")));
        Assert.NotEqual(Shape(HRNetSpec.V2(18)), Shape(HRNetSpec.W18SmallV2()));
        Assert.Equal(Shape(HRNetSpec.V2(32)), Shape(BackboneCatalog.Spec("hrnet32")));
        Assert.Equal(Shape(HRNetSpec.V2(48)), Shape(BackboneCatalog.Spec("hrnet48")));
        Assert.Equal("hrnet18-small", BackboneCatalog.Spec("hrnet18-small").Name);
        // Stride 4 is the HRNet's own; the default 32 means the same.
        Assert.Equal(Shape(BackboneCatalog.Spec("hrnet18")), Shape(BackboneCatalog.Spec("hrnet18", outputStride: 4)));
        Assert.Equal(4, BackboneCatalog.Spec("hrnet18").OutputStride);
        Assert.Equal(270, BackboneCatalog.Spec("hrnet18-small").OutChannels);
        Assert.All(BackboneCatalog.Descriptions.Keys, name => Assert.Equal(BackboneCatalog.ResNets.Contains(name), BackboneCatalog.Spec(name) is ResNetSpec));
        Assert.Contains("not a ResNet", Assert.Throws<ArgumentException>(() => BackboneCatalog.ResNet("hrnet18")).Message);
    }

    [Theory]
    [InlineData("hrnet18", 4)]
    [InlineData("hrnet18", 32)]
    [InlineData("hrnet18-small", 4)]
    [InlineData("resnet18", 8)]
    [InlineData("resnet50", 16)]
    public void Valid_output_strides_pass(string backbone, int outputStride) =>
        Run(backbone, new HardSharingConfig(), outputStride: outputStride).Validate(2);

    [Theory]
    [InlineData("hrnet18", 0.5, 32, "backbone.width", "1 (hrnet18 takes no width multiplier)")]
    [InlineData("hrnet18-small", 2.0, 32, "backbone.width", "1 (hrnet18-small")]
    [InlineData("resnet18", 0.5, 32, "backbone.width", "1 (resnet18")]
    [InlineData("hrnet18", 1.0, 8, "backbone.outputStride", "4 (hrnet18 keeps its own stride 4")]
    [InlineData("hrnet32", 1.0, 16, "backbone.outputStride", "4 (")]
    [InlineData("resnet18", 1.0, 4, "backbone.outputStride", "8, 16 or 32")]
    [InlineData("resnet20", 1.0, 8, "backbone.outputStride", "32 (resnet20")]
    [InlineData("hrnet64", 1.0, 32, "backbone.name", "hrnet18, hrnet18-small, hrnet32, hrnet48")]
    public void Options_a_backbone_does_not_take_name_the_key_and_the_valid_values(string backbone, double width, int outputStride, string key, string valid)
    {
        var e = Assert.Throws<ConfigException>(() => Run(backbone, new HardSharingConfig(), width, outputStride).Validate(2));
        Assert.Equal(key, e.Key);
        Assert.Contains(valid, e.Message);
        // The catalog gives the same rule to code that builds specs directly.
        Assert.Equal(key["backbone.".Length..], Assert.ThrowsAny<ArgumentException>(() => BackboneCatalog.Spec(backbone, width, outputStride)).ParamName);
    }

    [Theory]
    [InlineData("mtan")]
    [InlineData("cross-stitch")]
    public void MTAN_and_cross_stitch_take_only_ResNets(string type)
    {
        ArchitectureConfig architecture = type == "mtan" ? new MtanConfig() : new CrossStitchConfig();
        var e = Assert.Throws<ConfigException>(() => Run("hrnet18", architecture).Validate(2));
        Assert.Equal("backbone.name", e.Key);
        Assert.Contains($"{type} needs a ResNet backbone", e.Message);
        Assert.Contains("got hrnet18", e.Message);

        var tasks = new TaskSet([new TaskSpec("a", TaskKind.Classification, 3), new TaskSpec("b", TaskKind.Classification, 3)]);
        Assert.Equal("backbone.name", Assert.Throws<ConfigException>(() => Factory.CreateModel(Run("hrnet18-small", architecture), tasks, (3, 32, 32))).Key);

        // A comparison names them up front: the error comes before anything trains.
        var compare = new CompareConfig { Backbone = new BackboneConfig { Name = "hrnet18" }, Architectures = [architecture] };
        var c = Assert.Throws<ConfigException>(() => compare.Validate(2));
        Assert.Equal("backbone.name", c.Key);
        Assert.Contains($"{type} needs a ResNet backbone", c.Message);
        (compare with { Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 } }).Validate(2);
        Run("resnet20", architecture).Validate(2);
    }
}
