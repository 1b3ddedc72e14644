// MGDA-UB: MGDA's min-norm weights computed from the gradients with respect to the shared representation, an upper bound that needs one backward pass through the encoder (Sener and Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018, Sec. 3.3).
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// With Z the shared representation (the encoder output all heads read), the per-task gradients ∇_Z L_t
/// (backward passes through the heads only) give the min-norm weights w (as <see cref="Mgda"/>); the network
/// then trains on Σ_t T·w_t L_t with one full backward pass. Needs an architecture with a single shared
/// representation (MTL); others are refused by name.
/// </summary>
public sealed class MgdaUb(bool normalize = false) : IBalancer
{
    public bool Normalize { get; } = normalize;
    public string Name => "mgda-ub";

    public double[] Backward(IReadOnlyList<Tensor> taskLosses, Tensor? regularizer, BalanceContext context)
    {
        int T = taskLosses.Count;
        var z = context.Representation?.Invoke()
            ?? throw new InvalidOperationException("MGDA-UB needs an architecture with one shared representation that every head reads (mtl); this one has none. Use mgda instead.");
        // [T, B·C·H·W], in float32 also where the representation is bfloat16 (training.precision=bf16)
        var g = stack(taskLosses.Select(l => autograd.grad([l], [z], retain_graph: true)[0].flatten().to(ScalarType.Float32)).ToArray());
        var w = Mgda.Weights(g, Normalize).Select(x => x * T).ToArray();
        return FixedWeights.WeightedBackward(taskLosses, regularizer, w);
    }
}
