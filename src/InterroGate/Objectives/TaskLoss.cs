using InterroGate.Tasks;
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Objectives;

/// <summary>
/// The loss of one task, chosen by its kind (docs/method.md, "Losses"). Dense losses average over the pixels whose target is
/// known (segmentation: label ≠ <see cref="TaskSpec.IgnoreLabel"/>; saliency and edges: at most 1, so not the ignore
/// label a padded crop fills in; depth: &gt; 0; normals: not the zero vector), and
/// are 0, not NaN, on a batch without any known pixel, so that a fully unlabelled crop never stops training.
/// </summary>
public static class TaskLoss
{
    /// <summary>
    /// Weight of edge pixels in the edge loss (1 − it for the others): the balanced cross-entropy of the multi-task
    /// PASCAL-Context benchmark, where about 5% of pixels are edges.
    /// </summary>
    public const double EdgePositiveWeight = 0.95;

    /// <summary>
    /// CE for classification and segmentation, BCE-with-logits for binary attributes, L1 for regression and depth, L1
    /// between the unit-normalised prediction and the target for normals, balanced BCE for saliency (weights from the
    /// batch) and edges (fixed weights).
    /// Dense outputs must have the target's resolution.
    /// </summary>
    public static Tensor Compute(TaskSpec task, Tensor output, Tensor target)
    {
        if (task.IsDense && (output.dim() != 4 || output.shape[^2] != target.shape[^2] || output.shape[^1] != target.shape[^1]))
            throw new ArgumentException(
                $"Task '{task.Name}' ({task.Kind}): the output [{string.Join(", ", output.shape)}] must be [B, K, H, W] at the target's resolution [{string.Join(", ", target.shape)}].");
        return task.Kind switch
        {
            TaskKind.Classification => nn.functional.cross_entropy(output, target),
            TaskKind.Binary => nn.functional.binary_cross_entropy_with_logits(output, target),
            TaskKind.Regression => nn.functional.l1_loss(output, target),
            TaskKind.Segmentation => Segmentation(output, target),
            TaskKind.Depth => MaskedMean((output - target).abs(), target.gt(Scalars.Zero)),
            TaskKind.Normals => Normals(output, target),
            TaskKind.Saliency => Saliency(output, target),
            TaskKind.Edges => Edges(output, target),
            _ => throw new ArgumentOutOfRangeException(nameof(task), task.Kind, "No loss for this task kind."),
        };
    }

    /// <summary>Cross-entropy averaged over labelled pixels (<see cref="TaskSpec.IgnoreLabel"/> is skipped).</summary>
    private static Tensor Segmentation(Tensor logits, Tensor labels)
    {
        var sum = nn.functional.cross_entropy(logits, labels, ignore_index: TaskSpec.IgnoreLabel, reduction: nn.Reduction.Sum);
        using var ignore = Scalars.Of(TaskSpec.IgnoreLabel);
        return sum / labels.ne(ignore).sum().clamp_min(Scalars.One);
    }

    /// <summary>L1 between the unit-normalised prediction and the target normal, over pixels with a known normal.</summary>
    private static Tensor Normals(Tensor output, Tensor target)
    {
        var unit = nn.functional.normalize(output, p: 2, dim: 1);
        var known = target.abs().sum(1, keepdim: true).gt(Scalars.Zero); // [B, 1, H, W]
        return MaskedMean((unit - target).abs(), known);
    }

    /// <summary>Where a saliency or edge target is known: at most 1 (the ignore label, 255, marks unknown pixels).</summary>
    public static Tensor Known(Tensor target) => target.le(Scalars.One);

    /// <summary>
    /// Balanced BCE, as the dense multi-task reference code trains saliency: salient pixels weigh w, the others 1 − w,
    /// where w is the fraction of the batch's known pixels that are not salient (so both classes count alike); the sum
    /// over the known pixels divided by their number.
    /// </summary>
    private static Tensor Saliency(Tensor logits, Tensor target)
    {
        var known = Known(target);
        var salient = target.clamp_max(Scalars.One).ge(Scalars.Half).to(logits.dtype);
        Tensor weight;
        using (no_grad())
        {
            var k = known.to(logits.dtype);
            var w = salient.OneMinus().mul(k).sum().div(k.sum().clamp_min(Scalars.One)); // fraction of known pixels not salient
            weight = salient.mul(w.Times(2).Shifted(-1)).PlusInPlace(w.OneMinus()); // w on salient pixels, 1 − w on the others
        }
        var loss = nn.functional.binary_cross_entropy_with_logits(logits, salient, weight, reduction: nn.Reduction.None);
        return MaskedMean(loss, known);
    }

    /// <summary>Balanced BCE: edge pixels weigh <see cref="EdgePositiveWeight"/>, the others 1 − that; mean over the known pixels.</summary>
    private static Tensor Edges(Tensor logits, Tensor target)
    {
        var known = Known(target);
        var edge = target.clamp_max(Scalars.One);
        var weight = edge.Times(2 * EdgePositiveWeight - 1).Shifted(1 - EdgePositiveWeight);
        var loss = nn.functional.binary_cross_entropy_with_logits(logits, edge, weight, reduction: nn.Reduction.None);
        return MaskedMean(loss, known);
    }

    /// <summary>Mean of <paramref name="values"/> over the elements where <paramref name="mask"/> (broadcast) holds; 0 where none does.</summary>
    private static Tensor MaskedMean(Tensor values, Tensor mask)
    {
        var m = mask.expand_as(values).to(values.dtype);
        return (values * m).sum() / m.sum().clamp_min(Scalars.One);
    }
}

/// <summary>The multi-task objective: outputs and batch in, one loss per task out (in task order).</summary>
public sealed class MultiTaskObjective(TaskSet tasks)
{
    public TaskSet Tasks { get; } = tasks;

    public Tensor[] Losses(IReadOnlyDictionary<string, Tensor> outputs, IReadOnlyDictionary<string, Tensor> batch) =>
        Tasks.Select(t => TaskLoss.Compute(t, outputs[t.Name], batch[t.Name])).ToArray();
}
