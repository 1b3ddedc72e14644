// Metrics of the dense tasks of the multi-task benchmarks (NYUD-v2, PASCAL-Context), accumulated over a whole data set.
using InterroGate.Objectives;
using InterroGate.Tasks;
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Analysis;

/// <summary>
/// Options of the dense metrics. <see cref="EdgeMatchFraction"/>: an edge pixel is matched when a pixel of the other
/// map lies within this fraction of the image diagonal (0.0075, the BSDS benchmark's default), at least 1 pixel;
/// <see cref="SaliencyBeta2"/>: β² of the saliency F-measure (0.3, the usual weight of precision);
/// <see cref="Thresholds"/> binarisation thresholds for saliency, <see cref="EdgeThresholds"/> for edges (each edge
/// threshold thins and matches every image, so fewer by default).
/// </summary>
public sealed record DenseMetricOptions(double EdgeMatchFraction = 0.0075, double SaliencyBeta2 = 0.3, int Thresholds = 99, int EdgeThresholds = 33)
{
    public static readonly DenseMetricOptions Default = new();

    /// <summary>The <see cref="EdgeThresholds"/> probabilities k/(n+1), k = 1..n, at which edge maps are binarised.</summary>
    public double[] EdgeThresholdValues() => Enumerable.Range(1, EdgeThresholds).Select(k => k / (EdgeThresholds + 1.0)).ToArray();

    /// <summary>The <see cref="Thresholds"/> probabilities k/(n+1), k = 1..n, at which saliency and edge maps are binarised.</summary>
    public double[] ThresholdValues() => Enumerable.Range(1, Thresholds).Select(k => k / (Thresholds + 1.0)).ToArray();
}

/// <summary>Checks shared by the dense metrics.</summary>
internal static class DenseChecks
{
    public static void SameResolution(string metric, Tensor output, Tensor target)
    {
        if (output.dim() != 4 || output.shape[^2] != target.shape[^2] || output.shape[^1] != target.shape[^1])
            throw new ArgumentException($"{metric}: the output [{string.Join(", ", output.shape)}] must be [B, K, H, W] at the target's resolution [{string.Join(", ", target.shape)}].");
    }
}

/// <summary>
/// Mean intersection over union from a confusion matrix accumulated over the data set (pixels labelled
/// <see cref="TaskSpec.IgnoreLabel"/> skipped); classes that occur neither in the labels nor in the predictions are
/// left out of the mean. Details: pixel accuracy.
/// </summary>
public sealed class MeanIoU(int classes) : ITaskMetric
{
    private readonly long[] _confusion = new long[classes * classes]; // [label, prediction]
    public string Name => "mIoU";
    public bool HigherIsBetter => true;

    public void Update(Tensor output, Tensor target)
    {
        DenseChecks.SameResolution(Name, output, target);
        using var scope = NewDisposeScope();
        var labels = target.flatten();
        var predictions = output.argmax(1).flatten();
        using var ignore = Scalars.Of(TaskSpec.IgnoreLabel);
        using var classCount = Scalars.Of(classes);
        var valid = labels.ne(ignore);
        if (labels.masked_select(valid).ge(classCount).any().item<bool>())
            throw new ArgumentException($"mIoU: a label is ≥ the number of classes ({classes}) and is not the ignore label {TaskSpec.IgnoreLabel}.");
        var pairs = labels.masked_select(valid).mul(classCount).Plus(predictions.masked_select(valid));
        var counts = pairs.bincount(null, minlength: classes * classes).cpu().data<long>().ToArray();
        for (int i = 0; i < _confusion.Length; i++) _confusion[i] += counts[i];
    }

    /// <summary>IoU of each class (NaN where the class occurs nowhere).</summary>
    public double[] PerClass()
    {
        var iou = new double[classes];
        for (int c = 0; c < classes; c++)
        {
            long tp = _confusion[c * classes + c], row = 0, column = 0;
            for (int k = 0; k < classes; k++) { row += _confusion[c * classes + k]; column += _confusion[k * classes + c]; }
            long union = row + column - tp;
            iou[c] = union == 0 ? double.NaN : (double)tp / union;
        }
        return iou;
    }

    public double Compute()
    {
        var present = PerClass().Where(v => !double.IsNaN(v)).ToArray();
        return present.Length == 0 ? double.NaN : present.Average();
    }

    public IReadOnlyDictionary<string, double> Details()
    {
        long correct = 0, total = _confusion.Sum();
        for (int c = 0; c < classes; c++) correct += _confusion[c * classes + c];
        return new Dictionary<string, double> { ["mIoU"] = Compute(), ["pixel_accuracy"] = total == 0 ? double.NaN : (double)correct / total };
    }
}

/// <summary>
/// Depth errors over every valid pixel (target &gt; 0) of the data set: RMSE = √(Σ (d − d*)² / N) (primary), and the
/// absolute relative error mean |d − d*| / d* and the mean absolute error. Predictions at or below 0 count as 1e-9.
/// </summary>
public sealed class DepthErrors : ITaskMetric
{
    private double _squares, _relative, _absolute;
    private long _count;
    public string Name => "rmse";
    public bool HigherIsBetter => false;

    public void Update(Tensor output, Tensor target)
    {
        DenseChecks.SameResolution(Name, output, target);
        using var scope = NewDisposeScope();
        var valid = target.gt(Scalars.Zero);
        // A depth is positive: predictions at or below 0 count as 1e-9 m, as the benchmarks' reference evaluation clamps them.
        using var least = Scalars.Of(1e-9);
        var d = output.to(float64).masked_select(valid).clamp_min(least);
        var t = target.to(float64).masked_select(valid);
        var diff = d - t;
        _squares += diff.Squared().sum().item<double>();
        _absolute += diff.abs().sum().item<double>();
        _relative += (diff.abs() / t).sum().item<double>();
        _count += t.numel();
    }

    public double Compute() => _count == 0 ? double.NaN : Math.Sqrt(_squares / _count);

    public IReadOnlyDictionary<string, double> Details() => new Dictionary<string, double>
    {
        ["rmse"] = Compute(),
        ["abs_rel"] = _count == 0 ? double.NaN : _relative / _count,
        ["mae"] = _count == 0 ? double.NaN : _absolute / _count,
    };
}

/// <summary>
/// Angle between the unit-normalised predicted normal and the target over every pixel with a known normal: mean
/// (primary), median, RMSE, and the percentage within 11.25°, 22.5° and 30°. The median is read off a histogram of
/// 0.01° bins (exact to 0.01°), so memory does not grow with the data set.
/// </summary>
public sealed class NormalAngleErrors : ITaskMetric
{
    private const double BinDegrees = 0.01;
    private static readonly double[] Within = [11.25, 22.5, 30];
    private readonly long[] _histogram = new long[(int)(180 / BinDegrees) + 1];
    private readonly long[] _within = new long[Within.Length];
    private double _sum, _squares;
    private long _count;
    public string Name => "mean angle";
    public bool HigherIsBetter => false;

    public void Update(Tensor output, Tensor target)
    {
        DenseChecks.SameResolution(Name, output, target);
        using var scope = NewDisposeScope();
        var known = target.abs().sum(1).gt(Scalars.Zero); // [B, H, W]
        var p = nn.functional.normalize(output.to(float64), p: 2, dim: 1);
        var t = nn.functional.normalize(target.to(float64), p: 2, dim: 1);
        var cos = (p * t).sum(1).clamp(Scalars.MinusOne, Scalars.One).masked_select(known);
        var degrees = cos.acos().Times(180 / Math.PI);
        _sum += degrees.sum().item<double>();
        _squares += degrees.Squared().sum().item<double>();
        _count += degrees.numel();
        for (int i = 0; i < Within.Length; i++)
        {
            using var bound = Scalars.Of(Within[i]);
            _within[i] += degrees.lt(bound).sum().item<long>();
        }
        using var lastBin = Scalars.Of(_histogram.Length - 1L);
        var bins = degrees.DividedBy(BinDegrees).floor().to(int64).clamp(Scalars.Zero, lastBin).bincount(null, minlength: _histogram.Length);
        var counts = bins.cpu().data<long>().ToArray();
        for (int i = 0; i < _histogram.Length; i++) _histogram[i] += counts[i];
    }

    public double Compute() => _count == 0 ? double.NaN : _sum / _count;

    /// <summary>The median angle: the middle of the histogram bin that holds the middle pixel.</summary>
    public double Median()
    {
        if (_count == 0) return double.NaN;
        long half = (_count + 1) / 2, seen = 0;
        for (int i = 0; i < _histogram.Length; i++)
            if ((seen += _histogram[i]) >= half) return (i + 0.5) * BinDegrees;
        return 180;
    }

    public IReadOnlyDictionary<string, double> Details()
    {
        var d = new Dictionary<string, double>
        {
            [Name] = Compute(),
            ["median"] = Median(),
            ["rmse"] = _count == 0 ? double.NaN : Math.Sqrt(_squares / _count),
        };
        for (int i = 0; i < Within.Length; i++) d[$"within_{Within[i]:0.##}"] = _count == 0 ? double.NaN : 100.0 * _within[i] / _count;
        return d;
    }
}

/// <summary>
/// Saliency (targets binarised at 0.5; unknown pixels, the ignore label, left out). Primary: mIoU as the multi-task dense benchmarks' reference evaluation defines
/// it, and as the paper reports saliency: at each of 15 thresholds 0.2, 0.25, …, 0.9 of σ(output), the IoU of the
/// salient pixels of each image (1 where an image has none and none is predicted), averaged over images; the best
/// threshold's mean. Details: that mIoU and maxF, the best F_β (β² = 0.3) over <see cref="DenseMetricOptions.Thresholds"/>
/// thresholds from true/false positive counts accumulated over the data set (the convention of later dense
/// multi-task work).
/// </summary>
public sealed class SaliencyScores(DenseMetricOptions? options = null) : ITaskMetric
{
    /// <summary>The thresholds of the primary mIoU: 0.2 to 0.9 in 15 equal steps.</summary>
    public static IReadOnlyList<double> IouThresholds { get; } = Enumerable.Range(0, 15).Select(i => 0.2 + 0.05 * i).ToArray();

    private readonly DenseMetricOptions _options = options ?? DenseMetricOptions.Default;
    private double[]? _thresholds;
    private long[] _tp = [], _fp = [], _fn = [];
    private readonly double[] _iouSums = new double[IouThresholds.Count];
    private long _images;
    public string Name => "mIoU";
    public bool HigherIsBetter => true;

    /// <summary>
    /// For every threshold t_i (ascending): how many pixels have p &gt; t_i, how many of those are salient, and how many
    /// are salient in all. One pass and one read: a pixel's count of thresholds below p (<c>bucketize</c>) exceeds i
    /// exactly when p &gt; t_i, so suffix sums of those counts' histogram give every threshold at once. The thresholds
    /// are compared in p's dtype, as <c>p.gt(t)</c> does, and a NaN is above none of them.
    /// </summary>
    internal static (long[] Predicted, long[] TruePositives, long Positives) ThresholdCounts(Tensor p, Tensor salient, double[] thresholds)
    {
        using var scope = NewDisposeScope();
        int k = thresholds.Length;
        var bounds = tensor(thresholds, dtype: float64).to(p.dtype).to(p.device);
        var flat = p.flatten();
        // int64: how many thresholds are < p; a NaN is above none (as p.gt(t) has it), bucketize would put it above all
        var below = flat.bucketize(bounds).masked_fill_(flat.isnan(), Scalars.Zero);
        var all = below.bincount(null, minlength: k + 1);
        var hits = below.masked_select(salient.flatten()).bincount(null, minlength: k + 1);
        var counts = stack([all, hits]).cpu().data<long>().ToArray();
        long[] predicted = new long[k], truePositives = new long[k];
        long allAbove = 0, hitsAbove = 0;
        for (int i = k - 1; i >= 0; i--)
        {
            allAbove += counts[i + 1];
            hitsAbove += counts[k + 1 + i + 1];
            (predicted[i], truePositives[i]) = (allAbove, hitsAbove);
        }
        return (predicted, truePositives, hitsAbove + counts[k + 1]);
    }

    public void Update(Tensor output, Tensor target)
    {
        DenseChecks.SameResolution(Name, output, target);
        if (_thresholds is null)
        {
            _thresholds = _options.ThresholdValues();
            (_tp, _fp, _fn) = (new long[_thresholds.Length], new long[_thresholds.Length], new long[_thresholds.Length]);
        }
        using var scope = NewDisposeScope();
        // Unknown pixels (the ignore label a padded crop fills in) are neither predicted (NaN is above no threshold) nor salient.
        var known = TaskLoss.Known(target);
        using var nan = Scalars.Of(double.NaN);
        var p = output.sigmoid().masked_fill(known.logical_not(), nan);
        var salient = target.gt(Scalars.Half).logical_and(known);
        var (predicted, truePositives, positives) = ThresholdCounts(p, salient, _thresholds);
        for (int i = 0; i < _thresholds.Length; i++)
        {
            _tp[i] += truePositives[i];
            _fp[i] += predicted[i] - truePositives[i];
            _fn[i] += positives - truePositives[i];
        }
        var iouThresholds = IouThresholds.ToArray();
        var knownPerImage = known.flatten(1).sum(1).cpu().data<long>().ToArray();
        for (long b = 0; b < p.shape[0]; b++)
        {
            if (knownPerImage[b] == 0) continue; // an image with no known pixel has no IoU
            var (imagePredicted, imageHits, imagePositives) = ThresholdCounts(p[b], salient[b], iouThresholds);
            for (int i = 0; i < iouThresholds.Length; i++)
            {
                long union = imagePredicted[i] + imagePositives - imageHits[i];
                _iouSums[i] += union == 0 ? 1 : (double)imageHits[i] / union;
            }
            _images++;
        }
    }

    public double Compute() => _images == 0 ? double.NaN : _iouSums.Max() / _images;

    /// <summary>maxF over the data set's pixel counts (β² = <see cref="DenseMetricOptions.SaliencyBeta2"/>).</summary>
    public double MaxF()
    {
        if (_thresholds is null) return double.NaN;
        double best = 0;
        for (int i = 0; i < _thresholds.Length; i++)
        {
            double precision = _tp[i] + _fp[i] == 0 ? 0 : (double)_tp[i] / (_tp[i] + _fp[i]);
            double recall = _tp[i] + _fn[i] == 0 ? 0 : (double)_tp[i] / (_tp[i] + _fn[i]);
            double b2 = _options.SaliencyBeta2;
            if (precision + recall > 0) best = Math.Max(best, (1 + b2) * precision * recall / (b2 * precision + recall));
        }
        return best;
    }

    public IReadOnlyDictionary<string, double> Details() =>
        new Dictionary<string, double> { ["mIoU"] = Compute(), ["maxF"] = MaxF() };
}

/// <summary>
/// Edges: the balanced edge loss over every known pixel of the data set (primary, as the paper reports it; pixels
/// marked with the ignore label are left out of it and of the rest), and odsF, the
/// boundary benchmark's F-measure at the one threshold of σ(output) that is best for the whole data set: at each
/// threshold the predicted map is thinned to one-pixel lines, then predicted and true edge pixels are matched one to
/// one within the matching distance (<see cref="EdgeMatching"/>); precision is the matched share of predicted pixels,
/// recall the matched share of true ones, both from counts summed over the data set.
/// </summary>
public sealed class EdgeScores(DenseMetricOptions? options = null) : ITaskMetric
{
    private readonly DenseMetricOptions _options = options ?? DenseMetricOptions.Default;
    private double[]? _thresholds;
    private long[] _predicted = [], _correct = [], _found = [];
    private long _edges;
    private double _lossSum;
    private long _pixels;
    public string Name => "loss";
    public bool HigherIsBetter => false;

    /// <summary>
    /// The matching distance in pixels for images of <paramref name="height"/> × <paramref name="width"/>: the fraction of
    /// the diagonal, not rounded (5.43 at 512×512), and at least 1 so that images smaller than 133 pixels across still
    /// match a pixel's neighbours.
    /// </summary>
    public double MatchDistance(long height, long width) =>
        Math.Max(1, _options.EdgeMatchFraction * Math.Sqrt((double)height * height + (double)width * width));

    public void Update(Tensor output, Tensor target)
    {
        DenseChecks.SameResolution(Name, output, target);
        if (_thresholds is null)
        {
            _thresholds = _options.EdgeThresholdValues();
            (_predicted, _correct, _found) = (new long[_thresholds.Length], new long[_thresholds.Length], new long[_thresholds.Length]);
        }
        float[] probability;
        bool[] truth;
        long knownPixels;
        using (NewDisposeScope())
        {
            var known = TaskLoss.Known(target.detach());
            knownPixels = known.sum().item<long>();
            _lossSum += TaskLoss.Compute(new TaskSpec("edge", TaskKind.Edges, 1), output, target).item<float>() * knownPixels;
            probability = output.detach().sigmoid().masked_fill(known.logical_not(), Scalars.Zero).to(float32).cpu().contiguous().data<float>().ToArray();
            truth = target.detach().gt(Scalars.Half).logical_and(known).cpu().contiguous().data<bool>().ToArray();
        }
        _pixels += knownPixels;
        int h = (int)target.shape[^2], w = (int)target.shape[^1], plane = h * w, images = truth.Length / plane;
        double r = MatchDistance(h, w);
        var thresholds = _thresholds;
        var predicted = new long[thresholds.Length];
        var matched = new long[thresholds.Length];
        for (int b = 0; b < images; b++)
        {
            var truthPlane = truth.AsSpan(b * plane, plane).ToArray();
            _edges += truthPlane.Count(t => t);
            var p = probability.AsMemory(b * plane, plane);
            Parallel.For(0, thresholds.Length, i =>
            {
                var binary = new bool[plane];
                var span = p.Span;
                for (int k = 0; k < plane; k++) binary[k] = span[k] > thresholds[i];
                var thin = EdgeMatching.Thin(binary, h, w);
                Interlocked.Add(ref predicted[i], thin.Count(x => x));
                Interlocked.Add(ref matched[i], EdgeMatching.MatchCount(thin, truthPlane, h, w, r));
            });
        }
        for (int i = 0; i < thresholds.Length; i++)
        {
            _predicted[i] += predicted[i];
            _correct[i] += matched[i]; // one to one: matched predicted pixels = matched true pixels
            _found[i] += matched[i];
        }
    }

    public double Compute() => _pixels == 0 ? double.NaN : _lossSum / _pixels;

    /// <summary>odsF: the best F-measure over the thresholds, from counts over the data set.</summary>
    public double OdsF()
    {
        if (_thresholds is null) return double.NaN;
        double best = 0;
        for (int i = 0; i < _thresholds.Length; i++)
        {
            double precision = _predicted[i] == 0 ? 0 : (double)_correct[i] / _predicted[i];
            double recall = _edges == 0 ? 0 : (double)_found[i] / _edges;
            if (precision + recall > 0) best = Math.Max(best, 2 * precision * recall / (precision + recall));
        }
        return best;
    }

    public IReadOnlyDictionary<string, double> Details() => new Dictionary<string, double> { ["loss"] = Compute(), ["odsF"] = OdsF() };
}
