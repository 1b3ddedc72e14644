using InterroGate.Gating;
using static TorchSharp.torch;

namespace InterroGate.Tests.Gating;

[Collection("Torch")]
public sealed class GateLayerTests
{
    [Fact]
    public void Gates_are_hard_forward_and_sigmoid_derivative_backward()
    {
        var layer = new GateLayer(2, 3, 0, hasMix: true);
        using (no_grad()) layer.Alpha.copy_(tensor(new float[] { 1.5f, -0.5f, 0.2f, -2f, 3f, -0.1f }).view(2, 3));
        var g = layer.Gates(GateNoise.Off);
        Assert.Equal(new float[] { 1, 0, 1, 0, 1, 0 }, g.data<float>().ToArray());
        (g * arange(6, dtype: float32).view(2, 3)).sum().backward();
        var s = layer.Alpha.detach().sigmoid();
        var expected = s * (1 - s) * arange(6, dtype: float32).view(2, 3);
        Assert.True(allclose(layer.Alpha.grad!, expected, 1e-5, 1e-6));
    }

    [Fact]
    public void Each_task_reads_its_own_copy_where_the_gate_is_one_and_the_shared_copy_elsewhere()
    {
        var layer = new GateLayer(2, 2, 0, hasMix: true);
        var phi0 = full(1, 2, 1, 1, 10f);
        var phi1 = full(1, 2, 1, 1, 20f);
        var psi = full(1, 2, 1, 1, 1f);
        var gates = tensor(new float[] { 1, 0, 0, 1 }).view(2, 2);
        var (gated, mixed) = layer.Apply([phi0, phi1], psi, gates);
        Assert.Equal(new float[] { 10, 1 }, gated[0].flatten().data<float>().ToArray());
        Assert.Equal(new float[] { 1, 20 }, gated[1].flatten().data<float>().ToArray());
        // β = 0: the mix is the mean of the gated features.
        Assert.Equal(new float[] { 5.5f, 10.5f }, mixed!.flatten().data<float>().ToArray());
    }

    [Fact]
    public void The_mix_weights_are_a_softmax_over_tasks()
    {
        var layer = new GateLayer(2, 1, 0, hasMix: true);
        using (no_grad()) layer.Beta!.copy_(tensor(new float[] { MathF.Log(3), 0 }).view(2, 1));
        var (_, mixed) = layer.Apply([full(1, 1, 1, 1, 4f), full(1, 1, 1, 1, 8f)], zeros(1, 1, 1, 1), ones(2, 1));
        Assert.Equal(0.75 * 4 + 0.25 * 8, mixed!.item<float>(), 5);
    }

    [Fact]
    public void The_last_layer_has_no_mix()
    {
        var layer = new GateLayer(2, 4, 1, hasMix: false);
        Assert.Null(layer.Beta);
        Assert.Null(layer.Apply([ones(1, 4), ones(1, 4)], zeros(1, 4), ones(2, 4)).Mixed);
        Assert.Single(layer.parameters());
    }

    [Fact]
    public void Noise_applies_only_in_training()
    {
        manual_seed(1);
        var layer = new GateLayer(1, 1000, 0.05, hasMix: false);
        var noise = new GateNoise(1.0);
        layer.eval();
        Assert.Equal(1000, layer.Gates(noise).sum().item<float>());
        layer.train();
        float on = layer.Gates(noise).sum().item<float>();
        Assert.InRange(on, 400, 600); // logistic noise of scale 1 around 0.05 flips about half
    }
}
