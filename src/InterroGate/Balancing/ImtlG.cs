// IMTL-G: the update whose projections onto every task's unit gradient are equal (Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021).
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// d = Σ α_i g_i with Σ α_i = 1 such that ⟨d, u_i⟩ is the same for all tasks, u_i = g_i / |g_i|. With
/// D = [g₁ − g_i]ᵢ₌₂..T and U = [u₁ − u_i]ᵢ₌₂..T (rows), α₂..T = g₁Uᵀ (DUᵀ)⁻¹ and α₁ = 1 − Σ α₂..T. Solved in
/// task space from the Gram matrices. The update is T·d (the scale of the uniform sum).
/// </summary>
public sealed class ImtlG : GradientBalancer
{
    public override string Name => "imtl-g";

    public override (Tensor Direction, double[] Weights) Combine(Tensor g)
    {
        int T = (int)g.shape[0];
        var alpha = Weights(g).Select(x => x * T).ToArray();
        return (Weighted(g, alpha), alpha);
    }

    /// <summary>IMTL-G's α (summing to 1) for the gradients G [T, P].</summary>
    public static double[] Weights(Tensor g)
    {
        int T = (int)g.shape[0];
        if (T == 1) return [1.0];
        var u = g / g.norm(1).Clamped(1e-12, null).unsqueeze(1);
        var d = g[0].unsqueeze(0) - g.narrow(0, 1, T - 1);   // [T-1, P]
        var uu = u[0].unsqueeze(0) - u.narrow(0, 1, T - 1);  // [T-1, P]
        var lhs = d.matmul(uu.t()).to(float64);              // D Uᵀ [T-1, T-1]
        var rhs = g[0].unsqueeze(0).matmul(uu.t()).to(float64); // g₁ Uᵀ [1, T-1]
        // α (row) · (D Uᵀ) = g₁ Uᵀ. The pseudo-inverse keeps degenerate cases (a zero or repeated gradient) finite.
        var rest = rhs.matmul(linalg.pinv(lhs)).squeeze(0).cpu().data<double>().ToArray();
        return new[] { 1 - rest.Sum() }.Concat(rest).ToArray();
    }
}
