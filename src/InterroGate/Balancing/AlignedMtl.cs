// Aligned-MTL: align the task gradients into an orthogonal, equal-norm set before summing (Senushkin et al., "Independent Component Alignment for Multi-Task Learning", CVPR 2023).
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// With the Gram matrix GGᵀ = VΛVᵀ, the aligned gradients are Ĝ = BG, B = √λ_min · V Λ^{-1/2} Vᵀ, so that
/// ĜĜᵀ = λ_min I: orthogonal and of equal length (the condition number of the aligned system is 1). Only
/// eigenvalues above 1e-10 of the largest count (a rank-deficient G keeps its rank, λ_min is the smallest
/// of those). The update is Σ_i ĝ_i (the scale of the uniform sum), i.e. G weighted by the column sums of B.
/// </summary>
public sealed class AlignedMtl : GradientBalancer
{
    public override string Name => "aligned-mtl";

    public override (Tensor Direction, double[] Weights) Combine(Tensor g)
    {
        var w = Weights(g);
        return (Weighted(g, w), w);
    }

    /// <summary>The alignment matrix B [T, T] (rows map the task gradients to the aligned ones).</summary>
    public static Tensor Alignment(Tensor g)
    {
        var m = g.matmul(g.t()).to(float64);
        var (lambda, v) = linalg.eigh(m); // ascending eigenvalues
        double top = lambda[-1].item<double>();
        if (!(top > 0)) return zeros_like(m);
        using var floor = Scalars.Of(top * 1e-10);
        var keep = lambda.gt(floor);
        double lambdaMin = lambda.masked_select(keep).min().item<double>();
        var inverseRoot = where(keep, lambda.Clamped(1e-300, null).rsqrt(), zeros_like(lambda)); // Λ^{-1/2} on the kept part
        return v.matmul(diag(inverseRoot)).matmul(v.t()).Times(Math.Sqrt(lambdaMin));
    }

    /// <summary>Weights w with Σ_i ĝ_i = Σ_j w_j g_j (w = 1ᵀB).</summary>
    public static double[] Weights(Tensor g) => Alignment(g).sum(dim: 0).cpu().data<double>().ToArray();
}
