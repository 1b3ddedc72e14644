using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Gating;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Tests.Architectures;

/// <summary>Every architecture on every backbone: output shape per task, finite values, a gradient for every parameter.</summary>
[Collection("Torch")]
public sealed class ArchitectureContractTests
{
    internal static readonly TaskSet Tasks = new([
        new TaskSpec("kind", TaskKind.Classification, 5),
        new TaskSpec("attributes", TaskKind.Binary, 3),
        new TaskSpec("position", TaskKind.Regression, 2),
    ]);

    /// <summary>Every registered architecture (InterroGate with both gating modes) on every ResNet depth.</summary>
    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        var architectures = Registry<ArchitectureConfig>.Names.SelectMany(n => n == "interrogate" ? new[] { "interrogate-conv", "interrogate-block" } : [n]).ToArray();
        foreach (var backbone in new[] { "resnet20", "resnet18", "resnet34", "resnet50" })
            foreach (var arch in architectures)
                data.Add(backbone, arch);
        return data;
    }

    /// <summary>A registered architecture with its default options (InterroGate: τ = 0.2 and the named gating), built by its config record.</summary>
    internal static MultiTaskModel Create(string arch, ResNetSpec spec, long channels, int size, TaskSet tasks)
    {
        ArchitectureConfig config = arch switch
        {
            "interrogate-conv" => new InterroGateConfig { Gating = GatingMode.Conv, Tau = [0.2] },
            "interrogate-block" => new InterroGateConfig { Gating = GatingMode.Block, Tau = [0.2] },
            _ => Registry<ArchitectureConfig>.Default(arch),
        };
        return config.CreateModel(tasks, spec, ((int)channels, size, size));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Outputs_are_per_task_finite_and_every_parameter_gets_a_gradient(string backbone, string arch)
    {
        manual_seed(7);
        int size = backbone == "resnet20" ? 16 : 32;
        var spec = backbone == "resnet20" ? ResNetSpec.ResNet20(0.25) : BackboneCatalog.ResNet(backbone);
        var model = Create(arch, spec, 2, size, Tasks);
        if (model is InterroGateModel ig)
            using (no_grad())
                foreach (var g in ig.Encoder.GateLayers)
                {
                    // A mixed sharing pattern in which every copy is read: channel 0 task-specific for all
                    // tasks, channel 1 shared by all, the rest random.
                    g.Alpha.copy_(randn_like(g.Alpha));
                    g.Alpha[.., 0] = 1;
                    g.Alpha[.., 1] = -1;
                }

        AssertEveryModuleOnce(model);
        ParameterGroup.CheckCovers(model.ParameterGroups(), model); // every parameter in exactly one optimiser group
        Assert.Equal(arch.StartsWith("interrogate", StringComparison.Ordinal) || arch == "cross-stitch",
            model.ParameterGroups().Any(g => g.Kind == GroupKind.Gates && g.Parameters.Count > 0));
        using var scope = NewDisposeScope();
        var outputs = model.call(randn(3, 2, size, size));
        Assert.Equal(Tasks.Names.ToHashSet(), outputs.Keys.ToHashSet());
        Tensor total = zeros(1);
        foreach (var t in Tasks)
        {
            Assert.Equal(new long[] { 3, t.Outputs }, outputs[t.Name].shape);
            Assert.True(outputs[t.Name].isfinite().all().item<bool>(), $"{t.Name} has non-finite outputs");
            total = total + outputs[t.Name].square().mean();
        }
        var reg = model.Regularizer();
        if (reg is not null) total = total + reg;
        total.backward();

        foreach (var (name, p) in model.named_parameters())
        {
            Assert.True(p.grad is not null, $"{name} has no gradient");
            Assert.True(p.grad!.isfinite().all().item<bool>(), $"{name} has a non-finite gradient");
            Assert.True(p.grad.abs().sum().item<float>() > 0, $"{name} has an all-zero gradient");
        }
    }

    /// <summary>
    /// No module is registered under two names: TorchSharp registers every field holding a module, whatever the
    /// field's declared type, and a module seen twice is counted, hooked and switched to eval twice.
    /// </summary>
    internal static void AssertEveryModuleOnce(nn.Module model)
    {
        var names = new Dictionary<nn.Module, string>(ReferenceEqualityComparer.Instance);
        foreach (var (name, module) in model.named_modules())
            Assert.True(names.TryAdd(module, name), $"one module is registered as both '{names.GetValueOrDefault(module)}' and '{name}'");
        // Each tensor once in the state dict, too (TorchSharp's state_dict would list an aliased module's tensors under both names).
        Assert.Equal(model.named_parameters().Count() + model.named_buffers(include_nonpersistent: false).Count(), model.state_dict().Count);
    }

    [Fact]
    public void The_gate_group_is_exactly_alpha_and_beta_at_the_gate_learning_rate_and_the_weights_are_the_rest()
    {
        var model = (InterroGateModel)Create("interrogate-conv", ResNetSpec.ResNet20(0.25), 1, 16, Tasks);
        var gateNames = model.named_parameters().Where(p => p.name.StartsWith("encoder.gates.", StringComparison.Ordinal)).Select(p => p.parameter).ToHashSet(ReferenceEqualityComparer.Instance);
        Assert.Equal(gateNames.Count, model.ParametersOf(GroupKind.Gates).Count());
        Assert.All(model.ParametersOf(GroupKind.Gates), p => Assert.Contains(p, gateNames));
        Assert.DoesNotContain(model.ParametersOf(GroupKind.Weights), p => gateNames.Contains(p));
        Assert.Equal(model.parameters().Count(), model.ParametersOf(GroupKind.Weights).Count() + gateNames.Count);
        Assert.Equal(["weights", "gates"], model.ParameterGroups().Select(g => g.Name));
        Assert.Equal(model.Options.GateLr, model.ParameterGroups()[1].LearningRate);
        Assert.Null(model.ParameterGroups()[0].LearningRate); // the training's learning rate and schedule
        // 19 gated layers (stem + 9 blocks × 2 units) with a mix on all but the last.
        Assert.Equal(19 * 2 - 1, gateNames.Count);
    }

    [Fact]
    public void Block_gating_gates_only_the_stem_and_block_outputs()
    {
        var model = (InterroGateModel)Create("interrogate-block", ResNetSpec.ResNet20(0.25), 1, 16, Tasks);
        Assert.Equal(1 + 9, model.Encoder.GateLayers.Count);
        var r50 = (InterroGateModel)Create("interrogate-conv", ResNetSpec.ResNet50(), 3, 32, Tasks);
        Assert.Equal(1 + 16 * 3, r50.Encoder.GateLayers.Count);
    }
}
