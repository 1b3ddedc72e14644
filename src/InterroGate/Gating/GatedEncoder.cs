using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Gating;

/// <summary>
/// What <see cref="Architectures.InterroGateModel"/> needs of a gated encoder, whatever its backbone family
/// (<see cref="GatedResNet"/>, <see cref="GatedHRNet"/>): T task copies and one shared copy of every layer
/// joined by per-channel gates. Its forward (an <c>nn.Module&lt;Tensor, Tensor[]&gt;</c>) returns the gated
/// features each task's head reads, one per task.
/// </summary>
public interface IGatedEncoder
{
    /// <summary>Number of tasks (the branches but the shared one).</summary>
    int Tasks { get; }

    /// <summary>Channels of the images the encoder reads.</summary>
    long InChannels { get; }

    /// <summary>Channels of the gated features each head reads.</summary>
    long OutChannels { get; }

    /// <summary>The gated layers in forward order.</summary>
    IReadOnlyList<GateLayer> GateLayers { get; }

    /// <summary>Gumbel-sigmoid noise on the gates during training.</summary>
    GateNoise Noise { get; set; }

    /// <summary>MACs of each gated layer in one branch, for FLOPs-weighted sparsity.</summary>
    IReadOnlyList<double> GatedLayerMacs();

    /// <summary>The shared branch's parameters (what every task's loss reaches).</summary>
    IEnumerable<Parameter> SharedParameters();

    /// <summary>Cost of the encoder once pruned to <paramref name="pattern"/> (what each gated layer keeps).</summary>
    PrunedCost PredictPrunedCost(SharingPattern pattern);
}
