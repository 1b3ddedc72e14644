using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Data;
using InterroGate.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Training;

/// <summary>Per-task primary metric and mean loss of a model on a data set.</summary>
public sealed record EvaluationResult(IReadOnlyDictionary<string, double> Metrics, IReadOnlyDictionary<string, double> Losses, int Samples)
{
    /// <summary>Per task, its primary and secondary metrics by name (see <see cref="ITaskMetric.Details"/>).</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, double>> Details { get; init; } =
        new Dictionary<string, IReadOnlyDictionary<string, double>>();

    /// <summary>
    /// The mean over tasks of the primary metric, negated where lower is better: a summary recorded with each epoch.
    /// It mixes units (an angle in degrees next to an mIoU fraction), so the best epoch is chosen by
    /// <see cref="Improves"/>, which does not.
    /// </summary>
    public static double Score(Tasks.TaskSet tasks, IReadOnlyDictionary<string, double> metrics) =>
        tasks.Average(t => t.HigherIsBetter ? metrics[t.Name] : -metrics[t.Name]);

    /// <summary>
    /// Whether <paramref name="candidate"/> is better than <paramref name="best"/>: their Δ_MTL, the mean over tasks of
    /// the relative change of the primary metric (signed so that better is positive), is above 0. Each task weighs by
    /// its relative change whatever its metric's unit or scale. A metric that is 0 in <paramref name="best"/> counts by
    /// its absolute change; one that is not a number counts as a change of −100% (in the candidate) or +100% (in the
    /// best alone).
    /// </summary>
    public static bool Improves(Tasks.TaskSet tasks, IReadOnlyDictionary<string, double> candidate, IReadOnlyDictionary<string, double> best)
    {
        double sum = 0;
        foreach (var t in tasks)
        {
            double c = candidate[t.Name], b = best.TryGetValue(t.Name, out var v) ? v : double.NaN;
            double change = (double.IsFinite(c), double.IsFinite(b)) switch
            {
                (false, false) => 0,
                (false, true) => -1,
                (true, false) => 1,
                _ => (t.HigherIsBetter ? c - b : b - c) / (b == 0 ? 1 : Math.Abs(b)),
            };
            sum += change;
        }
        return sum > 0;
    }
}

/// <summary>Evaluates a model in evaluation mode, without gradients, one dispose scope per batch.</summary>
public static class Evaluator
{
    /// <summary>
    /// Why <paramref name="data"/> cannot be fed to <paramref name="model"/> (a task it lacks or holds with another kind
    /// or output count, images of another channel count, no samples), or null where it can.
    /// </summary>
    internal static string? CannotFeed(MultiTaskModel model, IMultiTaskDataset data) =>
        data.Tasks.CannotServe(model.Tasks)
        ?? (data.ImageShape.Channels != model.InChannels ? $"it holds {data.ImageShape.Channels}-channel images and the model reads {model.InChannels}-channel ones" : null)
        ?? (data.Count == 0 ? "it holds no samples" : null);

    /// <summary>
    /// Evaluates on the device the model's weights are on, the forward pass in <paramref name="precision"/>, images in
    /// channels-last memory order where <paramref name="channelsLast"/> (as the model was trained). Dense tasks of a
    /// data set resized to the input are scored at each sample's stored size (<see cref="DenseDataset.ScoresAtStoredSize"/>);
    /// the losses are those of the network's input size.
    /// </summary>
    public static EvaluationResult Evaluate(MultiTaskModel model, IMultiTaskDataset data, int batchSize, CancellationToken cancel = default,
        Runtime.Precision precision = Runtime.Precision.Fp32, bool channelsLast = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        if (CannotFeed(model, data) is { } why)
            throw new ArgumentException($"{data.Name} cannot evaluate this model: {why}.", nameof(data));
        var device = model.parameters().FirstOrDefault()?.device;
        var tasks = model.Tasks;
        var metrics = tasks.Select(t => TaskMetrics.For(t)).ToArray();
        var lossSums = new double[tasks.Count];
        int samples = 0;
        bool wasTraining = model.training;
        model.eval();
        // The gates do not change while it evaluates: InterroGate leaves the copies they leave unread uncomputed (fixed
        // here for the evaluation where they were not already).
        var fixedHere = (model as Architectures.InterroGateModel)?.Encoder is { GatesFixed: false } gated ? gated : null;
        // A data set resized to the input for evaluation is scored at each sample's stored size (DenseDataset.ScoresAtStoredSize).
        var stored = data is DenseDataset { ScoresAtStoredSize: true } dense && tasks.Any(t => t.IsDense) ? dense : null;
        if (fixedHere is not null) fixedHere.GatesFixed = true;
        if (stored is not null) stored.IncludeStoredTargets = true;
        try
        {
            using var _ = no_grad();
            var loader = new DataLoader(data, batchSize, shuffle: false, seed: 0, dropLast: false, device, channelsLast);
            foreach (var batch in loader.Epoch(0))
            {
                cancel.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                scope.Attach(batch.Values);
                var images = batch[IMultiTaskDataset.ImageKey];
                int n = (int)images.shape[0];
                var outputs = model.Forward(images, precision);
                for (int t = 0; t < tasks.Count; t++)
                {
                    var output = outputs[tasks[t].Name];
                    var target = batch[tasks[t].Name];
                    if (stored is null || !tasks[t].IsDense) metrics[t].Update(output, target);
                    lossSums[t] += TaskLoss.Compute(tasks[t], output, target).item<float>() * n;
                }
                if (stored is not null) ScoreAtStoredSize(batch, outputs, tasks, metrics);
                samples += n;
            }
        }
        finally
        {
            model.train(wasTraining);
            if (fixedHere is not null) fixedHere.GatesFixed = false;
            if (stored is not null) stored.IncludeStoredTargets = false;
        }
        return Result(tasks, metrics, lossSums, samples);
    }

    /// <summary>
    /// Scores the dense outputs of <paramref name="batch"/> against its samples' targets as stored
    /// (<see cref="DenseDataset.StoredKey"/>): each output is resized back (bilinear, on the logits) to its sample's own size.
    /// </summary>
    private static void ScoreAtStoredSize(Dictionary<string, Tensor> batch, Dictionary<string, Tensor> outputs, Tasks.TaskSet tasks, ITaskMetric[] metrics)
    {
        int n = (int)outputs[tasks[0].Name].shape[0];
        for (int j = 0; j < n; j++)
        {
            for (int t = 0; t < tasks.Count; t++)
            {
                if (!tasks[t].IsDense) continue;
                var target = batch[DenseDataset.StoredKey(tasks[t].Name, j)];
                var output = JointMaps.Resize(outputs[tasks[t].Name][j].to(ScalarType.Float32), null, (int)target.shape[^2], (int)target.shape[^1]);
                metrics[t].Update(output.unsqueeze(0), target.unsqueeze(0).to(output.device));
            }
        }
    }

    private static EvaluationResult Result(Tasks.TaskSet tasks, ITaskMetric[] metrics, double[] lossSums, int samples)
    {
        return new EvaluationResult(
            tasks.Select((t, i) => (t.Name, metrics[i].Compute())).ToDictionary(p => p.Name, p => p.Item2),
            tasks.Select((t, i) => (t.Name, lossSums[i] / Math.Max(1, samples))).ToDictionary(p => p.Name, p => p.Item2),
            samples)
        {
            Details = tasks.Select((t, i) => (t.Name, metrics[i].Details())).ToDictionary(p => p.Name, p => p.Item2),
        };
    }
}
