using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Heads;

/// <summary>Global average pooling and one linear layer (torchvision's classifier, field `fc`).</summary>
public sealed class ClassificationHead : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc;

    public ClassificationHead(long inChannels, long outputs) : base(nameof(ClassificationHead))
    {
        fc = nn.Linear(inChannels, outputs);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) =>
        fc.call(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)); // [B, C, H, W] -> [B, C] -> [B, K]
}
