// The per-channel task gates and the β mixing of one gated layer (InterroGate, arXiv 2402.16848, Eqs. 2-3).
using InterroGate.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Gating;

/// <summary>
/// Gates and mixing of one gated layer ℓ with C output channels and T tasks.
/// <c>alpha</c> [T, C]: gate logits, G = 1[α &gt; 0] forward, sigmoid derivative backward (straight-through).
/// <c>beta</c> [T, C]: mixing logits, softmax over tasks per channel; absent on the last gated layer,
/// whose mix nobody reads (the heads read the gated task features).
/// </summary>
public sealed class GateLayer : nn.Module
{
    private readonly Parameter alpha;
    private readonly Parameter? beta;
    private readonly Tensor? gate_state; // with a hysteresis: the current hard gates [T, C], 1 or 0

    /// <param name="hysteresis">
    /// 0: G = 1[α &gt; 0]. h &gt; 0: a gate switches on only once α &gt; h and off only once α &lt; −h, and keeps its
    /// state in between (held in the buffer <c>gate_state</c>, updated by <see cref="Step"/> after each gate update), so
    /// a gate whose α wanders around 0 does not switch its channel's source at every step.
    /// </param>
    /// <param name="parts">How many of the paper's layers these gates stand for in the sparsity loss's mean over layers (a fused q, k, v projection: 3).</param>
    public GateLayer(int tasks, long channels, double alphaInit, bool hasMix, double hysteresis = 0, int parts = 1) : base(nameof(GateLayer))
    {
        if (hysteresis < 0 || !double.IsFinite(hysteresis)) throw new ArgumentOutOfRangeException(nameof(hysteresis), hysteresis, "≥ 0");
        if (parts < 1) throw new ArgumentOutOfRangeException(nameof(parts), parts, "≥ 1");
        Parts = parts;
        // Out of any dispose scope open around the construction (a Parameter made from a tensor in a scope would be the scope's).
        using (var init = Scalars.Of(alphaInit)) alpha = new Parameter(full(tasks, channels, init, dtype: float32).DetachFromDisposeScope());
        beta = hasMix ? new Parameter(zeros(tasks, channels, dtype: float32).DetachFromDisposeScope()) : null;
        gate_state = hysteresis > 0 ? full(tasks, channels, alphaInit > 0 ? Scalars.One : Scalars.Zero, dtype: float32).DetachFromDisposeScope() : null;
        Tasks = tasks;
        Channels = channels;
        Hysteresis = hysteresis;
        RegisterComponents();
        if (gate_state is not null && !named_buffers().Any(b => b.name == nameof(gate_state))) register_buffer(nameof(gate_state), gate_state);
    }

    public int Tasks { get; }
    public long Channels { get; }
    public double Hysteresis { get; }
    /// <summary>How many layers the gates count as in the sparsity loss's mean over layers (Eq. 4's L).</summary>
    public int Parts { get; }
    public Parameter Alpha => alpha;

    /// <summary>A faster computation of <see cref="Apply"/> where it applies (set when the model is built); null: tensor operations only.</summary>
    public IGateMixImplementation? Implementation { get; set; }
    public Parameter? Beta => beta;

    /// <summary>The hard gates [T, C] as 1 or 0 (float32): 1[α &gt; 0], or the hysteresis state.</summary>
    public Tensor Hard()
    {
        using var _ = no_grad();
        if (gate_state is not null) return gate_state.clone();
        using var on = alpha.gt(Scalars.Zero); // disposed here: read inside a forward pass (GatedEncoder.HardGates), nothing else stays
        return on.to(float32);
    }

    /// <summary>After a gate update: with a hysteresis, switches the gates whose α left the band [−h, h] on its far side.</summary>
    public void Step()
    {
        if (gate_state is null) return;
        using var _ = no_grad();
        using var band = Scalars.Of(Hysteresis);
        using var minusBand = Scalars.Of(-Hysteresis);
        using var on = alpha.gt(band);
        using var off = alpha.lt(minusBand);
        gate_state.masked_fill_(on, Scalars.One).masked_fill_(off, Scalars.Zero);
    }

    /// <summary>
    /// Sets the hard gates to <paramref name="gates"/>[task][channel]: a gate whose state changes gets α = ±(h + max(|α|, 0.01))
    /// on its new side of the band (h: the hysteresis, 0 without), so 1[α &gt; 0] and the hysteresis state agree with it.
    /// </summary>
    public void Force(bool[][] gates)
    {
        if (gates.Length != Tasks || gates.Any(g => g.Length != Channels))
            throw new ArgumentException($"Need [{Tasks}][{Channels}] gates.");
        using var _ = no_grad();
        var wanted = tensor(gates.SelectMany(g => g).ToArray(), dtype: @bool).view(Tasks, Channels).to(alpha.device);
        using var current = Hard().gt(Scalars.Half);
        var changed = wanted.ne(current);
        var magnitude = alpha.abs().Clamped(0.01, null).Shifted(Hysteresis);
        var value = where(wanted, magnitude, -magnitude);
        alpha.copy_(where(changed, value, alpha));
        gate_state?.copy_(wanted.to(float32));
    }

    /// <summary>
    /// Gate values [T, C]: exactly 0 or 1 in the forward pass, with σ'(α) as their gradient.
    /// With <paramref name="noise"/>.Temperature &gt; 0 in training, logistic noise is added to α and
    /// the sigmoid is sharpened by the temperature (Gumbel-sigmoid).
    /// </summary>
    public Tensor Gates(GateNoise noise)
    {
        Tensor logits = alpha;
        if (training && noise.Temperature > 0)
        {
            var u = rand_like(alpha).ClampedInPlace(1e-6, 1 - 1e-6);
            logits = (alpha.Plus(u.log()) - u.OneMinus().log()).DividedBy(noise.Temperature);
        }
        var soft = logits.sigmoid();
        var hard = gate_state is not null && !(training && noise.Temperature > 0) ? gate_state : logits.gt(Scalars.Zero).to(soft.dtype);
        return soft.Plus((hard - soft).detach());
    }

    /// <summary>
    /// Eq. 2 and Eq. 3: each task reads channel c from its own copy where G_t[c] = 1 and from the shared
    /// copy otherwise; the shared copy of the next layer reads the softmax(β)-weighted sum of the gated
    /// task features. Returns the gated task features and the mix (null on the last gated layer). On float32 CPU
    /// feature maps, <see cref="Implementation"/> (the fused kernel) computes the same where it applies. With
    /// <paramref name="preActivation"/> the features are taken before their ReLU and the ReLU is applied first (in the
    /// kernel, in the same pass).
    /// </summary>
    public (Tensor[] Gated, Tensor? Mixed) Apply(IReadOnlyList<Tensor> taskFeatures, Tensor shared, Tensor gates, bool preActivation = false)
    {
        var weights = beta?.softmax(0); // [T, C], sums to 1 over tasks
        var fast = Implementation is { } impl && impl.Applies(shared, taskFeatures) ? impl : null;
        if (preActivation && fast?.FusesActivation != true)
        {
            taskFeatures = taskFeatures.Select(f => nn.functional.relu(f)).ToArray();
            shared = nn.functional.relu(shared);
            preActivation = false;
        }
        if (fast is not null) return fast.Apply(taskFeatures, shared, gates, weights, preActivation);

        var gated = new Tensor[Tasks];
        var shape = ChannelShape(shared.dim());
        if (gates.dtype != shared.dtype) gates = gates.to(shared.dtype); // bfloat16 features under mixed precision (Runtime.Autocast)
        if (weights is not null && weights.dtype != shared.dtype) weights = weights.to(shared.dtype);
        for (int t = 0; t < Tasks; t++)
            gated[t] = shared.lerp(taskFeatures[t], gates[t].view(shape)); // ψ + G_t ⊙ (φ_t − ψ)
        if (weights is null) return (gated, null);

        Tensor mixed = gated[0] * weights[0].view(shape);
        for (int t = 1; t < Tasks; t++)
            mixed = mixed.addcmul(gated[t], weights[t].view(shape), Scalars.One);
        return (gated, mixed);
    }

    /// <summary>Broadcast shape of a per-channel vector against features of rank <paramref name="rank"/>.</summary>
    private long[] ChannelShape(long rank) => rank switch
    {
        4 => [1, Channels, 1, 1], // [B, C, H, W]
        3 => [1, 1, Channels],    // [B, N, C] (token features)
        2 => [1, Channels],       // [B, C]
        _ => throw new ArgumentException($"Gated features must have rank 2, 3 or 4, not {rank}."),
    };
}

/// <summary>Optional logistic (Gumbel-sigmoid) noise on the gate logits during training; 0 = off.</summary>
public sealed record GateNoise(double Temperature = 0)
{
    public static readonly GateNoise Off = new();
}
