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
    /// <summary>One tensor every branch reads (the image): <see cref="Single"/> is set, so a fused convolution reads it once.</summary>
    public static Branches Broadcast(Tensor x, int count) => new(Enumerable.Repeat(x, count).ToArray(), null, count) { Single = x };
    public static Branches OfFused(Tensor fused, int count) => new(null, fused, count);

    public int Count { get; }
    /// <summary>The one tensor every branch reads, where they all read the same (<see cref="Broadcast"/>); else null.</summary>
    public Tensor? Single { get; private init; }
    public Tensor this[int branch] => Parts[branch];
    public Tensor[] Parts => _parts ??= _fused!.chunk(Count, 1);
    public Tensor Fused => _fused ??= cat(_parts!, 1);

    /// <summary>The tensors this holds now: the parts, the fused form, or both (once one was made from the other).</summary>
    public IEnumerable<Tensor> Held => (_parts ?? []).Concat(_fused is null ? [] : [_fused]);

    /// <summary>A per-channel operation applied to every branch, in whichever form is at hand.</summary>
    public Branches Map(Func<Tensor, Tensor> f) => _fused is not null ? OfFused(f(_fused), Count) : Of(_parts!.Select(f).ToArray());
}

/// <summary>
/// Convolution and batch norm of several branches' copies of one layer in one call each: how a fused unit runs. The
/// gated encoder is given one when the model is built (the runtime's, <c>Runtime/FusedBranches.cs</c>); the mechanism
/// itself never needs it.
/// </summary>
public interface IFusedBranches
{
    /// <summary>
    /// The copies <paramref name="convs"/> (same geometry) applied to their branches' inputs, concatenated along
    /// channels in <paramref name="input"/>; with <paramref name="sameInput"/> every copy reads the one input.
    /// </summary>
    Tensor Conv(IReadOnlyList<Conv2d> convs, Tensor input, bool sameInput);

    /// <summary>
    /// The copies <paramref name="norms"/> applied to their branches' channels of <paramref name="input"/>, with the
    /// batch statistics and running statistics each copy's own call would have.
    /// </summary>
    Tensor Norm(IReadOnlyList<BatchNorm2d> norms, Tensor input);
}
