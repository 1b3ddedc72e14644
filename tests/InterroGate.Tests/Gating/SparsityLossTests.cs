using InterroGate.Gating;
using static TorchSharp.torch;

namespace InterroGate.Tests.Gating;

[Collection("Torch")]
public sealed class SparsityLossTests
{
    private static Tensor Logits(params float[] probabilities) =>
        tensor(probabilities.Select(p => MathF.Log(p / (1 - p))).ToArray());

    // Two tasks, two layers; σ(α) means per task: layer A (0.8, 0.2), layer B (0.6, 0.4) with C = 2.
    private static readonly Tensor[] Alphas =
    [
        Logits(0.7f, 0.9f, 0.1f, 0.3f).view(2, 2),
        Logits(0.6f, 0.6f, 0.5f, 0.3f).view(2, 2),
    ];

    [Fact]
    public void Hinge_is_the_mean_over_tasks_of_usage_above_budget()
    {
        // usage: task 0 = (0.8 + 0.6) / 2 = 0.7; task 1 = (0.2 + 0.4) / 2 = 0.3.
        var loss = SparsityLoss.Compute(Alphas, [0.5, 0.5], SparsityKind.Hinge).item<float>();
        Assert.Equal((0.2 + 0) / 2, loss, 5);
    }

    [Fact]
    public void L1_ignores_the_budget()
    {
        var loss = SparsityLoss.Compute(Alphas, [0.5, 0.5], SparsityKind.L1).item<float>();
        Assert.Equal((0.7 + 0.3) / 2, loss, 5);
    }

    [Fact]
    public void Flops_weighting_weights_layers_by_their_cost()
    {
        // weights 3:1 -> task 0: 0.75*0.8 + 0.25*0.6 = 0.75; task 1: 0.75*0.2 + 0.25*0.4 = 0.25.
        var loss = SparsityLoss.Compute(Alphas, [0.1, 0.1], SparsityKind.Flops, [300, 100]).item<float>();
        Assert.Equal((0.65 + 0.15) / 2, loss, 5);
    }

    [Fact]
    public void Channel_weighting_pushes_every_gate_alike_whatever_its_layers_width()
    {
        // Layers of 2 and 6 channels, every σ(α) = 0.5: usage 0.5 in both forms; the per-gate push (at σ' = 1/4) is
        // 1/(T·L·C) under Eq. 4 (4× larger in the narrow layer) and 1/(T·ΣC) with channel weighting.
        Tensor[] alphas = [zeros(1, 2), zeros(1, 6)];
        Assert.Equal(0.5, SparsityLoss.Compute(alphas, [0.0], SparsityKind.Channels).item<float>(), 5);
        var eq4 = SparsityLoss.Gradient(alphas, [0.0], SparsityKind.Hinge);
        var channels = SparsityLoss.Gradient(alphas, [0.0], SparsityKind.Channels);
        Assert.Equal(0.25 / (2 * 2), eq4[0][0, 0].item<float>(), 6);
        Assert.Equal(0.25 / (2 * 6), eq4[1][0, 0].item<float>(), 6);
        Assert.Equal(0.25 / 8, channels[0][0, 0].item<float>(), 6);
        Assert.Equal(0.25 / 8, channels[1][0, 0].item<float>(), 6);
        // The usage is the fraction over all channels: 2 channels at 0.9 and 6 at 0.1 give 0.3, not (0.9 + 0.1) / 2.
        Tensor[] mixed = [full(1, 2, MathF.Log(9f)), full(1, 6, -MathF.Log(9f))];
        Assert.Equal(0.3, SparsityLoss.Compute(mixed, [0.0], SparsityKind.Channels).item<float>(), 5);
        Assert.Equal(0.5, SparsityLoss.Compute(mixed, [0.0], SparsityKind.Hinge).item<float>(), 5);
    }

    [Fact]
    public void Its_gradient_pushes_every_gate_down_while_over_budget()
    {
        var a = Logits(0.7f, 0.9f).view(1, 2).requires_grad_();
        SparsityLoss.Compute([a], [0.0], SparsityKind.Hinge).backward();
        Assert.All(a.grad!.data<float>().ToArray(), g => Assert.True(g > 0));
    }

    [Fact]
    public void Wrong_budget_count_is_an_error()
    {
        Assert.Throws<ArgumentException>(() => SparsityLoss.Compute(Alphas, [0.5], SparsityKind.Hinge));
    }

    [Theory]
    [InlineData(SparsityKind.Hinge, 0.5)]
    [InlineData(SparsityKind.Hinge, 0.25)]
    [InlineData(SparsityKind.L1, 0.5)]
    [InlineData(SparsityKind.Flops, 0.1)]
    [InlineData(SparsityKind.Channels, 0.1)]
    public void The_closed_form_push_equals_autograd(SparsityKind kind, double tau)
    {
        // Task 1's usage (0.3) is under τ = 0.5, so the hinge pushes only task 0; at τ = 0.25 both are pushed.
        var alphas = Alphas.Select(a => a.clone().requires_grad_(true)).ToArray();
        double[] weights = [300, 100];
        var loss = SparsityLoss.Compute(alphas, [tau, tau], kind, weights);
        loss.backward();
        var closed = SparsityLoss.Gradient(alphas, [tau, tau], kind, weights);
        for (int l = 0; l < alphas.Length; l++)
            Assert.True(alphas[l].grad!.allclose(closed[l], rtol: 1e-5, atol: 1e-7), $"layer {l}: largest difference {(alphas[l].grad! - closed[l]).abs().max().item<float>()}");
        if (kind == SparsityKind.Hinge && tau == 0.5)
            Assert.Equal(0f, closed[0][1].abs().sum().item<float>()); // a task under its budget gets no push
    }
}
