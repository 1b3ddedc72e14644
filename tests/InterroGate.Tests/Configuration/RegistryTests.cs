using System.Text.Json;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Tests.Configuration;

/// <summary>The registries are the types: every registered record is listed, builds and round-trips its config.</summary>
[Collection("Torch")]
public sealed class RegistryTests
{
    private static readonly TaskSet Tasks = new([new TaskSpec("a", TaskKind.Classification, 4), new TaskSpec("b", TaskKind.Classification, 3)]);

    [Fact]
    public void Every_architecture_is_listed_builds_and_round_trips()
    {
        Assert.Equal(["stl", "mtl", "interrogate", "mtan", "cross-stitch"], Registry<ArchitectureConfig>.Names);
        foreach (var name in Registry<ArchitectureConfig>.Names)
        {
            Assert.False(string.IsNullOrWhiteSpace(Factory.Architectures[name]));
            var config = Registry<ArchitectureConfig>.Default(name);
            Assert.Equal(name, config.Type);
            var run = new RunConfig { Name = name, Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 }, Architecture = config };
            string json = ConfigJson.Serialize(run);
            var back = ConfigJson.Deserialize<RunConfig>(json);
            Assert.Equal(config.GetType(), back.Architecture.GetType());
            Assert.Equal(json, ConfigJson.Serialize(back));
            using var scope = NewDisposeScope();
            using var model = Factory.CreateModel(back, Tasks, (1, 16, 16));
            Assert.Equal(name, model.Architecture);
            var outputs = model.call(randn(2, 1, 16, 16));
            Assert.Equal([2L, 4L], outputs["a"].shape);
        }
    }

    [Fact]
    public void Every_balancer_is_listed_builds_and_round_trips()
    {
        Assert.Equal(15, Registry<BalancerConfig>.Names.Count);
        foreach (var name in Registry<BalancerConfig>.Names)
        {
            Assert.False(string.IsNullOrWhiteSpace(Factory.Balancers[name]));
            // Options a method cannot default (fixed weights: one per task).
            string options = name == "fixed" ? ", \"weights\": [1, 2]" : "";
            var config = ConfigJson.Deserialize<BalancerConfig>($"{{\"type\": \"{name}\"{options}}}");
            config.Validate("balancer", Tasks.Count);
            var run = new RunConfig { Name = name, Balancer = config };
            Assert.Equal(ConfigJson.Serialize(run), ConfigJson.Serialize(ConfigJson.Deserialize<RunConfig>(ConfigJson.Serialize(run))));
            Assert.IsType(Balancing.BalancerTests.ClassOf[name], config.Create(Tasks.Count));
        }
    }

    [Fact]
    public void Every_data_set_is_listed_round_trips_and_opens_or_asks_for_its_root()
    {
        Assert.Equal(["multifashion", "folder", "synthetic", "fashion-scenes", "nyudv2", "celeba", "pascal-context"], DataCatalog.Names);
        foreach (var entry in DataCatalog.Entries)
        {
            Assert.Equal(entry.Description, DataCatalog.Descriptions[entry.Name]);
            Assert.False(string.IsNullOrWhiteSpace(entry.Description));
            var run = new RunConfig { Name = entry.Name, Data = new DataConfig { Dataset = entry.Name, TrainSize = 40, ValidationSize = 8, TestSize = 8 } };
            string json = ConfigJson.Serialize(run);
            Assert.Equal(json, ConfigJson.Serialize(ConfigJson.Deserialize<RunConfig>(json)));
            if (entry.NeedsRoot)
            {
                // No default folder: the configuration is refused before anything is read, naming data.root.
                var e = Assert.Throws<ConfigException>(() => run.Validate(2));
                Assert.Contains("data.root", e.Message);
            }
        }
        // One that needs no files opens by its entry.
        var splits = DataCatalog.Open(new DataConfig { Dataset = "synthetic", TrainSize = 40, ValidationSize = 8, TestSize = 8 });
        Assert.Equal(40, splits.Train.Count);
        var unknown = Assert.Throws<ConfigException>(() => DataCatalog.Open(new DataConfig { Dataset = "mnist" }));
        Assert.Contains("data.dataset", unknown.Message);
        Assert.Contains(string.Join(", ", DataCatalog.Names), unknown.Message);
    }

    [Fact]
    public void Every_backbone_is_listed_round_trips_and_gives_its_spec()
    {
        Assert.Equal(["resnet20", "resnet18", "resnet34", "resnet50", "hrnet18", "hrnet18-small", "hrnet32", "hrnet48",
                      "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224", "vit_cpu_patch4_32"], BackboneCatalog.Descriptions.Keys);
        foreach (var entry in BackboneCatalog.Entries)
        {
            Assert.False(string.IsNullOrWhiteSpace(entry.Description));
            var run = new RunConfig { Name = entry.Name, Backbone = new BackboneConfig { Name = entry.Name } };
            string json = ConfigJson.Serialize(run);
            Assert.Equal(json, ConfigJson.Serialize(ConfigJson.Deserialize<RunConfig>(json)));
            var spec = BackboneCatalog.Spec(entry.Name);
            Assert.Equal(entry.Name, spec.Name);
            Assert.Equal(entry.IsResNet, spec is ResNetSpec);
            // ResNet-20: two stride-2 stages; HRNet: its own 4; ViT: its patch size.
            Assert.Equal(entry.Options == BackboneOptions.Dilation ? 32 : spec is ViTSpec vit ? vit.PatchSize : 4, spec.OutputStride);
            // The options it does not take are refused by key.
            Assert.Equal(entry.Options == BackboneOptions.Width ? null : "width", BackboneCatalog.Invalid(entry.Name, width: 0.5)?.Key);
            Assert.Equal(entry.Options == BackboneOptions.Dilation ? null : "outputStride", BackboneCatalog.Invalid(entry.Name, outputStride: 8)?.Key);
            if (entry.Options == BackboneOptions.OwnStride) Assert.Null(BackboneCatalog.Invalid(entry.Name, outputStride: spec.OutputStride)); // its own stride, said explicitly
        }
        Assert.Equal("name", BackboneCatalog.Invalid("vgg16")?.Key);
    }

    [Fact]
    public void An_unknown_name_is_refused_with_the_valid_ones()
    {
        var e = Assert.Throws<ConfigException>(() => Registry<ArchitectureConfig>.TypeOf("mtl2"));
        Assert.Contains("stl, mtl, interrogate, mtan, cross-stitch", e.Message);
    }
}
