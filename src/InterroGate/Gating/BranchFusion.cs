// Branch fusion: the T+1 copies of a conv+BN(+ReLU) unit computed as one grouped convolution and one batch
// norm over the channel-concatenated branches, instead of T+1 separate calls of each.
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Gating;

/// <summary>How the encoder computes the T+1 copies of each unit.</summary>
public enum BranchFusion
{
    /// <summary>One call per branch (T+1 convolutions, T+1 batch norms per unit).</summary>
    Off,
    /// <summary>Every unit fused: one grouped convolution and one batch norm for all branches.</summary>
    On,
    /// <summary>
    /// Per unit, whichever is faster: both forms are timed (forward and backward) on the first training
    /// batch, on its device, and the choice is kept for the rest of the run.
    /// </summary>
    Auto,
}

/// <summary>
/// The outputs of the T+1 branches of one unit (tasks first, shared last), held as separate tensors, as one
/// channel-concatenated tensor [B, (T+1)·C, H, W], or both; each form is made from the other when first asked for.
/// </summary>
internal sealed class Branches
{
    private Tensor[]? _parts;
    private Tensor? _fused;

    private Branches(Tensor[]? parts, Tensor? fused, int count)
    {
        _parts = parts;
        _fused = fused;
        Count = count;
    }

    public static Branches Of(Tensor[] parts) => new(parts, null, parts.Length);
    public static Branches OfFused(Tensor fused, int count) => new(null, fused, count);

    public int Count { get; }
    public Tensor this[int branch] => Parts[branch];
    public Tensor[] Parts => _parts ??= _fused!.chunk(Count, 1);
    public Tensor Fused => _fused ??= cat(_parts!, 1);

    /// <summary>A per-channel operation applied to every branch, in whichever form is at hand.</summary>
    public Branches Map(Func<Tensor, Tensor> f) => _fused is not null ? OfFused(f(_fused), Count) : Of(_parts!.Select(f).ToArray());
}

/// <summary>Convolution and batch norm of several branches' copies of one layer in one call each.</summary>
internal static class FusedBranches
{
    /// <summary>
    /// The copies <paramref name="convs"/> (same geometry) applied to their branches' inputs, concatenated along
    /// channels in <paramref name="input"/>; with <paramref name="sameInput"/> every copy reads the one input.
    /// </summary>
    public static Tensor Conv(IReadOnlyList<Conv2d> convs, Tensor input, bool sameInput)
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
    public static Tensor Norm(IReadOnlyList<BatchNorm2d> norms, Tensor input)
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
            foreach (var b in norms) b.num_batches_tracked?.add_(1);
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
