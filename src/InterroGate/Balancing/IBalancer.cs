using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// Turns the T task losses (and the architecture's regulariser) into gradients: loss-weighting methods
/// back-propagate a weighted sum; gradient methods (<see cref="GradientBalancer"/>) combine per-task gradients of
/// <see cref="BalanceContext.SharedParameters"/>. The Trainer calls only this.
/// </summary>
public interface IBalancer
{
    string Name { get; }

    /// <summary>Back-propagates; returns the task weights it applied (for logs).</summary>
    double[] Backward(IReadOnlyList<Tensor> taskLosses, Tensor? regularizer, BalanceContext context);

    /// <summary>Called with each task's mean training loss when an epoch ends (for epoch-based weighting).</summary>
    void EpochEnded(IReadOnlyList<double> meanTaskLosses) { }

    /// <summary>
    /// Called after the optimisers stepped, with the step's task losses and a function that recomputes them on
    /// the same batch with the updated model (one more forward pass, only when called; BN layers see the batch
    /// again in training mode).
    /// </summary>
    void AfterStep(IReadOnlyList<double> lossesBefore, Func<IReadOnlyList<double>> lossesAfter) { }

    /// <summary>
    /// Whether <see cref="AfterStep"/> uses the step's losses. Only then does the trainer read them at every step on a
    /// GPU (a read waits for the GPU to finish the step); otherwise AfterStep is not called.
    /// </summary>
    bool ReadsStepLosses => false;

    /// <summary>Learnable parameters of the method itself; the Trainer optimises them with the model's weights.</summary>
    IReadOnlyList<TorchSharp.Modules.Parameter> Parameters => [];

    /// <summary>What a checkpoint must keep for an exact resume (loss history, learned weights), by name.</summary>
    IReadOnlyDictionary<string, double[]> State() => new Dictionary<string, double[]>();

    /// <summary>Restores what <see cref="State"/> returned; an empty state (a fresh run) changes nothing.</summary>
    void Restore(IReadOnlyDictionary<string, double[]> state) { }
}

/// <summary>
/// What a balancer may need from the model: the parameters every task's loss reaches, and (where the
/// architecture has one) the shared representation of the current step, the encoder output all heads read.
/// </summary>
public sealed record BalanceContext(IReadOnlyList<TorchSharp.Modules.Parameter> SharedParameters, Func<Tensor?>? Representation = null)
{
    /// <summary>What meta-learning methods need (Auto-λ's virtual step); null where the caller cannot provide it.</summary>
    public MetaAccess? Meta { get; init; }
}

/// <summary>
/// Access for meta-learning balancers: the weights the optimiser trains and its current learning rate, the task
/// losses of the current training batch recomputed with the weights as they are now, and those of the next meta
/// batch: a batch of the training split drawn in another order (as Auto-λ's authors draw it), so that no row of a
/// comparison learns from the validation split. Both forward passes run in training mode.
/// </summary>
public sealed record MetaAccess(
    IReadOnlyList<TorchSharp.Modules.Parameter> Weights, Func<double> LearningRate,
    Func<IReadOnlyList<Tensor>> TrainLosses, Func<IReadOnlyList<Tensor>> MetaLosses);

/// <summary>Fixed scalarisation: L = Σ_t ω_t L_t + regulariser (uniform: ω_t = 1).</summary>
public sealed class FixedWeights : IBalancer
{
    private readonly double[] _weights;

    public FixedWeights(IReadOnlyList<double> weights, string name = "fixed")
    {
        if (weights.Count == 0 || weights.Any(w => !(w >= 0) || double.IsInfinity(w)))
            throw new ArgumentException("Task weights must be finite and ≥ 0.");
        _weights = weights.ToArray();
        Name = name;
    }

    public static FixedWeights Uniform(int tasks) => new(Enumerable.Repeat(1.0, tasks).ToArray(), "uniform");

    public string Name { get; }

    public double[] Backward(IReadOnlyList<Tensor> taskLosses, Tensor? regularizer, BalanceContext context) =>
        WeightedBackward(taskLosses, regularizer, _weights);

    /// <summary>Back-propagates Σ_t ω_t L_t + regulariser; returns ω.</summary>
    public static double[] WeightedBackward(IReadOnlyList<Tensor> taskLosses, Tensor? regularizer, double[] weights)
    {
        if (taskLosses.Count != weights.Length)
            throw new ArgumentException($"{weights.Length} weights for {taskLosses.Count} task losses.");
        Tensor total = taskLosses[0].Times(weights[0]);
        for (int t = 1; t < taskLosses.Count; t++) total = total.Plus(taskLosses[t].Times(weights[t]));
        if (regularizer is not null) total = total.Plus(regularizer);
        total.backward();
        return weights;
    }
}
