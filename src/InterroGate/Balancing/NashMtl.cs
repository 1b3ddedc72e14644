// Nash-MTL: the update that is the Nash bargaining solution among the tasks (Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022).
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// d = Σ α_i g_i where α &gt; 0 solves (G Gᵀ) α = 1/α elementwise, i.e. ⟨g_i, d⟩ = 1/α_i: each task's gain
/// is inversely proportional to its weight. α is the minimiser of the strictly convex ½αᵀAα − Σ log α_i
/// (A = GGᵀ), found here by damped Newton steps in task space (the paper uses a sequence of convex
/// programs; the fixed point is the same). A is scaled to unit mean diagonal for the solve and α scaled
/// back, so the solution is exact for any gradient scale. The update is d itself: its scale is set by the
/// bargaining condition, not by the gradients' length.
/// </summary>
public sealed class NashMtl : GradientBalancer
{
    public override string Name => "nash-mtl";

    public override (Tensor Direction, double[] Weights) Combine(Tensor g)
    {
        var alpha = Weights(g);
        return (Weighted(g, alpha), alpha);
    }

    /// <summary>α with (GGᵀ)α = 1/α for G [T, P]; tasks with a zero gradient get weight 0.</summary>
    public static double[] Weights(Tensor g)
    {
        var a = Gram(g);
        int T = a.GetLength(0);
        var active = Enumerable.Range(0, T).Where(i => a[i, i] > 1e-20).ToArray();
        var alpha = new double[T];
        if (active.Length == 0) return alpha;
        double scale = active.Average(i => a[i, i]);
        int n = active.Length;
        var s = new double[n, n];
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) s[i, j] = a[active[i], active[j]] / scale;

        var x = Enumerable.Repeat(1.0, n).ToArray();
        double Objective(double[] v) => 0.5 * Simplex.Dot(v, Simplex.Multiply(s, v)) - v.Sum(Math.Log);
        for (int it = 0; it < 100; it++)
        {
            var sx = Simplex.Multiply(s, x);
            var grad = sx.Select((v, i) => v - 1 / x[i]).ToArray();
            if (grad.Max(Math.Abs) < 1e-12) break;
            var hessian = (double[,])s.Clone();
            for (int i = 0; i < n; i++) hessian[i, i] += 1 / (x[i] * x[i]);
            var step = Solve(hessian, grad);
            // Damped: stay positive and decrease the objective.
            double t = 1, f = Objective(x);
            while (t > 1e-12)
            {
                var candidate = x.Select((v, i) => v - t * step[i]).ToArray();
                if (candidate.All(v => v > 0) && Objective(candidate) <= f) { x = candidate; break; }
                t /= 2;
            }
            if (t <= 1e-12) break;
        }
        for (int i = 0; i < n; i++) alpha[active[i]] = x[i] / Math.Sqrt(scale);
        return alpha;
    }

    /// <summary>Solves the symmetric positive definite system H y = b (Gaussian elimination; T is small).</summary>
    private static double[] Solve(double[,] h, double[] b)
    {
        int n = b.Length;
        var m = (double[,])h.Clone();
        var y = (double[])b.Clone();
        for (int k = 0; k < n; k++)
        {
            int pivot = k;
            for (int i = k + 1; i < n; i++) if (Math.Abs(m[i, k]) > Math.Abs(m[pivot, k])) pivot = i;
            if (pivot != k)
            {
                for (int j = 0; j < n; j++) (m[k, j], m[pivot, j]) = (m[pivot, j], m[k, j]);
                (y[k], y[pivot]) = (y[pivot], y[k]);
            }
            for (int i = k + 1; i < n; i++)
            {
                double f = m[i, k] / m[k, k];
                for (int j = k; j < n; j++) m[i, j] -= f * m[k, j];
                y[i] -= f * y[k];
            }
        }
        for (int k = n - 1; k >= 0; k--)
        {
            for (int j = k + 1; j < n; j++) y[k] -= m[k, j] * y[j];
            y[k] /= m[k, k];
        }
        return y;
    }
}
