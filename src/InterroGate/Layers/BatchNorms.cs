using InterroGate.Runtime;
using InterroGate.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Layers;

/// <summary>
/// Batch norm without TorchSharp's implicit scalar: <c>BatchNorm2d.forward</c> counts the batch with
/// <c>num_batches_tracked.add_(1)</c>, a scalar a garbage collection on another thread can free while libtorch reads it
/// (<see cref="Scalars"/>). The library never calls that forward: its models' batch norms run through <see cref="Forward"/>,
/// which computes the same with <see cref="Scalars.One"/> (the kept-filter and fused paths call <c>batch_norm</c> themselves
/// and count with <see cref="CountBatch"/>). Forward hooks registered on a batch-norm module do not run for these calls.
/// </summary>
public static class BatchNorms
{
    /// <summary>What <c>BatchNorm2d.forward</c> computes (input [B, C, H, W]).</summary>
    public static Tensor Forward(BatchNorm2d norm, Tensor input)
    {
        if (input.dim() != 4)
            throw new ArgumentException($"A 2-d batch norm expects a 4-d input [B, C, H, W], not {input.dim()}-d.", nameof(input));
        double factor = norm.momentum ?? 0.0;
        if (norm.training && norm.track_running_stats && norm.num_batches_tracked is { } count)
        {
            CountBatch(norm);
            if (norm.momentum is null)
            {
                using var batches = count.to(ScalarType.Float64); // the count in any dtype (TorchSharp's (double) cast makes a scalar)
                factor = 1.0 / batches.item<double>();
            }
        }
        bool useBatchStatistics = norm.training || (norm.running_mean is null && norm.running_var is null);
        bool useRunning = !norm.training || norm.track_running_stats;
        return nn.functional.batch_norm(input, useRunning ? norm.running_mean : null, useRunning ? norm.running_var : null,
            norm.weight, norm.bias, useBatchStatistics, factor, norm.eps);
    }

    /// <summary>Adds one to the norm's <c>num_batches_tracked</c> (if it tracks one).</summary>
    public static void CountBatch(BatchNorm2d norm) => norm.num_batches_tracked?.add_(Scalars.One, Scalars.One);

    /// <summary>
    /// Runs <paramref name="module"/>: a batch norm through <see cref="Forward"/>, anything else as its own call.
    /// </summary>
    public static Tensor Call(nn.IModule<Tensor, Tensor> module, Tensor input) =>
        module is BatchNorm2d norm ? Forward(norm, input) : module.call(input);
}

/// <summary>
/// <see cref="Sequential"/> (same children, same parameter names) whose batch norms run through
/// <see cref="BatchNorms.Forward"/>.
/// </summary>
public sealed class Chain : Sequential
{
    public Chain(params nn.Module<Tensor, Tensor>[] modules) : base(modules) { }

    public override Tensor forward(Tensor input)
    {
        if (Count == 0) return input.alias();
        var h = BatchNorms.Call(this[0], input);
        for (int i = 1; i < Count; i++)
        {
            var next = BatchNorms.Call(this[i], h);
            h.Dispose();
            h = next;
        }
        return h;
    }
}
