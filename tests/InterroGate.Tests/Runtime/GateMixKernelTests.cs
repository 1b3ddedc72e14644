using InterroGate.Gating;
using InterroGate.Runtime;
using static TorchSharp.torch;

namespace InterroGate.Tests.Runtime;

/// <summary>The fused CPU gate-and-mix computes what the tensor operations do, forward and backward.</summary>
[Collection("Torch")]
public sealed class GateMixKernelTests
{
    private sealed record Pass(Tensor[] Gated, Tensor? Mixed, Tensor Shared, Tensor[] Tasks, Tensor Alpha, Tensor? Beta);

    /// <summary>One gated layer's forward and backward with the kernel on or off, from the same seed.</summary>
    private static Pass Run(bool kernel, int tasks, long channels, int size, bool mix, int seed, bool skipFirstTask = false, bool preActivation = false)
    {
        bool before = GateMixKernel.Enabled;
        GateMixKernel.Enabled = kernel;
        using var scope = NewDisposeScope();
        try
        {
            manual_seed(seed);
            var layer = new GateLayer(tasks, channels, 0, hasMix: mix) { Implementation = GateMixKernel.Implementation };
            using (no_grad())
            {
                layer.Alpha.copy_(randn_like(layer.Alpha));
                layer.Beta?.copy_(randn_like(layer.Beta));
            }
            var shared = randn(3, channels, size, size).requires_grad_();
            var phi = Enumerable.Range(0, tasks).Select(_ => randn(3, channels, size, size).requires_grad_()).ToArray();
            var (gated, mixed) = layer.Apply(phi, shared, layer.Gates(GateNoise.Off), preActivation);
            Assert.Equal(kernel, GateMixKernel.Applies(shared, phi));

            // A loss that weighs every element differently, so each gradient is a distinct tensor.
            Tensor loss = zeros(1);
            for (int t = skipFirstTask ? 1 : 0; t < tasks; t++) loss = loss + (gated[t] * randn_like(gated[t])).sum();
            if (mixed is not null) loss = loss + (mixed * mixed).sum();
            loss.backward();
            var pass = new Pass(gated.Select(g => g.detach()).ToArray(), mixed?.detach(), shared.grad!.clone(), phi.Select(p => p.grad?.clone() ?? zeros_like(p)).ToArray(), // no gradient: none reached it
                layer.Alpha.grad!.clone(), layer.Beta?.grad?.clone());
            foreach (var t in pass.Gated.Concat(pass.Tasks).Append(pass.Shared).Append(pass.Alpha)) t.MoveToOuterDisposeScope();
            pass.Mixed?.MoveToOuterDisposeScope();
            pass.Beta?.MoveToOuterDisposeScope();
            layer.Dispose();
            return pass;
        }
        finally
        {
            GateMixKernel.Enabled = before;
        }
    }

    private static void Close(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        double scale = expected.abs().max().item<float>() + 1e-12;
        double error = (expected - actual).abs().max().item<float>() / scale;
        Assert.True(error <= 1e-5, $"{what}: largest difference {error:E2} of the largest value");
    }

    [Theory]
    [InlineData(1, 4, 9, true, false)]   // 81 elements per plane: vectors and a scalar tail
    [InlineData(2, 16, 36, true, false)] // MultiFashion's first stage
    [InlineData(2, 8, 18, false, false)] // the last gated layer: no mix
    [InlineData(3, 5, 7, true, false)]
    [InlineData(1, 4, 9, true, true)]    // features before their ReLU: the kernel applies it
    [InlineData(2, 16, 36, true, true)]
    [InlineData(2, 8, 18, false, true)]
    [InlineData(3, 5, 7, true, true)]
    public void Fused_kernel_matches_the_tensor_operations_in_values_and_gradients(int tasks, long channels, int size, bool mix, bool preActivation)
    {
        var ops = Run(kernel: false, tasks, channels, size, mix, seed: 3, preActivation: preActivation);
        var fused = Run(kernel: true, tasks, channels, size, mix, seed: 3, preActivation: preActivation);
        for (int t = 0; t < tasks; t++)
        {
            Close(ops.Gated[t], fused.Gated[t], $"gated {t}");
            Close(ops.Tasks[t], fused.Tasks[t], $"∂ task {t}");
        }
        Assert.Equal(mix, fused.Mixed is not null);
        if (mix) Close(ops.Mixed!, fused.Mixed!, "mix");
        Close(ops.Shared, fused.Shared, "∂ shared");
        Close(ops.Alpha, fused.Alpha, "∂ α");
        if (mix) Close(ops.Beta!, fused.Beta!, "∂ β");
    }

    [Fact]
    public void The_kernel_gives_bit_identical_results_run_after_run()
    {
        // Per-channel sums are split over threads; they are added in a fixed order, so a seed repeats a run exactly.
        var first = Run(kernel: true, 2, 16, 36, mix: true, seed: 9);
        for (int i = 0; i < 3; i++)
        {
            var again = Run(kernel: true, 2, 16, 36, mix: true, seed: 9);
            Assert.True(first.Alpha.equal(again.Alpha).all().item<bool>(), "∂ α differs between runs");
            Assert.True(first.Beta!.equal(again.Beta!).all().item<bool>(), "∂ β differs between runs");
            Assert.True(first.Shared.equal(again.Shared).all().item<bool>(), "∂ shared differs between runs");
        }
    }

    [Fact]
    public void A_task_whose_output_nobody_reads_gets_zero_gradient_and_the_others_are_unchanged()
    {
        var ops = Run(kernel: false, 2, 6, 8, mix: false, seed: 5, skipFirstTask: true);
        var fused = Run(kernel: true, 2, 6, 8, mix: false, seed: 5, skipFirstTask: true);
        Assert.Equal(0, fused.Tasks[0].abs().max().item<float>());
        Close(ops.Tasks[1], fused.Tasks[1], "∂ task 1");
        Close(ops.Shared, fused.Shared, "∂ shared");
        Close(ops.Alpha, fused.Alpha, "∂ α");
    }

    [Fact]
    public void Before_the_relu_negative_features_give_zero_and_no_gradient_and_nan_stays_nan()
    {
        bool before = GateMixKernel.Enabled;
        GateMixKernel.Enabled = true;
        try
        {
            using var scope = NewDisposeScope();
            var layer = new GateLayer(1, 1, 0, hasMix: true);
            using (no_grad()) layer.Alpha.fill_(5); // the task reads its own copy
            // 20 elements: vectors and the scalar tail both see a negative, a positive and a NaN value.
            var values = Enumerable.Range(0, 20).Select(i => i % 3 == 0 ? -1f : i % 3 == 1 ? 2f : float.NaN).ToArray();
            var task = tensor(values).view(1, 1, 4, 5).requires_grad_();
            var shared = full(1, 1, 4, 5, -3f).requires_grad_();
            var (gated, mixed) = layer.Apply([task], shared, layer.Gates(GateNoise.Off), preActivation: true);
            var g = gated[0].data<float>().ToArray();
            for (int i = 0; i < 20; i++)
                Assert.Equal(values[i] < 0 ? 0f : values[i], g[i]); // NaN equals NaN in Assert.Equal
            (gated[0].nan_to_num().sum() + mixed!.nan_to_num().sum()).backward();
            var dTask = task.grad!.data<float>().ToArray();
            for (int i = 0; i < 20; i++) Assert.Equal(values[i] > 0 ? 2f : 0f, dTask[i]); // gated and mix each pass 1
            Assert.Equal(0f, shared.grad!.abs().max().item<float>()); // every shared input is negative
        }
        finally
        {
            GateMixKernel.Enabled = before;
        }
    }

    [Fact]
    public void Small_planes_other_ranks_and_other_dtypes_use_the_tensor_operations()
    {
        Assert.False(GateMixKernel.Applies(zeros(2, 4, 3, 3), [zeros(2, 4, 3, 3)]));       // 9 elements per plane
        Assert.False(GateMixKernel.Applies(zeros(2, 4), [zeros(2, 4)]));                   // [B, C]
        Assert.False(GateMixKernel.Applies(zeros(2, 4, 8, 8, dtype: float64), [zeros(2, 4, 8, 8, dtype: float64)]));
        Assert.False(GateMixKernel.Applies(zeros(2, 4, 8, 8), [zeros(2, 4, 8, 9)]));        // shapes differ
        bool before = GateMixKernel.Enabled;
        try
        {
            GateMixKernel.Enabled = true;
            Assert.True(GateMixKernel.Applies(zeros(2, 4, 8, 8), [zeros(2, 4, 8, 8)]));     // the same shapes, float32, 64 per plane
            GateMixKernel.Enabled = false;
            Assert.False(GateMixKernel.Applies(zeros(2, 4, 8, 8), [zeros(2, 4, 8, 8)]));
        }
        finally { GateMixKernel.Enabled = before; }
    }

    [Fact]
    public void Every_gate_layer_of_an_InterroGate_model_is_built_with_the_kernel_plugged_in()
    {
        using var scope = NewDisposeScope();
        var tasks = new InterroGate.Tasks.TaskSet([new InterroGate.Tasks.TaskSpec("a", InterroGate.Tasks.TaskKind.Classification, 2), new InterroGate.Tasks.TaskSpec("b", InterroGate.Tasks.TaskKind.Classification, 2)]);
        var specs = new InterroGate.Backbones.IEncoderSpec[] { InterroGate.Backbones.BackboneCatalog.Spec("resnet20", 0.25), InterroGate.Tests.Gating.GatedHRNetTests.Tiny };
        foreach (var spec in specs)
        {
            using var model = new InterroGate.Architectures.InterroGateModel(tasks, spec, 1, (32, 32), new InterroGate.Architectures.InterroGateConfig());
            Assert.NotEmpty(model.Encoder.GateLayers);
            Assert.All(model.Encoder.GateLayers, g => Assert.Same(GateMixKernel.Implementation, g.Implementation));
        }
    }
}
