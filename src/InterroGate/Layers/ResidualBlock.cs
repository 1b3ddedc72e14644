using InterroGate.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Layers;

/// <summary>
/// A residual block seen as a sequence of units, each a conv + BN + ReLU; the last unit adds the
/// shortcut before its ReLU. Exposing the units lets a gated network interleave its gates between
/// them while every branch keeps exactly the parameters (and names) of a plain block.
/// </summary>
public abstract class ResidualBlock : nn.Module<Tensor, Tensor>
{
    protected ResidualBlock(string name) : base(name) { }

    /// <summary>Number of conv+BN(+ReLU) units.</summary>
    public abstract int Units { get; }

    /// <summary>Output channels of the block.</summary>
    public abstract long OutChannels { get; }

    /// <summary>Convolution of unit <paramref name="k"/>.</summary>
    public abstract Conv2d ConvOf(int k);

    /// <summary>BatchNorm of unit <paramref name="k"/>.</summary>
    public abstract BatchNorm2d NormOf(int k);

    /// <summary>The projection on the shortcut (conv, BN), or null for an identity shortcut.</summary>
    public abstract Sequential? Downsample { get; }

    /// <summary>
    /// Unit <paramref name="k"/> applied to <paramref name="h"/>; the last unit also adds the shortcut
    /// of <paramref name="blockInput"/> before its ReLU.
    /// </summary>
    /// <remarks>
    /// Here and below, the intermediate tensors are released as soon as they are read (autograd keeps what the
    /// backward pass needs): a value no later operation reads is then freed at once, as in PyTorch, and not held
    /// until the training step's end.
    /// </remarks>
    public Tensor Unit(int k, Tensor h, Tensor blockInput)
    {
        using var pre = PreActivation(k, h, blockInput);
        return nn.functional.relu(pre);
    }

    /// <summary><see cref="Unit"/> without its final ReLU (for a consumer that applies the ReLU itself).</summary>
    public Tensor PreActivation(int k, Tensor h, Tensor blockInput)
    {
        Tensor y;
        using (var conv = ConvOf(k).call(h)) y = BatchNorms.Call(NormOf(k), conv);
        if (k == Units - 1)
        {
            using var normed = y;
            using var projected = Downsample?.call(blockInput);
            y = normed.Plus(projected ?? blockInput);
        }
        return y;
    }

    public override Tensor forward(Tensor x)
    {
        var h = x;
        for (int k = 0; k < Units; k++)
        {
            var next = Unit(k, h, x);
            if (!ReferenceEquals(h, x)) h.Dispose();
            h = next;
        }
        return h;
    }

    /// <summary>torchvision's shortcut projection: 1×1 conv with the block's stride, then BN.</summary>
    protected static Sequential? MakeDownsample(long inChannels, long outChannels, long stride) =>
        stride != 1 || inChannels != outChannels
            ? new Chain(Convolutions.Conv1x1(inChannels, outChannels, stride), nn.BatchNorm2d(outChannels))
            : null;
}

/// <summary>Two 3×3 convolutions (ResNet-18/34 and the CIFAR ResNet-20).</summary>
public sealed class BasicBlock : ResidualBlock
{
    public const int Expansion = 1;

    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly Conv2d conv2;
    private readonly BatchNorm2d bn2;
    private readonly Sequential? downsample;

    /// <param name="dilation">Dilation of conv1.</param>
    /// <param name="conv2Dilation">Dilation of conv2; null: <paramref name="dilation"/>. In the first block of a stage
    /// dilated instead of strided, conv1 (the would-be strided convolution) keeps the previous stage's dilation and conv2
    /// takes the stage's, as the dilated ResNets of dense multi-task work do.</param>
    public BasicBlock(long inChannels, long planes, long stride = 1, long dilation = 1, long? conv2Dilation = null) : base(nameof(BasicBlock))
    {
        conv1 = Convolutions.Conv3x3(inChannels, planes, stride, dilation);
        bn1 = nn.BatchNorm2d(planes);
        conv2 = Convolutions.Conv3x3(planes, planes, 1, conv2Dilation ?? dilation);
        bn2 = nn.BatchNorm2d(planes);
        downsample = MakeDownsample(inChannels, planes, stride);
        OutChannels = planes;
        RegisterComponents();
    }

    public override int Units => 2;
    public override long OutChannels { get; }
    public override Sequential? Downsample => downsample;
    public override Conv2d ConvOf(int k) => k switch { 0 => conv1, 1 => conv2, _ => throw new ArgumentOutOfRangeException(nameof(k)) };
    public override BatchNorm2d NormOf(int k) => k switch { 0 => bn1, 1 => bn2, _ => throw new ArgumentOutOfRangeException(nameof(k)) };
}

/// <summary>1×1 reduce, 3×3, 1×1 expand (×4), as torchvision's ResNet-50 (stride on the 3×3).</summary>
public sealed class Bottleneck : ResidualBlock
{
    public const int Expansion = 4;

    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly Conv2d conv2;
    private readonly BatchNorm2d bn2;
    private readonly Conv2d conv3;
    private readonly BatchNorm2d bn3;
    private readonly Sequential? downsample;

    public Bottleneck(long inChannels, long planes, long stride = 1, long dilation = 1) : base(nameof(Bottleneck))
    {
        long width = planes;
        conv1 = Convolutions.Conv1x1(inChannels, width);
        bn1 = nn.BatchNorm2d(width);
        conv2 = Convolutions.Conv3x3(width, width, stride, dilation);
        bn2 = nn.BatchNorm2d(width);
        conv3 = Convolutions.Conv1x1(width, planes * Expansion);
        bn3 = nn.BatchNorm2d(planes * Expansion);
        downsample = MakeDownsample(inChannels, planes * Expansion, stride);
        OutChannels = planes * Expansion;
        RegisterComponents();
    }

    public override int Units => 3;
    public override long OutChannels { get; }
    public override Sequential? Downsample => downsample;
    public override Conv2d ConvOf(int k) => k switch { 0 => conv1, 1 => conv2, 2 => conv3, _ => throw new ArgumentOutOfRangeException(nameof(k)) };
    public override BatchNorm2d NormOf(int k) => k switch { 0 => bn1, 1 => bn2, 2 => bn3, _ => throw new ArgumentOutOfRangeException(nameof(k)) };
}
