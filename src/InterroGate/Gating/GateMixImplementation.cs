using static TorchSharp.torch;

namespace InterroGate.Gating;

/// <summary>
/// A faster way to compute a gated layer's Eqs. 2-3 than the tensor operations of <see cref="GateLayer.Apply"/>
/// (the fused CPU kernel in Runtime/), plugged into each gate layer once, when the model is built. It must give the
/// same values and gradients; where <see cref="Applies"/> is false the layer uses its tensor operations.
/// </summary>
public interface IGateMixImplementation
{
    /// <summary>Whether it computes these features (device, type, shape).</summary>
    bool Applies(Tensor shared, IReadOnlyList<Tensor> tasks);

    /// <summary>Whether it applies the unit's ReLU itself when given features before their ReLU.</summary>
    bool FusesActivation { get; }

    /// <summary>The gated task features and (with <paramref name="weights"/>) their mix, differentiable in every input.</summary>
    (Tensor[] Gated, Tensor? Mixed) Apply(IReadOnlyList<Tensor> tasks, Tensor shared, Tensor gates, Tensor? weights, bool preActivation);
}
