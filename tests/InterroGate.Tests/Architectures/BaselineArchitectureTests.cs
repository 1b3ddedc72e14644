using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Tests.Architectures;

/// <summary>MTAN and Cross-stitch: what each adds to a ResNet, checked against the plain networks they contain.</summary>
[Collection("Torch")]
public sealed class BaselineArchitectureTests
{
    private static readonly TaskSet Tasks = new([new TaskSpec("a", TaskKind.Classification, 4), new TaskSpec("b", TaskKind.Classification, 3)]);
    private static readonly ResNetSpec Spec = ResNetSpec.ResNet20(0.25);

    [Fact]
    public void Cross_stitch_units_that_are_the_identity_reproduce_the_STL_networks_it_starts_from()
    {
        manual_seed(2);
        var stl = new SingleTask(Tasks, Spec, 1);
        var cs = new CrossStitch(Tasks, Spec, 1, selfWeight: 1.0);
        WeightTransfer.InitialiseCrossStitch(cs, Tasks.ToDictionary(t => t.Name, _ => (MultiTaskModel)stl));
        stl.eval(); cs.eval();
        var x = randn(2, 1, 16, 16);
        using var _ = no_grad();
        var expected = stl.call(x);
        var actual = cs.call(x);
        foreach (var t in Tasks) Assert.True(actual[t.Name].allclose(expected[t.Name], rtol: 1e-5, atol: 1e-6), t.Name);
        // One unit after the stem and one after each of ResNet-20's three stages, [T, T, C] each.
        Assert.Equal(new[] { 4L, 4, 8, 16 }, cs.Units.Select(u => u.shape[2]));
        Assert.All(cs.Units, u => Assert.Equal(new long[] { 2, 2 }, u.shape[..2]));
        Assert.Same(cs.Units[0], cs.ParametersOf(GroupKind.Gates).First());
        Assert.DoesNotContain(cs.ParametersOf(GroupKind.Weights), p => cs.Units.Contains(p));
    }

    [Fact]
    public void Cross_stitch_units_mix_the_tasks_channels_with_their_weights()
    {
        manual_seed(3);
        var stl = new SingleTask(Tasks, Spec, 1);
        var swapped = new CrossStitch(Tasks, Spec, 1, selfWeight: 0.0); // each task reads only the other's features
        WeightTransfer.InitialiseCrossStitch(swapped, Tasks.ToDictionary(t => t.Name, _ => (MultiTaskModel)stl));
        var init = swapped.Units[0].detach();
        Assert.Equal(0f, init[0, 0, 0].item<float>());
        Assert.Equal(1f, init[0, 1, 0].item<float>());
        Assert.Equal(0.9f, new CrossStitch(Tasks, Spec, 1, 0.9).Units[1][1, 1, 3].item<float>(), 6);
        Assert.Throws<ArgumentOutOfRangeException>(() => new CrossStitch(Tasks, Spec, 1, 1.5));
    }

    [Fact]
    public void MTAN_shares_its_encoder_and_gives_every_task_its_own_attention_per_stage()
    {
        var mtan = new Mtan(Tasks, Spec, 1);
        var shared = mtan.SharedParameters().ToHashSet();
        var names = mtan.named_parameters().ToArray();
        // The encoder and the attention encoders f between stages are shared (the authors' ResNet-MTAN); masks and heads are the tasks' own.
        static bool Shared(string name) => name.StartsWith("encoder.", StringComparison.Ordinal) || name.StartsWith("stage.", StringComparison.Ordinal);
        Assert.All(names.Where(n => Shared(n.name)), n => Assert.Contains(n.parameter, shared));
        Assert.All(names.Where(n => !Shared(n.name)), n => Assert.DoesNotContain(n.parameter, shared));
        for (int j = 0; j < 2; j++) Assert.Contains(names, n => n.name.StartsWith($"stage.{j}.", StringComparison.Ordinal));
        foreach (var t in Tasks)
            for (int j = 0; j < 3; j++) Assert.Contains(names, n => n.name.StartsWith($"attention.{t.Name}.{j}.", StringComparison.Ordinal));

        // Each mask reads what enters its stage's last block (ResNet-20: the second block's output), as the authors' layer[:-1].
        var entering = new List<Tensor>();
        var firstStage = mtan.named_modules().Single(m => m.name == "encoder.layer1.2").module as TorchSharp.torch.nn.Module<Tensor, Tensor>;
        var mask = mtan.named_modules().Single(m => m.name == "attention.a.0.0").module as TorchSharp.torch.nn.Module<Tensor, Tensor>;
        var hooks = new[] { firstStage!, mask! }.Select(m => m.register_forward_pre_hook((_, input) => { entering.Add(input.detach().clone()); return input; })).ToArray();
        mtan.eval();
        using (no_grad()) mtan.call(randn(2, 1, 16, 16));
        foreach (var h in hooks) h.remove();
        Assert.Equal(2, entering.Count);
        Assert.True(entering[0].equal(entering[1]).all().item<bool>());
        // Every task gets an output of its head's width.
        mtan.eval();
        using var _ = no_grad();
        var outputs = mtan.call(randn(2, 1, 16, 16));
        Assert.Equal(new long[] { 2, 4 }, outputs["a"].shape);
    }

    [Fact]
    public void Both_are_configured_by_name_and_validated()
    {
        var cs = ConfigJson.Deserialize<RunConfig>("""{ "architecture": { "type": "cross-stitch", "selfWeight": 0.8, "unitLr": 0.5 } }""");
        var groups = cs.Architecture.CreateModel(Tasks, ResNetSpec.ResNet20(0.25), (1, 16, 16)).ParameterGroups();
        Assert.Equal(0.5, groups.Single(g => g.Name == "gates").LearningRate);
        Assert.IsType<MtanConfig>(ConfigJson.Deserialize<RunConfig>("""{ "architecture": { "type": "mtan" } }""").Architecture);
        var bad = Assert.Throws<ConfigException>(() => new RunConfig { Architecture = new CrossStitchConfig { SelfWeight = 2 } }.Validate(2));
        Assert.Contains("architecture.selfWeight", bad.Message);
        var unknown = Assert.Throws<ConfigException>(() => ConfigJson.Deserialize<RunConfig>("""{ "architecture": { "type": "nddr" } }"""));
        Assert.Contains("cross-stitch", unknown.Message);
        Assert.Contains("mtan", unknown.Message);
    }
}
