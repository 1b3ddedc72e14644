using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Layers;

/// <summary>Convolution helpers with torchvision's defaults (no bias: a BatchNorm follows).</summary>
public static class Convolutions
{
    /// <summary>3×3 convolution with padding equal to the dilation, so stride 1 keeps the size.</summary>
    public static Conv2d Conv3x3(long inChannels, long outChannels, long stride = 1, long dilation = 1) =>
        nn.Conv2d(inChannels, outChannels, kernel_size: 3, stride: stride, padding: dilation, dilation: dilation, bias: false);

    /// <summary>1×1 convolution (projections and bottlenecks).</summary>
    public static Conv2d Conv1x1(long inChannels, long outChannels, long stride = 1) =>
        nn.Conv2d(inChannels, outChannels, kernel_size: 1, stride: stride, bias: false);

    /// <summary>Kaiming-normal (fan-out, ReLU) weights and unit BatchNorm, as torchvision's ResNet.</summary>
    public static void InitialiseResNetWeights(nn.Module module)
    {
        using var _ = no_grad();
        foreach (var (_, m) in module.named_modules())
        {
            switch (m)
            {
                case Conv2d conv:
                    nn.init.kaiming_normal_(conv.weight, mode: nn.init.FanInOut.FanOut, nonlinearity: nn.init.NonlinearityType.ReLU);
                    break;
                case BatchNorm2d bn:
                    nn.init.ones_(bn.weight);
                    nn.init.zeros_(bn.bias);
                    break;
            }
        }
    }
}
