using InterroGate.Architectures;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Tasks;
using InterroGate.Training;
using static TorchSharp.torch;

namespace InterroGate.Examples;

/// <summary>What <see cref="QuickStart.Run"/> measured: the test metrics, the cost before and after pruning, the static
/// model's file, the largest difference between its outputs and the trained model's on the first test images (relative
/// to the largest output), and its predicted classes there per classification task.</summary>
public sealed record QuickStartResult(
    IReadOnlyDictionary<string, double> TestMetrics, long MacsGated, long MacsStatic, string StaticModel,
    double LargestOutputDifference, IReadOnlyDictionary<string, long[]> Predictions);

public static class QuickStart
{
    /// <summary>Trains, evaluates, prunes, saves and loads one InterroGate model, writing progress to <paramref name="log"/>.</summary>
    public static QuickStartResult Run(string output, string dataset, int trainSize, int epochs, Action<string> log)
    {
        #region quickstart
        // InterroGate on ResNet-20 at quarter width, in the gate regime of docs/method.md (small α₀, λs near the signal).
        var config = new RunConfig
        {
            Name = "quickstart",
            Data = new DataConfig { Dataset = dataset, TrainSize = trainSize, ValidationSize = 1000, TestSize = 1000 },
            Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
            Architecture = new InterroGateConfig { LambdaS = 2, AlphaInit = 0.01 },
            Training = new TrainingConfig { Epochs = epochs, BatchSize = 128, Lr = 3e-3, FreezeGatesLastEpochs = 1 },
        };
        var run = PreparedRun.Create(config); // checks the configuration, opens the data, builds the model
        using var data = run.Data;
        using var model = (InterroGateModel)run.Model;

        // Train: checkpoints and metrics.jsonl go to `output`; the progress receiver gets every step and epoch.
        var trained = new Trainer(config, model, data, output, new EpochLog(log)).Run();
        var test = Evaluator.Evaluate(model, data.Test, batchSize: 256);
        log($"test: {string.Join(", ", test.Metrics.Select(m => $"{m.Key} {m.Value:F4}"))} (best epoch {trained.BestEpoch + 1})");

        // Deploy: the gates become constants and every filter nobody reads is removed, one network for all tasks.
        var pruned = Pruner.Prune(model, data.Train.Input);
        using var graph = pruned.Graph;
        log($"MACs per image: {pruned.Report.MacsBefore:N0} gated, {pruned.Report.MacsAfter:N0} static");
        string file = Path.Combine(output, "quickstart.static.safetensors");
        StaticModelFile.Save(file, graph);

        // Predict with the saved network: one forward pass gives every task's output.
        using var predictor = Predictor.Load(file);
        using var scope = NewDisposeScope();
        var batch = data.Test.GetBatch([0, 1, 2, 3, 4, 5, 6, 7]);
        var outputs = predictor.Forward(batch[IMultiTaskDataset.ImageKey]);
        var predictions = predictor.Tasks.Where(t => t.Kind == TaskKind.Classification)
            .ToDictionary(t => t.Name, t => outputs[t.Name].argmax(1).data<long>().ToArray());
        foreach (var (task, classes) in predictions) log($"{task}: predicted {string.Join(" ", classes)}, true {string.Join(" ", batch[task].data<long>().ToArray())}");
        #endregion

        // The static network computes what the trained model computes in evaluation mode (compared on the host).
        model.eval();
        Dictionary<string, Tensor> reference;
        using (no_grad()) reference = model.call(batch[IMultiTaskDataset.ImageKey]);
        double largest = outputs.Max(o =>
        {
            float[] ours = o.Value.contiguous().data<float>().ToArray(), theirs = reference[o.Key].contiguous().data<float>().ToArray();
            return ours.Zip(theirs).Max(p => Math.Abs(p.First - p.Second)) / Math.Max(1e-6, theirs.Max(Math.Abs));
        });
        return new QuickStartResult(test.Metrics, pruned.Report.MacsBefore, pruned.Report.MacsAfter, file, largest, predictions);
    }

    /// <summary>One line per finished epoch.</summary>
    private sealed class EpochLog(Action<string> log) : IProgress<TrainingEvent>
    {
        public void Report(TrainingEvent value)
        {
            if (value is EpochCompleted e)
                log($"epoch {e.Epoch + 1}/{e.Epochs}: validation {string.Join(", ", e.Validation.Select(m => $"{m.Key} {m.Value:F4}"))}{(e.Headline is null ? "" : $", {e.Headline}")}");
        }
    }
}
