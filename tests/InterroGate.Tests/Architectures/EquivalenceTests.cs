using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Gating;
using static TorchSharp.torch;

namespace InterroGate.Tests.Architectures;

/// <summary>The two ends of InterroGate's range are the baselines: all gates 0 is MTL, all gates 1 is STL.</summary>
[Collection("Torch")]
public sealed class EquivalenceTests
{
    private static void SetGates(InterroGateModel m, float value)
    {
        using var _ = no_grad();
        foreach (var g in m.Encoder.GateLayers) g.Alpha.fill_(value);
    }

    [Theory]
    [InlineData("resnet20", GatingMode.Conv)]
    [InlineData("resnet20", GatingMode.Block)]
    [InlineData("resnet18", GatingMode.Conv)]
    public void All_shared_gates_reproduce_the_MTL_network_it_started_from(string backbone, GatingMode mode)
    {
        manual_seed(3);
        var spec = backbone == "resnet20" ? ResNetSpec.ResNet20(0.5) : BackboneCatalog.Spec(backbone);
        var tasks = ArchitectureContractTests.Tasks;
        var mtl = new HardSharing(tasks, spec, 3);
        var ig = new InterroGateModel(tasks, spec, 3, (32, 32), new InterroGateConfig { Gating = mode });
        WeightTransfer.InitialiseInterroGate(ig, new Dictionary<string, MultiTaskModel>(), mtl);
        WeightTransfer.Copy(ig, "heads.", mtl.state_dict(), "heads.");
        using (no_grad()) foreach (var g in ig.Encoder.GateLayers) g.Beta?.copy_(randn_like(g.Beta)); // any β: all tasks read ψ
        SetGates(ig, -1);
        mtl.eval(); ig.eval();
        var x = randn(2, 3, 32, 32);
        var a = mtl.call(x);
        var b = ig.call(x);
        foreach (var t in tasks) Assert.True(allclose(a[t.Name], b[t.Name], 1e-5, 1e-5), t.Name);
    }

    [Fact]
    public void All_specific_gates_reproduce_the_STL_networks_they_started_from()
    {
        manual_seed(4);
        var spec = ResNetSpec.ResNet20(0.5);
        var tasks = ArchitectureContractTests.Tasks;
        var stl = tasks.ToDictionary(t => t.Name, t => (MultiTaskModel)new SingleTask(new([t]), spec, 1));
        var ig = new InterroGateModel(tasks, spec, 1, (16, 16), new InterroGateConfig());
        WeightTransfer.InitialiseInterroGate(ig, stl, null);
        SetGates(ig, 1);
        ig.eval();
        var x = randn(2, 1, 16, 16);
        var b = ig.call(x);
        foreach (var t in tasks)
        {
            stl[t.Name].eval();
            Assert.True(allclose(stl[t.Name].call(x)[t.Name], b[t.Name], 1e-5, 1e-5), t.Name);
        }
    }

    [Fact]
    public void Starting_from_a_model_of_the_wrong_shape_names_the_tensor()
    {
        var tasks = ArchitectureContractTests.Tasks;
        var ig = new InterroGateModel(tasks, ResNetSpec.ResNet20(0.25), 1, (16, 16), new InterroGateConfig());
        var wide = new HardSharing(tasks, ResNetSpec.ResNet20(0.5), 1);
        var e = Assert.Throws<ArgumentException>(() => WeightTransfer.InitialiseInterroGate(ig, new Dictionary<string, MultiTaskModel>(), wide));
        Assert.Contains("encoder.conv1.weight", e.Message);
    }
}
