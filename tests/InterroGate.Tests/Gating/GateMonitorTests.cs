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

    [Fact]
    public void Its_running_means_and_flips_equal_a_direct_computation_per_layer_and_task()
    {
        using var _ = NewDisposeScope();
        long[] widths = [3, 5];
        const int Tasks = 2, Steps = 7;
        var monitor = new GateMonitor(["a", "b"], widths);
        var layers = widths.Select(c => new GateLayer(Tasks, c, 0.01, hasMix: true)).ToArray();
        var rng = new Random(3);
        float[][][] alphaSeen = new float[Steps][][], gradSeen = new float[Steps][][], pushSeen = new float[Steps][][];
        for (int step = 0; step < Steps; step++)
        {
            alphaSeen[step] = new float[widths.Length][];
            gradSeen[step] = new float[widths.Length][];
            pushSeen[step] = new float[widths.Length][];
            var pushes = new List<Tensor>();
            for (int l = 0; l < widths.Length; l++)
            {
                var alpha = layers[l].Alpha;
                using (no_grad()) alpha.copy_(randn(Tasks, widths[l]) * 0.05); // some gates cross zero between steps
                var g = Enumerable.Range(0, Tasks * (int)widths[l]).Select(_ => (float)(rng.NextDouble() - 0.4) * 1e-2f).ToArray();
                var p = Enumerable.Range(0, Tasks * (int)widths[l]).Select(_ => (float)rng.NextDouble() * 1e-3f).ToArray();
                alpha.grad?.zero_();
                (alpha * tensor(g).view(Tasks, widths[l])).sum().backward();
                pushes.Add(tensor(p).view(Tasks, widths[l]));
                alphaSeen[step][l] = alpha.detach().flatten().data<float>().ToArray();
                gradSeen[step][l] = g;
                pushSeen[step][l] = p;
            }
            monitor.Observe(layers.Select(x => (Tensor)x.Alpha).ToArray(), pushes);
        }
        Assert.Equal(Steps, monitor.Steps);
        var report = monitor.Report(layers);
        for (int l = 0; l < widths.Length; l++)
            for (int t = 0; t < Tasks; t++)
            {
                int c = (int)widths[l];
                double abs = 0, spread = 0, push = 0;
                var steady = new double[c];
                long flips = 0;
                for (int step = 0; step < Steps; step++)
                {
                    var x = Enumerable.Range(0, c).Select(k => (double)gradSeen[step][l][t * c + k] - pushSeen[step][l][t * c + k]).ToArray();
                    abs += x.Select(Math.Abs).Average();
                    double mean = x.Average();
                    spread += Math.Sqrt(x.Select(v => (v - mean) * (v - mean)).Average());
                    push += Enumerable.Range(0, c).Select(k => (double)pushSeen[step][l][t * c + k]).Average();
                    for (int k = 0; k < c; k++) steady[k] += x[k] / Steps;
                    if (step > 0)
                        flips += Enumerable.Range(0, c).Count(k => alphaSeen[step][l][t * c + k] > 0 != alphaSeen[step - 1][l][t * c + k] > 0);
                }
                var got = report[l].Tasks[t];
                Assert.Equal(abs / Steps, got.TaskGrad, 9);
                Assert.Equal(spread / Steps, got.TaskGradSpread, 9);
                Assert.Equal(push / Steps, got.Push, 9);
                Assert.Equal(steady.Average(), got.SteadyGrad, 9);
                double steadyMean = steady.Average();
                Assert.Equal(Math.Sqrt(steady.Select(v => (v - steadyMean) * (v - steadyMean)).Average()), got.SteadySpread, 9);
                Assert.Equal(flips, got.Flips);
            }
        Assert.True(report.Sum(r => r.Tasks.Sum(t => t.Flips)) > 0, "the random gates should have flipped somewhere");

        monitor.Reset();
        Assert.Equal(0, monitor.Steps);
        Assert.All(monitor.Report(layers), r => Assert.All(r.Tasks, t => { Assert.True(double.IsNaN(t.TaskGrad)); Assert.Equal(0, t.Flips); }));
    }

    [Fact]
    public void The_largest_mix_weight_is_read_only_where_the_network_forms_and_reads_the_mix()
    {
        using var _ = NewDisposeScope();
        using var model = new InterroGate.Architectures.InterroGateModel(FixedGateTests.Tasks, InterroGate.Backbones.ResNetSpec.ResNet20(0.25), 3,
            (16, 16), new InterroGate.Architectures.InterroGateConfig());
        var layers = model.Encoder.GateLayers;
        using (no_grad())
            foreach (var g in layers)
                g.Beta?.copy_(tensor(Enumerable.Range(0, g.Tasks).SelectMany(t => Enumerable.Range(0, (int)g.Channels).Select(c => t == 0 ? 3f : 0f)).ToArray())
                    .reshape(g.Tasks, g.Channels));
        // Fresh gates: every task reads its own copy everywhere, no shared filter is kept, so no mix is read anywhere.
        Assert.All(model.TakeGateStatistics(), l => Assert.All(l.Tasks, t => Assert.True(double.IsNaN(t.MixWeightMax), $"layer {l.Layer}: {t.MixWeightMax}")));

        // A unit that reads a gated layer has task 0's first channel shared: its shared copy keeps a filter, and reads the
        // mix of the layer before it. There the mix is formed on every channel (the tasks read their own copies).
        var units = model.Encoder.Units;
        var (reader, read) = units.Where(u => u.Gated).SelectMany(u => u.Reads.Where(r => units[r].Gated).Select(r => (u, units[r]))).First();
        using (no_grad()) layers[reader.GateIndex].Alpha[0][0].fill_(-1);
        var stats = model.TakeGateStatistics();
        double weight = Math.Exp(3) / (Math.Exp(3) + FixedGateTests.Tasks.Count - 1);
        Assert.Equal(weight, stats[read.GateIndex].Tasks[0].MixWeightMax, 6);
        Assert.Equal(weight, stats[read.GateIndex].Tasks[0].MixWeight, 6);
        // Layers whose readers keep no shared filter still show none.
        var unread = units.Where(u => u.Gated && u.ReadBy.All(v => units[v].Gated && units[v].GateIndex != reader.GateIndex)).Select(u => u.GateIndex).ToArray();
        Assert.NotEmpty(unread);
        Assert.All(unread, l => Assert.True(double.IsNaN(stats[l].Tasks[0].MixWeightMax), $"layer {l}"));
    }
}
