// An encoder described as a plan of units: the one form in which every backbone family tells the gated encoder, the
// pruner and the cost counter what it computes (docs/architecture.md, "The plan").
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Backbones;

/// <summary>
/// One term of a unit: the conv + BN <see cref="Layer"/> of a branch applied to the features of unit
/// <see cref="Input"/> (<see cref="EncoderPlan.Image"/>: the image), or, without a layer, those features as they are
/// (an identity shortcut). With <see cref="ResizeLike"/> ≥ 0 the term is resized (bilinear) to the height and width of
/// the features of that unit (an HRNet upsampling path). <see cref="Suffix"/> names the term's convolution in a
/// pruned network (appended to the unit's name; empty for the unit's main convolution).
/// </summary>
public sealed record PlanTerm(int Input, Func<nn.Module, (Conv2d Conv, BatchNorm2d Norm)>? Layer, string Suffix = "", int ResizeLike = -2)
{
    public bool IsIdentity => Layer is null;
    public bool Resized => ResizeLike >= EncoderPlan.Image;
}

/// <summary>A max pool applied channel by channel after a unit (and after its gates: the stem pooling of a ResNet).</summary>
public sealed record PlanPool(int Kernel, int Stride, int Padding);

/// <summary>
/// One unit of a plan: the sum of its <see cref="Terms"/> (in order), then a ReLU, then (when present) <see cref="PoolAfter"/>.
/// A unit is one layer of the paper: each branch has its copy, and a gate layer may follow it. <see cref="EndsBlock"/>:
/// the unit ends a block (a residual block's last unit, a stem, transition or exchange unit), where gates sit under
/// block gating; every unit is gated under conv gating.
/// </summary>
public sealed record PlanUnit(string Name, IReadOnlyList<PlanTerm> Terms, bool EndsBlock = true, PlanPool? PoolAfter = null)
{
    /// <summary>The distinct units whose features this unit reads (the image excluded).</summary>
    public IReadOnlyList<int> Reads => Terms.Select(t => t.Input).Where(i => i != EncoderPlan.Image).Distinct().ToArray();
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
