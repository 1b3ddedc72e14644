// Branch fusion: the T+1 copies of a conv+BN(+ReLU) unit computed as one grouped convolution and one batch
// norm over the channel-concatenated branches, instead of T+1 separate calls of each.
using InterroGate.Gating;
using InterroGate.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Runtime;

/// <summary>Convolution and batch norm of several branches' copies of one layer in one call each (grouped convolution, one batch norm).</summary>
public sealed class FusedBranches : IFusedBranches
{
    public static readonly FusedBranches Instance = new();

    private FusedBranches() { }

    /// <summary>
    /// The copies <paramref name="convs"/> (same geometry) applied to their branches' inputs, concatenated along
    /// channels in <paramref name="input"/>; with <paramref name="sameInput"/> every copy reads the one input.
    /// </summary>
    public Tensor Conv(IReadOnlyList<Conv2d> convs, Tensor input, bool sameInput)
    {
        var c = convs[0];
        var weight = cat(convs.Select(k => (Tensor)k.weight!).ToArray(), 0);
        var bias = c.bias is null ? null : cat(convs.Select(k => (Tensor)k.bias!).ToArray(), 0);
        long groups = sameInput ? c.groups : c.groups * convs.Count;
        return nn.functional.conv2d(input, weight, bias, c.stride, c.padding, c.dilation, groups);
    }

    /// <summary>
    /// The copies <paramref name="norms"/> applied to their branches' channels of <paramref name="input"/>. In
    /// training the batch statistics are per channel, as in separate calls, and each copy's running statistics
    /// are updated as its own call would update them.
    /// </summary>
    public Tensor Norm(IReadOnlyList<BatchNorm2d> norms, Tensor input)
    {
        var n = norms[0];
        bool training = n.training;
        var mean = cat(norms.Select(b => b.running_mean!).ToArray(), 0);
        var variance = cat(norms.Select(b => b.running_var!).ToArray(), 0);
        var weight = n.weight is null ? null : cat(norms.Select(b => (Tensor)b.weight!).ToArray(), 0);
        var bias = n.bias is null ? null : cat(norms.Select(b => (Tensor)b.bias!).ToArray(), 0);
        double factor = 0;
        if (training)
        {
            foreach (var b in norms) BatchNorms.CountBatch(b);
            factor = n.momentum ?? 1.0 / n.num_batches_tracked!.item<long>();
        }
        var y = nn.functional.batch_norm(input, mean, variance, weight, bias, training, factor, n.eps);
        if (training)
            using (no_grad())
            {
                long c = mean.shape[0] / norms.Count;
                for (int i = 0; i < norms.Count; i++)
                {
                    norms[i].running_mean!.copy_(mean.narrow(0, i * c, c));
                    norms[i].running_var!.copy_(variance.narrow(0, i * c, c));
                }
            }
        return y;
    }
}
