using static TorchSharp.torch;

namespace InterroGate.Backbones;

/// <summary>
/// The shape of an encoder, whatever its family (<see cref="ResNetSpec"/>, <see cref="HRNetSpec"/>): what the
/// architectures need to build one encoder per branch and the heads that read it.
/// </summary>
public interface IEncoderSpec
{
    /// <summary>Registry-style name (resnet18, hrnet18, ...).</summary>
    string Name { get; }

    /// <summary>Channels of the features the heads read.</summary>
    long OutChannels { get; }

    /// <summary>Input pixels per feature pixel along each axis.</summary>
    int OutputStride { get; }

    /// <summary>A freshly initialised plain encoder reading <paramref name="inChannels"/>-channel images.</summary>
    nn.Module<Tensor, Tensor> CreateEncoder(long inChannels);
}
