using System.Text.Json;
using InterroGate.Architectures;
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
            Assert.NotNull(config.Create(Tasks.Count));
        }
    }

    [Fact]
    public void An_unknown_name_is_refused_with_the_valid_ones()
    {
        var e = Assert.Throws<ConfigException>(() => Registry<ArchitectureConfig>.TypeOf("mtl2"));
        Assert.Contains("stl, mtl, interrogate, mtan, cross-stitch", e.Message);
    }
}
