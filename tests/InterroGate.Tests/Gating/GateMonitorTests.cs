using InterroGate.Gating;
using static TorchSharp.torch;

namespace InterroGate.Tests.Gating;

[Collection("Torch")]
public sealed class GateMonitorTests
{
    [Fact]
    public void The_steady_spread_keeps_what_each_channel_gets_consistently_and_drops_the_noise()
    {
        using var _ = NewDisposeScope();
        var monitor = new GateMonitor(["a"], [4]);
        var layer = new GateLayer(1, 4, 0.01, hasMix: false);
        var alpha = layer.Alpha;
        // Each channel's consistent gradient, and a noise five times larger whose sign alternates from step to step.
        double[] steady = [-2e-3, -1e-3, 1e-3, 2e-3];
        double[] noise = [5e-2, -5e-2, 5e-2, -5e-2];
        var push = zeros(1, 4);
        for (int step = 0; step < 100; step++)
        {
            float sign = step % 2 == 0 ? 1 : -1;
            using var g = tensor(steady.Select((v, k) => (float)(v + sign * noise[k])).ToArray()).view(1, 4);
            alpha.grad?.zero_();
            (alpha * g).sum().backward();
            monitor.Observe([alpha], [push]);
        }
        var stats = monitor.Report([layer])[0].Tasks[0];
        double expected = Math.Sqrt(steady.Select(v => v * v).Average()); // their mean is 0
        Assert.Equal(expected, stats.SteadySpread, 6);
        Assert.Equal(0, stats.SteadyGrad, 6);
        Assert.True(stats.TaskGradSpread > 10 * stats.SteadySpread, $"one step's spread {stats.TaskGradSpread} should be mostly noise");

        // A push between the two spreads: small next to one step's spread, larger than every consistent difference.
        var monitor2 = new GateMonitor(["a"], [4]);
        using var pushed = full(1, 4, 5e-3f);
        for (int step = 0; step < 100; step++)
        {
            float sign = step % 2 == 0 ? 1 : -1;
            using var g = tensor(steady.Select((v, k) => (float)(v + sign * noise[k])).ToArray()).view(1, 4);
            alpha.grad?.zero_();
            (alpha * (g + pushed)).sum().backward(); // .grad holds task gradient + push, as in training
            monitor2.Observe([alpha], [pushed]);
        }
        var s2 = monitor2.Report([layer])[0].Tasks[0];
        Assert.True(s2.PushOverSpread < 0.2, $"push/sd {s2.PushOverSpread}");
        Assert.True(s2.PushOverSteadySpread > 2, $"push/steady sd {s2.PushOverSteadySpread}");
        Assert.Equal(expected, s2.SteadySpread, 6);
    }
}
