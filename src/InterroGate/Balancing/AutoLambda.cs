// Auto-λ: task weights meta-learned so that a virtual training step lowers the loss on other data (Liu, Johns and Davison, "Auto-Lambda: Disentangling Dynamic Task Relationships", TMLR 2022).
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// Weights λ (start 1). Each step: the virtual step θ' = θ − η ∇_θ Σ_t λ_t L_t(θ) on the training batch (η the
/// weights' current learning rate); the meta loss L_v(θ') = Σ_t L_t^val(θ') over every task (all are primary here)
/// on the next meta batch, a batch of the training split in another order (the authors' code draws it so, from a
/// copy of the training loader; <see cref="MetaAccess"/>); its gradient with respect to λ, −η ∇²_{λ,θ} L · ∇_{θ'} L_v, by the paper's central finite
/// difference: −η (ℓ(θ + εv) − ℓ(θ − εv)) / 2ε with v = ∇_{θ'} L_v, ε = 0.01 / |v| and ℓ the per-task training
/// losses; λ takes an Adam step (<c>lr</c>, default 1e-3: the authors start λ at 0.1 with 1e-4, and an Adam step's
/// size does not depend on the gradient's, so from 1 it takes 1e-3 to move λ as fast relative to its size) and is
/// kept ≥ 0; then the real step trains
/// on Σ_t λ_t L_t(θ) (from a fresh forward pass). Costs about four training steps' worth of passes; the virtual
/// step is plain SGD, as in the paper. BN layers see the meta batch, and the training batch again, in training
/// mode.
/// </summary>
public sealed class AutoLambda : IBalancer
{
    private readonly int _tasks;
    private readonly double[] _lambda;
    private readonly TaskWeightAdam _adam;

    public AutoLambda(int tasks, double lr)
    {
        if (tasks < 1) throw new ArgumentOutOfRangeException(nameof(tasks), tasks, "Auto-λ needs at least one task.");
        if (!(lr > 0) || !double.IsFinite(lr)) throw new ArgumentOutOfRangeException(nameof(lr), lr, "Auto-λ's lr must be > 0.");
        (_tasks, Lr) = (tasks, lr);
        _lambda = Enumerable.Repeat(1.0, tasks).ToArray();
        _adam = new TaskWeightAdam(tasks);
    }

    public string Name => "auto-lambda";
    public double Lr { get; }
    public IReadOnlyList<double> Lambda => _lambda;

    public double[] Backward(IReadOnlyList<Tensor> taskLosses, Tensor? regularizer, BalanceContext context)
    {
        if (taskLosses.Count != _tasks) throw new ArgumentException($"Auto-λ was built for {_tasks} tasks, got {taskLosses.Count} losses.");
        var meta = context.Meta ?? throw new InvalidOperationException("Auto-λ needs the trainer's meta access (training and validation losses).");
        if (meta.Weights.Count == 0) return FixedWeights.WeightedBackward(taskLosses, regularizer, _lambda.ToArray());
        _adam.Step(_lambda, Hypergradient(taskLosses, meta), Lr, floor: 0);
        // The virtual step wrote to the weights (and restored them), which invalidates the step's first graph:
        // the real step back-propagates a fresh forward pass at the restored weights.
        return FixedWeights.WeightedBackward(meta.TrainLosses(), regularizer, _lambda.ToArray());
    }

    /// <summary>∂L_v(θ')/∂λ by the virtual step and the finite difference; leaves the weights as they were.</summary>
    internal double[] Hypergradient(IReadOnlyList<Tensor> taskLosses, MetaAccess meta)
    {
        var weights = meta.Weights.Where(p => p.requires_grad).ToArray();
        double eta = meta.LearningRate();
        Tensor weighted = taskLosses[0].Times(_lambda[0]);
        for (int t = 1; t < _tasks; t++) weighted = weighted.Plus(taskLosses[t].Times(_lambda[t]));
        var g = autograd.grad([weighted], weights, retain_graph: true, allow_unused: true);

        var saved = weights.Select(p => p.detach().clone()).ToArray();
        try
        {
            using (no_grad())
                for (int i = 0; i < weights.Length; i++)
                    if (!g[i].IsInvalid) weights[i].sub_(g[i].Times(eta));

            var validation = meta.MetaLosses();
            Tensor total = validation[0];
            for (int t = 1; t < validation.Count; t++) total = total.Plus(validation[t]);
            var v = autograd.grad([total], weights, allow_unused: true).Select((x, i) => x.IsInvalid ? zeros_like(weights[i]) : x).ToArray();
            double norm = Math.Sqrt(v.Sum(x => x.Squared().sum().to(float64).item<double>()));
            if (!(norm > 0)) return new double[_tasks];
            double epsilon = 0.01 / norm;

            double[] LossesAt(double sign)
            {
                using var _ = no_grad();
                for (int i = 0; i < weights.Length; i++) weights[i].copy_(saved[i].Plus(v[i].Times(sign * epsilon)));
                return meta.TrainLosses().Select(l => l.to(float64).item<double>()).ToArray();
            }
            var plus = LossesAt(+1);
            var minus = LossesAt(-1);
            return plus.Select((p, t) => -eta * (p - minus[t]) / (2 * epsilon)).ToArray();
        }
        finally
        {
            using var _ = no_grad();
            for (int i = 0; i < weights.Length; i++) weights[i].copy_(saved[i]);
        }
    }

    public IReadOnlyDictionary<string, double[]> State()
    {
        var state = new Dictionary<string, double[]> { ["lambda"] = _lambda.ToArray() };
        _adam.Save(state);
        return state;
    }

    public void Restore(IReadOnlyDictionary<string, double[]> state)
    {
        if (state.TryGetValue("lambda", out var l) && l.Length == _tasks) l.CopyTo(_lambda, 0);
        _adam.Restore(state);
    }
}
