// Small solvers over the probability simplex, for the gradient methods (no external solver).
namespace InterroGate.Balancing;

/// <summary>Optimisation over Δ = { w : w ≥ 0, Σ w = 1 } in task space (T is small).</summary>
public static class Simplex
{
    /// <summary>Euclidean projection of <paramref name="v"/> onto the simplex (sort-based, exact).</summary>
    public static double[] Project(IReadOnlyList<double> v)
    {
        int n = v.Count;
        var u = v.OrderByDescending(x => x).ToArray();
        double cumulative = 0, theta = 0;
        for (int i = 0; i < n; i++)
        {
            cumulative += u[i];
            double t = (cumulative - 1) / (i + 1);
            if (u[i] - t > 0) theta = t;
        }
        return v.Select(x => Math.Max(x - theta, 0)).ToArray();
    }

    /// <summary>
    /// The minimum-norm point of the convex hull of the vectors whose Gram matrix is <paramref name="a"/>:
    /// argmin_{w ∈ Δ} wᵀ A w, by Frank-Wolfe with exact line search (the solver of Sener and Koltun, 2018),
    /// then projected gradient steps from its result (Frank-Wolfe alone converges slowly when the
    /// minimum lies on a face of the simplex). Two vectors are solved in closed form.
    /// </summary>
    public static double[] MinNorm(double[,] a, int iterations = 250, double tolerance = 1e-10)
    {
        int n = a.GetLength(0);
        if (n == 1) return [1.0];
        if (n == 2) return TwoPoint(a[0, 0], a[0, 1], a[1, 1]);
        var w = Enumerable.Repeat(1.0 / n, n).ToArray();
        for (int it = 0; it < iterations; it++)
        {
            var aw = Multiply(a, w);
            int best = 0;
            for (int i = 1; i < n; i++) if (aw[i] < aw[best]) best = i;
            // Line search between the current point (Gram entries from w) and vertex `best`.
            double wAw = Dot(w, aw), vAw = aw[best], vAv = a[best, best];
            var gamma = TwoPoint(vAv, vAw, wAw)[0]; // weight on the vertex
            if (gamma < tolerance) break;
            for (int i = 0; i < n; i++) w[i] *= 1 - gamma;
            w[best] += gamma;
        }
        return Minimise(v => Dot(v, Multiply(a, v)), v => Multiply(a, v).Select(x => 2 * x).ToArray(), n, iterations: 5000, start: w);
    }

    /// <summary>argmin over γ ∈ [0, 1] of |γ x + (1−γ) y|² given xᵀx, xᵀy, yᵀy; returns [γ, 1−γ].</summary>
    public static double[] TwoPoint(double xx, double xy, double yy)
    {
        double denominator = xx - 2 * xy + yy;
        double gamma = denominator <= 1e-20 ? 0.5 : Math.Clamp((yy - xy) / denominator, 0, 1);
        return [gamma, 1 - gamma];
    }

    /// <summary>
    /// Minimises a convex function over the simplex by projected gradient descent with backtracking
    /// (step halved until the objective decreases).
    /// </summary>
    public static double[] Minimise(Func<double[], double> f, Func<double[], double[]> gradient, int n, int iterations = 500, double[]? start = null)
    {
        var w = start?.ToArray() ?? Enumerable.Repeat(1.0 / n, n).ToArray();
        double value = f(w), step = 1.0;
        for (int it = 0; it < iterations && step > 1e-12; it++)
        {
            var grad = gradient(w);
            while (step > 1e-12)
            {
                var candidate = Project(w.Select((x, i) => x - step * grad[i]).ToArray());
                double cv = f(candidate);
                if (cv < value - 1e-15) { (w, value) = (candidate, cv); step *= 1.5; break; }
                step /= 2;
            }
        }
        return w;
    }

    internal static double[] Multiply(double[,] a, double[] w)
    {
        int n = w.Length;
        var r = new double[n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) r[i] += a[i, j] * w[j];
        return r;
    }

    internal static double Dot(double[] x, double[] y) => x.Select((v, i) => v * y[i]).Sum();
}
