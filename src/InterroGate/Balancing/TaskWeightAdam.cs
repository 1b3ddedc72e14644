// Adam on a handful of per-task numbers (GradNorm's weights, FAMO's logits, Auto-λ's λ), with its state for checkpoints.
namespace InterroGate.Balancing;

/// <summary>
/// Adam (β₁ 0.9, β₂ 0.999, ε 1e-8) with L2 weight decay added to the gradient, as torch.optim.Adam does, for
/// T values held as .NET numbers; <see cref="Save"/> and <see cref="Restore"/> carry its moments through a checkpoint.
/// </summary>
internal sealed class TaskWeightAdam(int tasks)
{
    private const double Beta1 = 0.9, Beta2 = 0.999, Epsilon = 1e-8;
    private readonly double[] _m = new double[tasks], _v = new double[tasks];
    private long _step;

    /// <summary>One step on <paramref name="values"/> in place; <paramref name="floor"/> clamps them from below.</summary>
    public void Step(double[] values, IReadOnlyList<double> gradient, double lr, double weightDecay = 0, double floor = double.NegativeInfinity)
    {
        _step++;
        double c1 = 1 - Math.Pow(Beta1, _step), c2 = 1 - Math.Pow(Beta2, _step);
        for (int i = 0; i < values.Length; i++)
        {
            double g = gradient[i] + weightDecay * values[i];
            _m[i] = Beta1 * _m[i] + (1 - Beta1) * g;
            _v[i] = Beta2 * _v[i] + (1 - Beta2) * g * g;
            values[i] = Math.Max(floor, values[i] - lr * (_m[i] / c1) / (Math.Sqrt(_v[i] / c2) + Epsilon));
        }
    }

    public void Save(IDictionary<string, double[]> state)
    {
        state["adamM"] = _m.ToArray();
        state["adamV"] = _v.ToArray();
        state["adamStep"] = [_step];
    }

    public void Restore(IReadOnlyDictionary<string, double[]> state)
    {
        if (state.TryGetValue("adamM", out var m) && m.Length == _m.Length) m.CopyTo(_m, 0);
        if (state.TryGetValue("adamV", out var v) && v.Length == _v.Length) v.CopyTo(_v, 0);
        if (state.TryGetValue("adamStep", out var s) && s.Length == 1) _step = (long)s[0];
    }
}
