// GradNorm: learn task weights that equalise the tasks' gradient norms at the last shared layer, scaled by their relative training rates (Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018).
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// The model trains on Σ_t w_t L_t. At every step, with n_t = |∇_W L_t| at the last shared weight W, G_t = w_t n_t,
/// Ḡ = mean_t G_t, L̃_t = L_t / L_t(first step) and r_t = L̃_t / mean L̃, the weights descend
/// L_grad = Σ_t |G_t − Ḡ r_t^α| with the target Ḡ r_t^α held constant (as in the paper), by Adam with
/// <c>weightLr</c>, and are renormalised to sum to T. α (1.5 in the paper's NYUv2 runs) sets how strongly
/// slow tasks are pushed. Costs T extra backward passes down to W only (the last shared layer).
/// </summary>
public sealed class GradNorm : IBalancer
{
    private readonly int _tasks;
    private double[] _w, _initialLosses = [];
    private readonly TaskWeightAdam _adam;

    public GradNorm(int tasks, double alpha, double weightLr)
    {
        if (tasks < 1) throw new ArgumentOutOfRangeException(nameof(tasks), tasks, "GradNorm needs at least one task.");
        if (!(alpha >= 0) || !double.IsFinite(alpha)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "GradNorm's alpha must be ≥ 0.");
        if (!(weightLr > 0) || !double.IsFinite(weightLr)) throw new ArgumentOutOfRangeException(nameof(weightLr), weightLr, "GradNorm's weightLr must be > 0.");
        (_tasks, Alpha, WeightLr) = (tasks, alpha, weightLr);
        _w = Enumerable.Repeat(1.0, tasks).ToArray();
        _adam = new TaskWeightAdam(tasks);
    }

    public string Name => "gradnorm";
    public double Alpha { get; }
    public double WeightLr { get; }
    public IReadOnlyList<double> CurrentWeights => _w;

    public double[] Backward(IReadOnlyList<Tensor> taskLosses, Tensor? regularizer, BalanceContext context)
    {
        if (taskLosses.Count != _tasks) throw new ArgumentException($"GradNorm was built for {_tasks} tasks, got {taskLosses.Count} losses.");
        var losses = taskLosses.Select(l => (double)l.detach().item<float>()).ToArray();
        if (_initialLosses.Length == 0) _initialLosses = losses;
        var applied = _w.ToArray(); // this step trains with the current weights; the update applies from the next
        var last = context.SharedParameters.LastOrDefault(p => p.dim() >= 2);
        if (last is not null && _tasks > 1)
        {
            var norms = taskLosses.Select(l =>
            {
                var g = autograd.grad([l], [last], retain_graph: true, allow_unused: true)[0];
                return g.IsInvalid ? 0.0 : g.norm().to(float64).item<double>();
            }).ToArray();
            var gradient = WeightGradient(_w, norms, losses, _initialLosses, Alpha);
            AdamStep(gradient);
        }
        FixedWeights.WeightedBackward(taskLosses, regularizer, applied);
        return applied;
    }

    /// <summary>∂L_grad/∂w_t = sign(w_t n_t − Ḡ r_t^α) n_t, with the target held constant.</summary>
    public static double[] WeightGradient(double[] w, double[] norms, double[] losses, double[] initialLosses, double alpha)
    {
        int T = w.Length;
        var g = w.Select((x, i) => x * norms[i]).ToArray();
        double mean = g.Average();
        var ratio = losses.Select((l, i) => initialLosses[i] > 0 ? l / initialLosses[i] : 1.0).ToArray();
        double meanRatio = ratio.Average();
        return Enumerable.Range(0, T).Select(i =>
        {
            double target = mean * Math.Pow(meanRatio > 0 ? ratio[i] / meanRatio : 1.0, alpha);
            return Math.Sign(g[i] - target) * norms[i];
        }).ToArray();
    }

    private void AdamStep(double[] gradient)
    {
        _adam.Step(_w, gradient, WeightLr, floor: 1e-6);
        double sum = _w.Sum();
        for (int i = 0; i < _tasks; i++) _w[i] *= _tasks / sum;
    }

    public IReadOnlyDictionary<string, double[]> State()
    {
        var state = new Dictionary<string, double[]> { ["weights"] = _w.ToArray(), ["initialLosses"] = _initialLosses.ToArray() };
        _adam.Save(state);
        return state;
    }

    public void Restore(IReadOnlyDictionary<string, double[]> state)
    {
        if (state.TryGetValue("weights", out var w) && w.Length == _tasks) _w = w.ToArray();
        if (state.TryGetValue("initialLosses", out var l) && (l.Length == _tasks || l.Length == 0)) _initialLosses = l.ToArray();
        _adam.Restore(state);
    }
}
