// The operations a plan runs between its layers, each branch on its own stream: what a transformer needs beyond
// convolutions and linear layers (docs/architecture.md, "The plan"; the ViT of arXiv 2402.16848, appendix C).
using InterroGate.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Backbones;

/// <summary>
/// The shape of a plan node's features at batch 1: channels, height and width; token features [B, N, D] are D channels
/// at height 1 and width N.
/// </summary>
public readonly record struct FeatureShape(long Channels, long Height, long Width);

/// <summary>
/// An operation node of a plan: run by every branch on its own stream (the task streams and the shared one), never
/// gated and never pruned filter by filter, only dropped from a branch whose stream nobody reads. What it costs in one
/// branch of the static network is <see cref="Cost"/>.
/// </summary>
public abstract record PlanOp
{
    /// <summary>How many inputs the operation reads (the identity terms of its node, in order).</summary>
    public abstract int Inputs { get; }

    /// <summary>The operation in one branch (<paramref name="branch"/>: that branch's plain backbone) during training.</summary>
    public abstract Tensor Forward(nn.Module branch, IReadOnlyList<Tensor> inputs);

    /// <summary>The shape of the output for inputs of <paramref name="inputs"/>.</summary>
    public abstract FeatureShape Shape(IReadOnlyList<FeatureShape> inputs);

    /// <summary>MACs and parameters of the operation in one branch of the static network (<see cref="Analysis.CostCounter"/>'s convention).</summary>
    public virtual (long Macs, long Parameters) Cost(IReadOnlyList<FeatureShape> inputs) => (0, 0);

    /// <summary>
    /// Whether output channel c depends on input channel c only (and its parameters split by channel), so that it can
    /// follow a layer whose filters are pruned one by one (<see cref="PlanUnit.Then"/>).
    /// </summary>
    public virtual bool Channelwise => false;
}

/// <summary>What turns a patch grid into tokens: the class token (null without one) and the position embeddings.</summary>
public interface ITokenEmbedding
{
    /// <summary>The class token [1, 1, D]; null when the encoder has none.</summary>
    Parameter? ClassToken { get; }

    /// <summary>The position embeddings [1, N, D] of an h×w patch grid (the class token's first, where there is one).</summary>
    Tensor PositionEmbeddings(long h, long w);

    /// <summary>Patch grid [B, D, h, w] to tokens [B, N, D]: the class token first (where there is one), position embeddings added.</summary>
    Tensor Embed(Tensor grid);
}

/// <summary>
/// Patch grid [B, D, h, w] to tokens [B, N, D]: the patches in row order, the branch's class token prepended (where
/// there is one), the branch's position embeddings added. Channel by channel: it follows the patch embedding as part of
/// that layer.
/// </summary>
public sealed record TokensOp(int PatchSize, bool ClassToken, Func<nn.Module, ITokenEmbedding> Embedding) : PlanOp
{
    public override int Inputs => 1;
    public override bool Channelwise => true;

    public override Tensor Forward(nn.Module branch, IReadOnlyList<Tensor> inputs) => Embedding(branch).Embed(inputs[0]);

    public override FeatureShape Shape(IReadOnlyList<FeatureShape> inputs) => new(inputs[0].Channels, 1, inputs[0].Height * inputs[0].Width + (ClassToken ? 1 : 0));

    /// <summary>The class token (D) and the position embeddings of every token (N·D).</summary>
    public override (long Macs, long Parameters) Cost(IReadOnlyList<FeatureShape> inputs)
    {
        var s = Shape(inputs);
        return (0, s.Channels * ((ClassToken ? 1 : 0) + s.Width));
    }
}

/// <summary>Layer norm over the channels of token features, with the branch's own weights.</summary>
public sealed record NormOp(Func<nn.Module, LayerNorm> Norm) : PlanOp
{
    public override int Inputs => 1;
    public override Tensor Forward(nn.Module branch, IReadOnlyList<Tensor> inputs) => Norm(branch).call(inputs[0]);
    public override FeatureShape Shape(IReadOnlyList<FeatureShape> inputs) => inputs[0];

    /// <summary>5 MACs per element (the counter's convention for a layer norm) and a weight and a bias per channel.</summary>
    public override (long Macs, long Parameters) Cost(IReadOnlyList<FeatureShape> inputs) =>
        (5 * inputs[0].Channels * inputs[0].Height * inputs[0].Width, 2 * inputs[0].Channels);
}

/// <summary>
/// Multi-head self-attention on the output of a fused q, k, v projection [B, N, 3D] (the branch's
/// <see cref="AttentionCore"/>), giving the attended values [B, N, D] that the output projection reads.
/// </summary>
public sealed record AttentionOp(Func<nn.Module, AttentionCore> Core) : PlanOp
{
    public override int Inputs => 1;
    public override Tensor Forward(nn.Module branch, IReadOnlyList<Tensor> inputs) => Core(branch).call(inputs[0]);
    public override FeatureShape Shape(IReadOnlyList<FeatureShape> inputs) => inputs[0] with { Channels = inputs[0].Channels / 3 };

    /// <summary>Q·Kᵀ and A·V: N²·D MACs each.</summary>
    public override (long Macs, long Parameters) Cost(IReadOnlyList<FeatureShape> inputs)
    {
        var s = Shape(inputs);
        long n = s.Height * s.Width;
        return (2 * n * n * s.Channels, 0);
    }
}

/// <summary>The sum of two streams of the same shape (a residual connection).</summary>
public sealed record SumOp : PlanOp
{
    public override int Inputs => 2;
    public override Tensor Forward(nn.Module branch, IReadOnlyList<Tensor> inputs) => inputs[0].Plus(inputs[1]);
    public override FeatureShape Shape(IReadOnlyList<FeatureShape> inputs) => inputs[0];
}

/// <summary>
/// Tokens [B, N, D] back to the patch grid [B, D, H/p, W/p] (the <see cref="LeadingTokens"/> before the patches, a class
/// token, left out), the grid read from the image (its second input): the map every head reads.
/// </summary>
public sealed record TokenMapOp(int PatchSize, int LeadingTokens) : PlanOp
{
    public override int Inputs => 2;

    public override Tensor Forward(nn.Module branch, IReadOnlyList<Tensor> inputs) =>
        ToMap(inputs[0], LeadingTokens, inputs[1].shape[2] / PatchSize, inputs[1].shape[3] / PatchSize);

    /// <summary>Tokens [B, N, D] to the h×w patch grid [B, D, h, w], the first <paramref name="leading"/> tokens left out.</summary>
    public static Tensor ToMap(Tensor tokens, int leading, long h, long w) =>
        tokens[.., leading..].transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w);

    public override FeatureShape Shape(IReadOnlyList<FeatureShape> inputs) => new(inputs[0].Channels, inputs[1].Height / PatchSize, inputs[1].Width / PatchSize);
}

/// <summary>
/// Tokens [B, 1 + N, D] (the class token first) to the patch grid with the class token beside every patch:
/// [B, 2D, H/p, W/p], the patch's D channels then the class token's, the grid read from the image (its second input).
/// What DPT's "project" readout reads (a linear layer from 2D to D channels and a GELU, in the head).
/// </summary>
public sealed record ReadoutMapOp(int PatchSize) : PlanOp
{
    public override int Inputs => 2;

    public override Tensor Forward(nn.Module branch, IReadOnlyList<Tensor> inputs) =>
        Map(inputs[0], inputs[1].shape[2] / PatchSize, inputs[1].shape[3] / PatchSize);

    /// <summary>Tokens [B, 1 + N, D] to [B, 2D, h, w]: the h×w patches, each with the class token.</summary>
    public static Tensor Map(Tensor tokens, long h, long w)
    {
        var patches = TokenMapOp.ToMap(tokens, 1, h, w);
        var cls = tokens[.., 0].unsqueeze(-1).unsqueeze(-1).expand(-1, -1, h, w);
        return cat([patches, cls], 1);
    }

    public override FeatureShape Shape(IReadOnlyList<FeatureShape> inputs) => new(2 * inputs[0].Channels, inputs[1].Height / PatchSize, inputs[1].Width / PatchSize);
}

/// <summary>The class token of tokens [B, N, D] as a 1×1 map [B, D, 1, 1]: what an image-level head reads with a class-token readout.</summary>
public sealed record ClassTokenOp : PlanOp
{
    public override int Inputs => 1;
    public override Tensor Forward(nn.Module branch, IReadOnlyList<Tensor> inputs) => inputs[0][.., 0].unsqueeze(-1).unsqueeze(-1);
    public override FeatureShape Shape(IReadOnlyList<FeatureShape> inputs) => new(inputs[0].Channels, 1, 1);
}
