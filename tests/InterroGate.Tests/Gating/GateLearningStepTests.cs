using InterroGate.Architectures;
using InterroGate.Gating;
using TorchSharp;
using static TorchSharp.torch;
using static InterroGate.Tests.Gating.FixedGateTests;

namespace InterroGate.Tests.Gating;

/// <summary>
/// While the gates learn, the backward pass runs through the filters some task reads only
/// (<see cref="GatedEncoder.BackwardReadFiltersOnly"/>): the same losses, gradients (α and β included), weights and
/// batch-norm statistics as with every filter under autograd, and the unread filters really computed without it.
/// </summary>
[Collection("Torch")]
public sealed class GateLearningStepTests
{
    /// <summary>The fixed-gate tests' model with its gates at ±0.001, so that gate steps flip some of them.</summary>
    private static InterroGateModel Learning(string backbone, GatingMode gating, int size, bool readOnly)
    {
        var model = Model(backbone, gating, size);
        using (no_grad()) foreach (var g in model.Encoder.GateLayers) g.Alpha.mul_(1e-3);
        model.Encoder.BackwardReadFiltersOnly = readOnly;
        return model;
    }

    /// <summary>Per applicable gated unit and copy, the filters no task reads under <paramref name="gates"/>.</summary>
    private static long UnreadFilters(GatedEncoder encoder, IReadOnlyList<bool[][]> gates, bool convolutional)
    {
        if (!convolutional) return 0; // a ViT's linear units compute every copy with autograd
        var pattern = SharingPattern.FromGates(gates);
        return encoder.Units.Where(u => u.Gated).Sum(u => pattern[u.GateIndex].Kept.Sum(k => pattern[u.GateIndex].Channels - k.Length));
    }

    [Theory]
    [MemberData(nameof(FixedGateTests.Backbones), MemberType = typeof(FixedGateTests))]
    public void Gate_learning_steps_give_the_losses_weights_gates_and_statistics_of_the_full_computation(string backbone, GatingMode gating, int size)
    {
        // Float64, as in the fixed-gate steps: Adam's first steps would show float32 rounding of near-zero gradients.
        using var readOnly = Learning(backbone, gating, size, readOnly: true);
        using var full = Learning(backbone, gating, size, readOnly: false);
        readOnly.to(float64);
        full.to(float64);
        bool convolutional = backbone != "vit";
        var gates = (InterroGateModel m) => m.named_parameters().Where(p => p.name.StartsWith("encoder.gates.", StringComparison.Ordinal)).Select(p => p.parameter).ToArray();
        var weights = (InterroGateModel m) => m.named_parameters().Where(p => !p.name.StartsWith("encoder.gates.", StringComparison.Ordinal)).Select(p => p.parameter).ToArray();
        var optimizers = new[] { readOnly, full }.Select(m => (Weights: optim.Adam(weights(m), 1e-2), Gates: optim.SGD(gates(m), 1.0))).ToArray();
        manual_seed(11);
        var batches = Enumerable.Range(0, 4).Select(_ => randn(4, 3, size, size, dtype: float64)).ToArray();
        int flips = 0;
        var before = readOnly.Encoder.HardGates();
        for (int step = 0; step < batches.Length; step++)
        {
            var losses = new List<double>();
            foreach (var (model, opt) in new[] { readOnly, full }.Zip(optimizers))
            {
                model.train();
                opt.Weights.zero_grad();
                opt.Gates.zero_grad();
                var outputs = model.call(batches[step]);
                var loss = outputs.Values.Select(o => o.square().mean()).Aggregate((a, b) => a + b);
                loss.backward();
                losses.Add(loss.item<double>());
                opt.Weights.step();
                opt.Gates.step();
            }
            Assert.Equal(losses[1], losses[0], 10);
            Assert.Equal(UnreadFilters(readOnly.Encoder, before, convolutional), readOnly.Encoder.UntrackedFilters);
            Assert.Equal(0, full.Encoder.UntrackedFilters);
            var after = readOnly.Encoder.HardGates();
            flips += before.Zip(after).Sum(l => l.First.Zip(l.Second).Sum(t => t.First.Zip(t.Second).Count(g => g.First != g.Second)));
            before = after;
        }
        Assert.True(flips > 0, "no gate changed: the steps did not test a new split");
        foreach (var ((name, p), (_, q)) in readOnly.named_parameters().Zip(full.named_parameters()))
            Assert.True(MaxDifference(p, q) <= 1e-9, $"{name}: {MaxDifference(p, q):E2}");
        var fullBuffers = full.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        foreach (var (name, buffer) in readOnly.named_buffers())
            Assert.True(MaxDifference(buffer.to(float64), fullBuffers[name].to(float64)) <= 1e-9, $"{name}: {MaxDifference(buffer.to(float64), fullBuffers[name].to(float64)):E2}");
    }

    [Theory]
    [InlineData(GatingMode.Conv)]
    [InlineData(GatingMode.Block)]
    public void In_float32_every_gradient_is_the_full_computations_also_for_a_copy_no_task_reads(GatingMode gating)
    {
        // Float32 runs the fused gate-and-mix kernel. The model's layer 1 is shared for every task: its task copies are
        // read nowhere and run without autograd, yet their weights get the full computation's gradient, 0 (not none:
        // an optimiser counts a step for a gradient of 0 and skips a weight without one).
        using var readOnly = Learning("resnet20", gating, 16, readOnly: true);
        using var full = Learning("resnet20", gating, 16, readOnly: false);
        var x = randn(2, 3, 16, 16);
        foreach (var model in new[] { readOnly, full })
        {
            model.train();
            model.call(x).Values.Select(o => o.square().mean()).Aggregate((a, b) => a + b).backward();
        }
        Assert.True(readOnly.Encoder.UntrackedFilters > 0);
        int zero = 0;
        foreach (var ((name, p), (_, q)) in readOnly.named_parameters().Zip(full.named_parameters()))
        {
            if (q.grad is null) { Assert.Null(p.grad); continue; }
            Assert.True(p.grad is not null, $"{name} has no gradient");
            Assert.True(MaxDifference(p.grad, q.grad) <= 1e-5 * Math.Max(1, q.grad.abs().max().item<float>()), $"{name}: {MaxDifference(p.grad, q.grad):E2}");
            if (q.grad.abs().max().item<float>() == 0) zero++;
        }
        Assert.True(zero > 0, "no weight with a gradient of 0: no copy was read nowhere");
    }

    [Fact]
    public void It_is_the_configured_default_and_stays_out_of_fixed_gates_noise_evaluation_and_fused_units()
    {
        Assert.Null(new InterroGateConfig().BackwardReadFiltersOnly); // on for the CPU, off on a GPU
        manual_seed(3);
        using var configured = new InterroGateModel(FixedGateTests.Tasks, Spec("resnet20"), 3, (16, 16), new InterroGateConfig { BackwardReadFiltersOnly = false });
        Assert.False(configured.Encoder.BackwardReadFiltersOnly);

        using var model = Learning("resnet20", GatingMode.Conv, 16, readOnly: true);
        var encoder = model.Encoder;
        encoder.BackwardReadFiltersOnly = null; // the default: these tensors are on the CPU
        var x = randn(2, 3, 16, 16);
        long Untracked(Action setup, bool train = true)
        {
            setup();
            if (train) model.train(); else model.eval();
            model.call(x);
            return encoder.UntrackedFilters;
        }
        Assert.True(Untracked(() => { }) > 0);
        Assert.Equal(0, Untracked(() => { }, train: false)); // no backward pass in evaluation
        using (no_grad()) Assert.Equal(0, Untracked(() => { }));
        Assert.Equal(0, Untracked(() => encoder.GatesFixed = true)); // the fixed-gate step computes kept filters only
        encoder.GatesFixed = false;
        Assert.Equal(0, Untracked(() => encoder.Noise = new GateNoise(5))); // noisy gates differ from the hard ones read before the pass
        encoder.Noise = GateNoise.Off;
        Assert.Equal(0, Untracked(() => encoder.Fusion = BranchFusion.On)); // a fused unit computes its copies in one call
        Assert.True(Untracked(() => encoder.Fusion = BranchFusion.Off) > 0);
        Assert.Equal(0, Untracked(() => encoder.BackwardReadFiltersOnly = false));
    }
}
