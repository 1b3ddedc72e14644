using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Gating;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Tests.Gating;

[Collection("Torch")]
public sealed class GateHysteresisTests
{
    private static float[] State(GateLayer g) => g.Hard().data<float>().ToArray();

    [Fact]
    public void A_gate_switches_only_once_alpha_leaves_the_band_on_the_far_side()
    {
        using var g = new GateLayer(tasks: 1, channels: 4, alphaInit: 0.01, hasMix: false, hysteresis: 0.05);
        Assert.Equal([1f, 1, 1, 1], State(g));
        void Set(params float[] a) { using (no_grad()) g.Alpha.copy_(tensor(a).view(1, 4)); g.Step(); }
        Set(-0.03f, -0.06f, 0.2f, 0f);
        Assert.Equal([1f, 0, 1, 1], State(g)); // inside the band: kept; below −h: off
        Set(0.03f, 0.04f, -0.049f, -0.2f);
        Assert.Equal([1f, 0, 1, 0], State(g)); // 0.04 < h keeps the second off; −0.2 switches the last off
        Set(0.03f, 0.051f, -0.049f, 0.049f);
        Assert.Equal([1f, 1, 1, 0], State(g));

        // The forward pass uses the state (straight-through: value G, gradient σ'(α)).
        var gates = g.Gates(GateNoise.Off);
        Assert.Equal([1f, 1, 1, 0], gates.detach().data<float>().ToArray());
        gates.sum().backward();
        var expected = g.Alpha.detach().sigmoid() * (1 - g.Alpha.detach().sigmoid());
        Assert.True(g.Alpha.grad!.allclose(expected));

        // Without a hysteresis the gate is 1[α > 0] at every step, and there is no state to save.
        using var plain = new GateLayer(1, 4, 0.01, false);
        using (no_grad()) plain.Alpha.copy_(tensor(new[] { -0.03f, 0.02f, 0f, 1f }).view(1, 4));
        plain.Step();
        Assert.Equal([0f, 1, 0, 1], State(plain));
        Assert.DoesNotContain(plain.state_dict().Keys, k => k.Contains("gate_state"));
        Assert.Contains("gate_state", g.state_dict().Keys);
    }

    [Fact]
    public void The_model_prunes_and_reports_the_state_it_trains_with()
    {
        var tasks = new TaskSet([new TaskSpec("a", TaskKind.Classification, 3), new TaskSpec("b", TaskKind.Classification, 3)]);
        using var model = new InterroGateModel(tasks, ResNetSpec.ResNet20(0.25), 1, (16, 16), new InterroGateConfig { GateHysteresis = 0.05 });
        var first = model.Encoder.GateLayers[0];
        using (no_grad()) first.Alpha.fill_(-0.02); // inside the band: still task-specific
        model.GatesStepped();
        Assert.All(model.HardGates()[0], task => Assert.All(task, on => Assert.True(on)));
        using (no_grad()) first.Alpha.fill_(-0.08);
        model.GatesStepped();
        Assert.All(model.HardGates()[0], task => Assert.All(task, on => Assert.False(on)));
        Assert.True(model.TaskSpecificFraction().Overall < 1);
        // The state travels with the weights.
        using var copy = new InterroGateModel(tasks, ResNetSpec.ResNet20(0.25), 1, (16, 16), new InterroGateConfig { GateHysteresis = 0.05 });
        using (no_grad()) foreach (var (name, t) in model.state_dict()) copy.state_dict()[name].copy_(t);
        Assert.Equal(model.HardGates()[0][0], copy.HardGates()[0][0]);
    }
}
