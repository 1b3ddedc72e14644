// MGDA: the minimum-norm point of the convex hull of the task gradients, a common descent direction (Sener and Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018; Désidéri, 2012).
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// d = Σ w_i g_i with w = argmin_{w ∈ Δ} |Σ w_i g_i|² (Frank-Wolfe; closed form for two tasks). With
/// <c>normalize</c> the gradients are scaled to unit length first (the paper's "l2" normalisation), and
/// the weights are applied to the raw gradients. The update is T·d (the scale of the uniform sum).
/// </summary>
public sealed class Mgda(bool normalize = false) : GradientBalancer
{
    public bool Normalize { get; } = normalize;
    public override string Name => "mgda";

    public override (Tensor Direction, double[] Weights) Combine(Tensor g)
    {
        int T = (int)g.shape[0];
        var w = Weights(g, Normalize);
        var scaled = w.Select(x => x * T).ToArray();
        return (Weighted(g, scaled), scaled);
    }

    /// <summary>The min-norm weights (summing to 1) of the gradients G [T, P], or of their unit-length versions.</summary>
    public static double[] Weights(Tensor g, bool normalize)
    {
        var norms = g.norm(1).clamp_min(1e-12).unsqueeze(1); // [T, 1]
        var solverInput = normalize ? g / norms : g;
        var w = Simplex.MinNorm(Gram(solverInput));
        if (!normalize) return w;
        // The solution's weights refer to g_i/|g_i|; expressed on the raw gradients they become w_i/|g_i|, renormalised.
        var n = norms.squeeze(1).to(float64).cpu().data<double>().ToArray();
        var raw = w.Select((x, i) => x / n[i]).ToArray();
        double sum = raw.Sum();
        return raw.Select(x => x / sum).ToArray();
    }
}
