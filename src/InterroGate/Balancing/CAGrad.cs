// CAGrad: the update that best improves the worst task within a ball around the average gradient (Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021).
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// With g₀ the average gradient, CAGrad solves max_d min_i ⟨g_i, d⟩ subject to |d − g₀| ≤ c|g₀|. Its dual
/// is min over w in the simplex of F(w) = g_wᵀg₀ + c|g₀|·|g_w| with g_w = Σ w_i g_i, solved here in task space
/// (Gram matrix) by projected gradient descent; then d = g₀ + (c|g₀| / |g_w|) g_w, divided by 1 + c² as in the
/// paper's experiments. c = 0 gives the average gradient. The update is T·d (the scale of the uniform sum).
/// </summary>
public sealed class CAGrad(double c) : GradientBalancer
{
    public double C { get; } = c >= 0 && double.IsFinite(c) ? c : throw new ArgumentOutOfRangeException(nameof(c), c, "CAGrad's c must be ≥ 0.");
    public override string Name => "cagrad";

    public override (Tensor Direction, double[] Weights) Combine(Tensor g)
    {
        int T = (int)g.shape[0];
        var (d, w) = Direction(g, C);
        return (d.Times(T), w.Select(x => x * T).ToArray());
    }

    /// <summary>CAGrad's d for G [T, P] (on the scale of the average gradient) and the weights of G it amounts to.</summary>
    public static (Tensor D, double[] Weights) Direction(Tensor g, double c)
    {
        int T = (int)g.shape[0];
        var a = Gram(g);
        // |g₀|² = (1/T²) Σ_ij A_ij; g_wᵀg₀ = (1/T) Σ_ij w_i A_ij; |g_w|² = wᵀAw.
        double g0Norm = 0;
        for (int i = 0; i < T; i++) for (int j = 0; j < T; j++) g0Norm += a[i, j];
        g0Norm = Math.Sqrt(Math.Max(g0Norm, 0)) / T;
        double radius = c * g0Norm;
        var aMean = Enumerable.Range(0, T).Select(i => Enumerable.Range(0, T).Sum(j => a[i, j]) / T).ToArray(); // (A·1/T)_i
        var mean = Enumerable.Repeat(1.0 / T, T).ToArray();
        if (radius <= 0) return (Weighted(g, mean), mean);

        double F(double[] w) => Simplex.Dot(w, aMean) + radius * Math.Sqrt(Math.Max(Simplex.Dot(w, Simplex.Multiply(a, w)), 1e-20));
        double[] Grad(double[] w)
        {
            var aw = Simplex.Multiply(a, w);
            double norm = Math.Sqrt(Math.Max(Simplex.Dot(w, aw), 1e-20));
            return aMean.Select((x, i) => x + radius * aw[i] / norm).ToArray();
        }
        var wStar = Simplex.Minimise(F, Grad, T);
        double gwNorm = Math.Sqrt(Math.Max(Simplex.Dot(wStar, Simplex.Multiply(a, wStar)), 1e-20));
        double lambda = radius / gwNorm;
        // d = (g₀ + λ g_w) / (1 + c²) = Σ_i ((1/T + λ w_i) / (1 + c²)) g_i
        var weights = wStar.Select(x => (1.0 / T + lambda * x) / (1 + c * c)).ToArray();
        return (Weighted(g, weights), weights);
    }
}
