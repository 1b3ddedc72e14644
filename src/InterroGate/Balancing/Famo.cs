// FAMO: fast adaptive multitask optimisation, weights that balance the tasks' rates of loss decrease with O(1) extra cost (Liu et al., "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023).
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// Logits ξ (start 0), z = softmax(ξ). The model follows Σ_t z_t ∇log L_t scaled to a convex combination of
/// the task gradients: weights w_t = z_t / (c L_t), c = Σ_s z_s / L_s (times T, the scale of the uniform sum).
/// After the step the losses of the same batch are measured again and ξ descends the gradient J_zᵀ δ of zᵀδ,
/// δ_t = log L_t(before) − log L_t(after), J_z the softmax Jacobian: tasks whose log loss fell less gain
/// weight, by Adam with <c>lr</c> and L2 weight decay <c>weightDecay</c> (0.025 and 0.001 in the paper).
/// Losses are taken as they are (their minimum is 0 for cross-entropy and L1/L2).
/// </summary>
public sealed class Famo : IBalancer
{
    private readonly int _tasks;
    private readonly double[] _xi;
    private readonly TaskWeightAdam _adam;

    public Famo(int tasks, double lr, double weightDecay)
    {
        if (tasks < 1) throw new ArgumentOutOfRangeException(nameof(tasks), tasks, "FAMO needs at least one task.");
        if (!(lr > 0) || !double.IsFinite(lr)) throw new ArgumentOutOfRangeException(nameof(lr), lr, "FAMO's lr must be > 0.");
        if (!(weightDecay >= 0) || !double.IsFinite(weightDecay)) throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "FAMO's weightDecay must be ≥ 0.");
        (_tasks, Lr, WeightDecay) = (tasks, lr, weightDecay);
        _xi = new double[tasks];
        _adam = new TaskWeightAdam(tasks);
    }

    public string Name => "famo";
    public double Lr { get; }
    public double WeightDecay { get; }

    /// <summary>z = softmax(ξ).</summary>
    public double[] Z()
    {
        double max = _xi.Max();
        var e = _xi.Select(x => Math.Exp(x - max)).ToArray();
        double sum = e.Sum();
        return e.Select(x => x / sum).ToArray();
    }

    /// <summary>The weights applied to losses <paramref name="losses"/> given z (they sum to T when the losses are equal).</summary>
    public static double[] Weights(double[] z, IReadOnlyList<double> losses)
    {
        var ratio = z.Select((zi, t) => zi / Math.Max(losses[t], 1e-8)).ToArray();
        double c = ratio.Sum();
        return ratio.Select(r => z.Length * r / c).ToArray();
    }

    /// <summary>The gradient of ξ for the change of log losses δ: J_zᵀδ = z ⊙ δ − z (zᵀδ).</summary>
    public static double[] LogitGradient(double[] z, double[] delta)
    {
        double zd = z.Select((zi, t) => zi * delta[t]).Sum();
        return z.Select((zi, t) => zi * delta[t] - zi * zd).ToArray();
    }

    public double[] Backward(IReadOnlyList<Tensor> taskLosses, Tensor? regularizer, BalanceContext context)
    {
        if (taskLosses.Count != _tasks) throw new ArgumentException($"FAMO was built for {_tasks} tasks, got {taskLosses.Count} losses.");
        var w = Weights(Z(), taskLosses.Select(l => (double)l.detach().item<float>()).ToArray());
        return FixedWeights.WeightedBackward(taskLosses, regularizer, w);
    }

    public bool ReadsStepLosses => true;

    public void AfterStep(IReadOnlyList<double> lossesBefore, Func<IReadOnlyList<double>> lossesAfter)
    {
        if (_tasks == 1) return;
        var after = lossesAfter();
        var delta = lossesBefore.Select((b, t) => Math.Log(Math.Max(b, 1e-8)) - Math.Log(Math.Max(after[t], 1e-8))).ToArray();
        _adam.Step(_xi, LogitGradient(Z(), delta), Lr, WeightDecay);
    }

    public IReadOnlyDictionary<string, double[]> State()
    {
        var state = new Dictionary<string, double[]> { ["logits"] = _xi.ToArray() };
        _adam.Save(state);
        return state;
    }

    public void Restore(IReadOnlyDictionary<string, double[]> state)
    {
        if (state.TryGetValue("logits", out var x) && x.Length == _tasks) x.CopyTo(_xi, 0);
        _adam.Restore(state);
    }
}
