// Uncertainty weighting: learn each task's homoscedastic noise and weight its loss by it (Kendall et al., "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and Semantics", CVPR 2018).
using InterroGate.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// L = Σ_t exp(−s_t) L_t + s_t with learnable s_t = log σ_t², trained with the model's weights. This is
/// Kendall et al.'s objective multiplied by 2 (their ½exp(−s)L + ½s for a regression task), so that the
/// weights start at 1 as under uniform weighting; the optimum σ_t² = L_t is the same.
/// </summary>
public sealed class Uncertainty : IBalancer, IDisposable
{
    private readonly Parameter _logVariance;

    public Uncertainty(int tasks)
    {
        if (tasks < 1) throw new ArgumentOutOfRangeException(nameof(tasks), tasks, "Uncertainty weighting needs at least one task.");
        _logVariance = new Parameter(zeros(tasks, dtype: float32).DetachFromDisposeScope()); // takes the tensor's handle
    }

    public string Name => "uncertainty";
    public IReadOnlyList<Parameter> Parameters => [_logVariance];

    /// <summary>The current weights exp(−s_t).</summary>
    public double[] Weights()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        return _logVariance.neg().exp().to(float64).data<double>().ToArray();
    }

    public double[] Backward(IReadOnlyList<Tensor> taskLosses, Tensor? regularizer, BalanceContext context)
    {
        if (taskLosses.Count != _logVariance.shape[0])
            throw new ArgumentException($"Uncertainty weighting was built for {_logVariance.shape[0]} tasks, got {taskLosses.Count} losses.");
        var s = _logVariance.to(taskLosses[0].device);
        Tensor total = zeros_like(taskLosses[0]);
        for (int t = 0; t < taskLosses.Count; t++) total = total.Plus(taskLosses[t] * s[t].neg().exp()).Plus(s[t]);
        if (regularizer is not null) total = total.Plus(regularizer);
        total.backward();
        return Weights();
    }

    public IReadOnlyDictionary<string, double[]> State() => new Dictionary<string, double[]>
    {
        ["logVariance"] = Read(),
    };

    private double[] Read()
    {
        using var scope = NewDisposeScope();
        return _logVariance.detach().to(float64).cpu().data<double>().ToArray();
    }

    public void Dispose() => _logVariance.Dispose();

    public void Restore(IReadOnlyDictionary<string, double[]> state)
    {
        if (!state.TryGetValue("logVariance", out var s)) return;
        if (s.Length != _logVariance.shape[0]) throw new ArgumentException($"The checkpoint holds {s.Length} log-variances for {_logVariance.shape[0]} tasks.");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        _logVariance.copy_(tensor(s).to(float32));
    }
}
