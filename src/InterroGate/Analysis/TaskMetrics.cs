using InterroGate.Tasks;
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Analysis;

/// <summary>A task's primary metric, accumulated over batches as .NET numbers.</summary>
public interface ITaskMetric
{
    string Name { get; }
    bool HigherIsBetter { get; }
    void Update(Tensor output, Tensor target);
    double Compute();

    /// <summary>The primary metric and the secondary ones of its kind (for example median angle, odsF), by name.</summary>
    IReadOnlyDictionary<string, double> Details() => new Dictionary<string, double> { [Name] = Compute() };
}

/// <summary>Chooses the metric by task kind; accuracies are fractions in [0, 1].</summary>
public static class TaskMetrics
{
    public static ITaskMetric For(TaskSpec task) => For(task, DenseMetricOptions.Default);

    public static ITaskMetric For(TaskSpec task, DenseMetricOptions options) => task.Kind switch
    {
        TaskKind.Classification => new Accuracy(),
        TaskKind.Binary => new BinaryAccuracy(),
        TaskKind.Regression => new MeanAbsoluteError(),
        TaskKind.Segmentation => new MeanIoU(task.Outputs),
        TaskKind.Depth => new DepthErrors(),
        TaskKind.Normals => new NormalAngleErrors(),
        TaskKind.Saliency => new SaliencyScores(options),
        TaskKind.Edges => new EdgeScores(options),
        _ => throw new ArgumentOutOfRangeException(nameof(task), task.Kind, "No metric for this task kind."),
    };
}

/// <summary>Top-1 accuracy of logits [B, K] against classes [B].</summary>
public sealed class Accuracy : ITaskMetric
{
    private long _correct, _total;
    public string Name => "accuracy";
    public bool HigherIsBetter => true;

    public void Update(Tensor output, Tensor target)
    {
        using var hits = output.argmax(1).eq(target).sum();
        _correct += hits.item<long>();
        _total += target.shape[0];
    }

    public double Compute() => _total == 0 ? double.NaN : (double)_correct / _total;
}

/// <summary>Mean accuracy over binary attributes: logit &gt; 0 against target &gt; 0.5.</summary>
public sealed class BinaryAccuracy : ITaskMetric
{
    private long _correct, _total;
    public string Name => "accuracy";
    public bool HigherIsBetter => true;

    public void Update(Tensor output, Tensor target)
    {
        using var hits = output.gt(Scalars.Zero).eq(target.gt(Scalars.Half)).sum();
        _correct += hits.item<long>();
        _total += target.numel();
    }

    public double Compute() => _total == 0 ? double.NaN : (double)_correct / _total;
}

/// <summary>Mean absolute error over all outputs.</summary>
public sealed class MeanAbsoluteError : ITaskMetric
{
    private double _sum;
    private long _total;
    public string Name => "mae";
    public bool HigherIsBetter => false;

    public void Update(Tensor output, Tensor target)
    {
        using var err = (output - target).abs().sum();
        _sum += err.item<float>();
        _total += target.numel();
    }

    public double Compute() => _total == 0 ? double.NaN : _sum / _total;
}
