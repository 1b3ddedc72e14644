// An encoder described as a plan of units: the one form in which every backbone family tells the gated encoder, the
// pruner and the cost counter what it computes (docs/architecture.md, "The plan").
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Backbones;

/// <summary>
/// One term of a unit: the conv + BN <see cref="Layer"/> of a branch (BN absent: a convolution with its own bias, a
/// ViT's patch embedding) or its <see cref="Linear"/> layer (on token features [B, N, D]) applied to the features of unit
/// <see cref="Input"/> (<see cref="EncoderPlan.Image"/>: the image), or, with neither, those features as they are (an
/// identity shortcut, or an input of an operation node). With <see cref="ResizeLike"/> ≥ 0 the term is resized
/// (bilinear) to the height and width of the features of that unit (an HRNet upsampling path). <see cref="Suffix"/>
/// names the term's layer in a pruned network (appended to the unit's name; empty for the unit's main layer).
/// </summary>
public sealed record PlanTerm(int Input, Func<nn.Module, (Conv2d Conv, BatchNorm2d? Norm)>? Layer, string Suffix = "", int ResizeLike = -2,
    Func<nn.Module, Linear>? Linear = null)
{
    public bool IsIdentity => Layer is null && Linear is null;
    public bool Resized => ResizeLike >= EncoderPlan.Image;
}

/// <summary>The activation of a unit, applied to the sum of its terms before the unit's gates.</summary>
public enum UnitActivation
{
    Relu,
    Gelu,
    None,
}

/// <summary>A max pool applied channel by channel after a unit (and after its gates: the stem pooling of a ResNet).</summary>
public sealed record PlanPool(int Kernel, int Stride, int Padding);

/// <summary>
/// One unit of a plan: the sum of its <see cref="Terms"/> (in order), then its <see cref="Activation"/>, then (when
/// present) <see cref="PoolAfter"/>. A unit is one layer of the paper: each branch has its copy, and a gate layer may
/// follow it. <see cref="EndsBlock"/>: the unit ends a block (a residual block's last unit, a stem, transition or
/// exchange unit, a ViT's attention output or second MLP linear), where gates sit under block gating; every unit is
/// gated under conv gating. <see cref="GateParts"/>: how many of the paper's layers the unit's gates stand for in the
/// sparsity loss's mean over layers (a ViT's fused q, k, v projection: 3).
/// With an <see cref="Op"/> the node is no layer but an operation each branch runs on its own stream (a layer norm,
/// attention, a residual sum): its terms are identity terms naming its inputs; it has no copies to gate or prune.
/// <see cref="Then"/>: an operation that acts channel by channel (<see cref="PlanOp.Channelwise"/>), applied to the
/// layer's output in each branch before its gates, as part of the layer (a ViT's patch embedding with its class token
/// and position embeddings: every branch's copy gives tokens, and a gate picks a channel of them).
/// </summary>
public sealed record PlanUnit(string Name, IReadOnlyList<PlanTerm> Terms, bool EndsBlock = true, PlanPool? PoolAfter = null,
    UnitActivation Activation = UnitActivation.Relu, PlanOp? Op = null, int GateParts = 1, PlanOp? Then = null)
{
    /// <summary>The distinct units whose features this unit reads (the image excluded).</summary>
    public IReadOnlyList<int> Reads => Terms.Select(t => t.Input).Where(i => i != EncoderPlan.Image).Distinct().ToArray();

    public bool IsOp => Op is not null;
}

/// <summary>
/// A backbone as a list of units in forward order, each reading the features of earlier units (or the image), and the
/// units whose features the heads read: one unit, or several concatenated after resizing the others (bilinear, with
/// <see cref="AlignCorners"/>) to the first (HRNet's multi-resolution output).
/// </summary>
public sealed record EncoderPlan(IReadOnlyList<PlanUnit> Units, IReadOnlyList<int> Outputs, bool AlignCorners = false)
{
    /// <summary>The input of a unit that reads the image.</summary>
    public const int Image = -1;

    /// <summary>Checks that every unit reads only earlier units and that the outputs exist.</summary>
    public EncoderPlan Validated()
    {
        if (Units.Count == 0) throw new ArgumentException("An encoder plan needs at least one unit.");
        if (Outputs.Count == 0 || Outputs.Any(o => o < 0 || o >= Units.Count)) throw new ArgumentException("An encoder plan's outputs must be units of the plan.");
        for (int u = 0; u < Units.Count; u++)
        {
            var unit = Units[u];
            if (unit.Terms.Count == 0) throw new ArgumentException($"Unit {unit.Name} of the plan has no term.");
            if (unit.IsOp && (unit.PoolAfter is not null || unit.Terms.Any(t => !t.IsIdentity || t.Resized)))
                throw new ArgumentException($"Operation {unit.Name} of the plan must name its inputs by identity terms, without resizing or pooling.");
            if (unit.IsOp && unit.Terms.Count != unit.Op!.Inputs)
                throw new ArgumentException($"Operation {unit.Name} of the plan needs {unit.Op!.Inputs} input(s), it names {unit.Terms.Count}.");
            if (unit.Then is { } then && (unit.IsOp || !then.Channelwise || then.Inputs != 1 || unit.Activation == UnitActivation.Relu && unit.PoolAfter is not null))
                throw new ArgumentException($"Unit {unit.Name} of the plan: what follows a layer must be a one-input operation that acts channel by channel.");
            if (unit.GateParts < 1) throw new ArgumentException($"Unit {unit.Name} of the plan must stand for at least one layer.");
            if (unit.Terms.Any(t => t.Layer is not null && t.Linear is not null)) throw new ArgumentException($"A term of unit {unit.Name} has both a convolution and a linear layer.");
            foreach (var t in unit.Terms)
                if (t.Input < Image || t.Input >= u || t.Resized && (t.ResizeLike >= u))
                    throw new ArgumentException($"Unit {unit.Name} of the plan reads a unit that does not come before it.");
        }
        if (Units.Select(u => u.Name).Distinct().Count() != Units.Count) throw new ArgumentException("Two units of the plan have the same name.");
        return this;
    }
}

/// <summary>A plain backbone (ResNet, HRNet, ViT): what loading pretrained weights and building heads need of it.</summary>
public interface IEncoder
{
    /// <summary>Channels of the images the encoder reads.</summary>
    long InChannels { get; }

    /// <summary>Channels of the features the heads read.</summary>
    long OutChannels { get; }
}

/// <summary>A plain backbone that describes itself as a plan (every branch of a gated encoder is one).</summary>
public interface IPlannedEncoder : IEncoder
{
    /// <summary>The encoder's units; their layer accessors apply to any encoder of the same spec.</summary>
    EncoderPlan Plan();
}
