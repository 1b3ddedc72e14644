// MGDA: the minimum-norm point of the convex hull of the task gradients, a common descent direction (Sener and Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018; Désidéri, 2012).
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// d = Σ w_i g_i with w = argmin_{w ∈ Δ} |Σ w_i g_i|² (Frank-Wolfe; closed form for two tasks). With
/// <c>normalize</c> the weights are solved for the gradients scaled to unit length (the "l2" normalisation
/// of the authors' code) and then applied, as there, to the raw gradients, so no task wins the min-norm
/// point merely by having the smallest gradient. The update is T·d (the scale of the uniform sum).
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
        var solverInput = normalize ? g / g.norm(1).Clamped(1e-12, null).unsqueeze(1) : g;
        return Simplex.MinNorm(Gram(solverInput));
    }
}
