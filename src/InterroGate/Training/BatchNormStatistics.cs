// Re-estimating batch-norm running statistics from training batches (docs/method.md, "Batch-norm statistics").
using InterroGate.Architectures;
using InterroGate.Data;
using InterroGate.Tensors;
using BatchNorm1d = TorchSharp.Modules.BatchNorm1d;
using BatchNorm2d = TorchSharp.Modules.BatchNorm2d;
using BatchNorm3d = TorchSharp.Modules.BatchNorm3d;
using NormBase = TorchSharp.Modules.NormBase;
using static TorchSharp.torch;

namespace InterroGate.Training;

/// <summary>
/// Replaces the running mean and variance of every batch-norm layer of a model by their plain average over a number
/// of training batches, computed with the weights and gates as they are now. Running statistics are an exponential
/// average over the last steps of training (momentum 0.1), each taken with the weights of its own step; where the
/// weights moved fast (short schedules, a large learning rate) or the layer inputs changed at once (gates flipped,
/// in particular when a budget is landed), that average describes no network that exists, and evaluation in
/// evaluation mode suffers for it. Only the batch-norm layers run in training mode during the pass; gates and
/// everything else stay in evaluation mode, and no weight or gate changes.
/// </summary>
public static class BatchNormStatistics
{
    /// <summary>The batch-norm layers of <paramref name="model"/> (2-d; 1-d and 3-d too).</summary>
    public static NormBase[] Layers(nn.Module model) =>
        model.modules().Where(m => m is BatchNorm2d or BatchNorm1d or BatchNorm3d).Cast<NormBase>().ToArray();

    /// <summary>
    /// For a checkpoint after <paramref name="epochsDone"/> epochs of <paramref name="config"/>: the statistics that
    /// <c>training.bnBatches</c> = <paramref name="batches"/> would have left in it, from the first batches of its last
    /// epoch as the trainer's loader draws them on <paramref name="train"/>.
    /// </summary>
    public static int ReestimateAsTrained(MultiTaskModel model, Configuration.RunConfig config, IMultiTaskDataset train, int epochsDone, int batches,
        Device? device = null, CancellationToken cancel = default)
    {
        var t = config.Training;
        var loader = new DataLoader(train, t.BatchSize, shuffle: true, t.Seed, dropLast: true, device, t.ChannelsLast);
        return Reestimate(model, loader, batches, Math.Max(0, epochsDone - 1), t.Precision, cancel);
    }

    /// <summary>
    /// Re-estimates the statistics from the first <paramref name="batches"/> batches of <paramref name="loader"/>'s
    /// epoch <paramref name="epoch"/> (its order and augmentations). Returns how many batches were used (0 when
    /// the model has no batch-norm layer or <paramref name="batches"/> is 0; the statistics are then unchanged).
    /// </summary>
    public static int Reestimate(MultiTaskModel model, DataLoader loader, int batches, int epoch = 0,
        Runtime.Precision precision = Runtime.Precision.Fp32, CancellationToken cancel = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(batches);
        var norms = Layers(model);
        if (norms.Length == 0 || batches == 0) return 0;
        bool wasTraining = model.training;
        var momenta = norms.Select(n => n.momentum).ToArray();
        var saved = norms.Select(n => (Mean: n.running_mean!.clone(), Var: n.running_var!.clone(), Count: n.num_batches_tracked?.clone())).ToArray();
        int used = 0;
        try
        {
            model.eval();
            using var _ = no_grad();
            foreach (var n in norms)
            {
                n.running_mean!.ZeroInPlace();
                n.running_var!.fill_(Scalars.One);
                n.num_batches_tracked?.ZeroInPlace();
                n.train();
            }
            foreach (var batch in loader.Epoch(epoch))
            {
                cancel.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                scope.Attach(batch.Values);
                // Momentum 1/k at the k-th batch makes the running statistics the plain average of the k batches'.
                foreach (var n in norms) n.momentum = 1.0 / (used + 1);
                model.Forward(batch[IMultiTaskDataset.ImageKey], precision);
                if (++used >= batches) break;
            }
        }
        catch
        {
            using (no_grad())
                for (int i = 0; i < norms.Length; i++)
                {
                    norms[i].running_mean!.copy_(saved[i].Mean);
                    norms[i].running_var!.copy_(saved[i].Var);
                    if (saved[i].Count is { } c) norms[i].num_batches_tracked!.copy_(c);
                }
            throw;
        }
        finally
        {
            for (int i = 0; i < norms.Length; i++) norms[i].momentum = momenta[i];
            foreach (var s in saved) { s.Mean.Dispose(); s.Var.Dispose(); s.Count?.Dispose(); }
            model.train(wasTraining);
        }
        return used;
    }
}
