// The sparsity regulariser on the gates (InterroGate, arXiv 2402.16848, Eq. 4) and our variants.
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Gating;

/// <summary>How the gate sparsity loss is formed.</summary>
public enum SparsityKind
{
    /// <summary>Eq. 4: mean over tasks of max(0, (1/L) Σ_ℓ mean_c σ(α_t^ℓ) − τ_t).</summary>
    Hinge,
    /// <summary>τ = 0: the paper's uniform L1 ablation on σ(α).</summary>
    L1,
    /// <summary>Hinge with each layer weighted by its share of the FLOPs: τ_t becomes a compute budget.</summary>
    Flops,
    /// <summary>
    /// Hinge with each layer weighted by its share of the channels: the usage is the mean of σ(α) over every gated
    /// channel, τ_t a fraction of all channels, and the push on one gate, λs·σ'(α)/(T·Σ_ℓ C_ℓ), the same in every layer
    /// (Eq. 4's is λs·σ'(α)/(T·L·C_ℓ): larger in narrow layers). An option, not the paper's loss.
    /// </summary>
    Channels,
}

public static class SparsityLoss
{
    /// <summary>
    /// L_s for gate logits <paramref name="alphas"/> (one [T, C_ℓ] tensor per gated layer), per-task budgets
    /// <paramref name="tau"/> and per-layer weights <paramref name="layerWeights"/> (used for
    /// <see cref="SparsityKind.Flops"/>; they are normalised to sum to 1).
    /// </summary>
    /// <param name="taskWeights">Optional weight of each task's term (a budget's adapted λ per task): mean over tasks of w_t·max(0, u_t − τ_t).</param>
    /// <param name="layerParts">
    /// How many layers each gated layer stands for in the uniform mean (Eq. 4's 1/L; a fused q, k, v projection's gates
    /// are three layers' gates): its weight is parts/Σ parts instead of 1/L. Null: one each.
    /// </param>
    public static Tensor Compute(IReadOnlyList<Tensor> alphas, IReadOnlyList<double> tau, SparsityKind kind, IReadOnlyList<double>? layerWeights = null,
        IReadOnlyList<double>? taskWeights = null, IReadOnlyList<int>? layerParts = null)
    {
        if (alphas.Count == 0) throw new ArgumentException("No gated layers.");
        int tasks = (int)alphas[0].shape[0];
        if (tau.Count != tasks) throw new ArgumentException($"Need one τ per task ({tasks}), got {tau.Count}.");

        double[] w = LayerWeights(alphas, kind, layerWeights, layerParts);

        var perLayer = stack(alphas.Select(a => a.sigmoid().mean([1])).ToArray()); // [L, T]
        var usage = (perLayer * Constant(w, perLayer).unsqueeze(1)).sum(dim: 0); // [T]
        var budget = kind == SparsityKind.L1
            ? zeros_like(usage)
            : Constant(tau.ToArray(), usage);
        var hinge = nn.functional.relu(usage - budget);
        if (taskWeights is not null)
        {
            if (taskWeights.Count != tasks) throw new ArgumentException($"Need one task weight per task ({tasks}), got {taskWeights.Count}.");
            hinge = hinge * Constant(taskWeights.ToArray(), hinge);
        }
        return hinge.mean();
    }

    /// <summary>
    /// ∂L_s/∂α per gated layer ([T, C_ℓ] each), in closed form: (1/T) · 1[u_t &gt; τ_t] · w_ℓ / C_ℓ · σ'(α).
    /// The same for every channel of a layer but for σ'(α): the uniform push the task gradient competes with
    /// (docs/method.md, "The gate regime"). Multiply by λ_s for the push on the gates.
    /// </summary>
    public static Tensor[] Gradient(IReadOnlyList<Tensor> alphas, IReadOnlyList<double> tau, SparsityKind kind, IReadOnlyList<double>? layerWeights = null,
        IReadOnlyList<double>? taskWeights = null, IReadOnlyList<int>? layerParts = null)
    {
        using var _ = no_grad();
        int tasks = (int)alphas[0].shape[0];
        double[] w = LayerWeights(alphas, kind, layerWeights, layerParts);
        // Every layer's gates side by side ([T, Σ C]), so that the cost in tensor operations does not grow with the
        // number of layers; each gate's weight w_ℓ/C_ℓ, then one view per layer.
        var widths = alphas.Select(a => a.shape[1]).ToArray();
        var perChannel = alphas.SelectMany((a, l) => Enumerable.Repeat(w[l] / a.shape[1], (int)a.shape[1])).ToArray();
        var sig = cat(alphas.Select(a => a.detach()).ToArray(), 1).sigmoid();
        var weight = Constant(perChannel, sig, float64);
        var usage = (sig.to(float64) * weight).sum(1); // [T]
        var budget = kind == SparsityKind.L1 ? zeros_like(usage) : Constant(tau.ToArray(), usage);
        var active = usage.gt(budget).to(sig.dtype).unsqueeze(1).DividedBy(tasks); // [T, 1]
        if (taskWeights is not null) active = active * Constant(taskWeights.ToArray(), active).unsqueeze(1);
        var push = active * (sig * sig.OneMinus()) * weight.to(sig.dtype);
        return push.split(widths, 1);
    }

    /// <summary>
    /// Host values as a tensor of <paramref name="like"/>'s dtype (or <paramref name="dtype"/>) on its device. The copy
    /// to a GPU is asynchronous: a blocking copy from host memory waits for everything queued on the device, which at
    /// every step would stall the GPU's queue of launches.
    /// </summary>
    private static Tensor Constant(double[] values, Tensor like, ScalarType? dtype = null)
    {
        using var host = tensor(values, dtype: dtype ?? like.dtype);
        return host.to(like.device, non_blocking: true);
    }

    /// <summary>Each layer's weight in the usage (summing to 1): uniform (Eq. 4, a layer of several parts counting as that many), by FLOPs, or by channels.</summary>
    private static double[] LayerWeights(IReadOnlyList<Tensor> alphas, SparsityKind kind, IReadOnlyList<double>? layerWeights, IReadOnlyList<int>? layerParts) => kind switch
    {
        SparsityKind.Flops => Normalise(layerWeights ?? throw new ArgumentException("FLOPs sparsity needs per-layer weights."), alphas.Count),
        SparsityKind.Channels => Normalise(alphas.Select(a => (double)a.shape[1]).ToArray(), alphas.Count),
        _ when layerParts is not null => Normalise(layerParts.Select(p => (double)p).ToArray(), alphas.Count),
        _ => Enumerable.Repeat(1.0 / alphas.Count, alphas.Count).ToArray(),
    };

    private static double[] Normalise(IReadOnlyList<double> weights, int layers)
    {
        if (weights.Count != layers) throw new ArgumentException($"Need one weight per gated layer ({layers}), got {weights.Count}.");
        double sum = weights.Sum();
        if (!(sum > 0) || weights.Any(x => x < 0)) throw new ArgumentException("Layer weights must be ≥ 0 with a positive sum.");
        return weights.Select(x => x / sum).ToArray();
    }
}
