using InterroGate.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Backbones;

/// <summary>Which residual block a ResNet stacks.</summary>
public enum BlockType { Basic, Bottleneck }

/// <summary>
/// The shape of a ResNet encoder: block type, blocks per stage, stage widths, stem.
/// <see cref="CifarStem"/>: 3×3 stride-1 stem without pooling (ResNet-20 on 32×32 images);
/// otherwise torchvision's 7×7 stride-2 stem and 3×3 max pool.
/// <see cref="Dilate"/>: per stage after the first, replace its stride by dilation (output stride 16 or 8).
/// </summary>
public sealed record ResNetSpec(
    string Name,
    BlockType Block,
    IReadOnlyList<int> Layers,
    IReadOnlyList<long> Widths,
    long StemChannels,
    bool CifarStem,
    IReadOnlyList<bool> Dilate) : IEncoderSpec
{
    /// <summary>Input pixels per output pixel along each axis: the stem's stride (1, or 4 with its max pool) times 2 per undilated stage after the first.</summary>
    public int OutputStride => (CifarStem ? 1 : 4) * (1 << Dilate.Count(d => !d));

    /// <summary>A plain <see cref="ResNet"/> of this shape.</summary>
    public nn.Module<Tensor, Tensor> CreateEncoder(long inChannels) => new ResNet(this, inChannels);

    /// <summary>Channels of the encoder's output.</summary>
    public long OutChannels => Widths[^1] * (Block == BlockType.Bottleneck ? Bottleneck.Expansion : BasicBlock.Expansion);

    /// <summary>CIFAR ResNet-20: three stages of three BasicBlocks, widths 16/32/64 times <paramref name="width"/>.</summary>
    public static ResNetSpec ResNet20(double width = 1.0)
    {
        if (!(width > 0)) throw new ArgumentOutOfRangeException(nameof(width), width, "The width multiplier must be > 0.");
        long W(long c) => Math.Max(1, (long)Math.Round(c * width));
        return new("resnet20", BlockType.Basic, [3, 3, 3], [W(16), W(32), W(64)], W(16), CifarStem: true, Dilate: [false, false]);
    }

    public static ResNetSpec ResNet18(IReadOnlyList<bool>? dilate = null) =>
        new("resnet18", BlockType.Basic, [2, 2, 2, 2], [64, 128, 256, 512], 64, false, dilate ?? [false, false, false]);

    public static ResNetSpec ResNet34(IReadOnlyList<bool>? dilate = null) =>
        new("resnet34", BlockType.Basic, [3, 4, 6, 3], [64, 128, 256, 512], 64, false, dilate ?? [false, false, false]);

    public static ResNetSpec ResNet50(IReadOnlyList<bool>? dilate = null) =>
        new("resnet50", BlockType.Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], 64, false, dilate ?? [false, false, false]);

    /// <summary>Dilation flags for an output stride of 32 (none), 16 or 8, as DeepLab uses.</summary>
    public static IReadOnlyList<bool> DilationForOutputStride(int outputStride) => outputStride switch
    {
        32 => [false, false, false],
        16 => [false, false, true],
        8 => [false, true, true],
        _ => throw new ArgumentOutOfRangeException(nameof(outputStride), outputStride, "Output stride must be 8, 16 or 32."),
    };
}

/// <summary>
/// A single-stream ResNet encoder (no classifier): torchvision's parameter names
/// (conv1, bn1, layer1.0.conv1, layer1.0.downsample.0, ...), so torchvision weights load by name.
/// </summary>
public sealed class ResNet : nn.Module<Tensor, Tensor>, IPlannedEncoder
{
    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly MaxPool2d? maxpool;
    private readonly Sequential? layer1;
    private readonly Sequential? layer2;
    private readonly Sequential? layer3;
    private readonly Sequential? layer4;
    private readonly ResidualBlock[] _blocks;

    public ResNet(ResNetSpec spec, long inChannels = 3) : base(spec.Name)
    {
        if (inChannels <= 0) throw new ArgumentOutOfRangeException(nameof(inChannels), inChannels, "Input channels must be > 0.");
        if (spec.Layers.Count is < 1 or > 4 || spec.Widths.Count != spec.Layers.Count)
            throw new ArgumentException($"A ResNet has 1 to 4 stages with one width each; got {spec.Layers.Count} stages and {spec.Widths.Count} widths.");
        if (spec.Dilate.Count != spec.Layers.Count - 1)
            throw new ArgumentException($"Dilation needs one flag per stage after the first ({spec.Layers.Count - 1}), got {spec.Dilate.Count}.");
        Spec = spec;
        InChannels = inChannels;

        conv1 = spec.CifarStem
            ? Convolutions.Conv3x3(inChannels, spec.StemChannels)
            : nn.Conv2d(inChannels, spec.StemChannels, kernel_size: 7, stride: 2, padding: 3, bias: false);
        bn1 = nn.BatchNorm2d(spec.StemChannels);
        maxpool = spec.CifarStem ? null : nn.MaxPool2d(kernel_size: 3, stride: 2, padding: 1);

        long inplanes = spec.StemChannels, dilation = 1;
        var stages = new List<Sequential>();
        var blocks = new List<ResidualBlock>();
        for (int s = 0; s < spec.Layers.Count; s++)
        {
            long stride = s == 0 ? 1 : 2;
            long previousDilation = dilation;
            if (s > 0 && spec.Dilate[s - 1]) { dilation *= stride; stride = 1; }
            var stage = new List<ResidualBlock>();
            for (int b = 0; b < spec.Layers[s]; b++)
            {
                ResidualBlock block = spec.Block == BlockType.Basic
                    ? new BasicBlock(inplanes, spec.Widths[s], b == 0 ? stride : 1, b == 0 ? previousDilation : dilation, conv2Dilation: dilation)
                    : new Bottleneck(inplanes, spec.Widths[s], b == 0 ? stride : 1, b == 0 ? previousDilation : dilation);
                inplanes = block.OutChannels;
                stage.Add(block);
            }
            blocks.AddRange(stage);
            stages.Add(new Chain(stage.Select(x => (nn.Module<Tensor, Tensor>)x).ToArray()));
        }
        layer1 = stages[0];
        layer2 = stages.Count > 1 ? stages[1] : null;
        layer3 = stages.Count > 2 ? stages[2] : null;
        layer4 = stages.Count > 3 ? stages[3] : null;
        _blocks = blocks.ToArray();
        RegisterComponents();
        Convolutions.InitialiseResNetWeights(this);
    }

    public ResNetSpec Spec { get; }
    public long InChannels { get; }
    public long OutChannels => Spec.OutChannels;
    public Conv2d StemConv => conv1;
    public BatchNorm2d StemNorm => bn1;
    public MaxPool2d? StemPool => maxpool;

    /// <summary>The residual blocks in forward order.</summary>
    public IReadOnlyList<ResidualBlock> Blocks => _blocks;

    /// <summary>The stem's conv + BN + ReLU (before any pooling).</summary>
    public Tensor StemUnit(Tensor x)
    {
        using var pre = StemPreActivation(x);
        return nn.functional.relu(pre);
    }

    /// <summary><see cref="StemUnit"/> without its ReLU.</summary>
    public Tensor StemPreActivation(Tensor x)
    {
        using var conv = conv1.call(x);
        return BatchNorms.Forward(bn1, conv);
    }

    /// <summary>The stem's pooling, or the input where the stem has none.</summary>
    public Tensor Pool(Tensor x) => maxpool is null ? x : maxpool.call(x);

    /// <summary>
    /// The stem (conv1, then its max pool where it has one) and every unit of every residual block, named as torchvision
    /// names the convolutions (layer{stage}.{block}.conv{k}); a block's last unit sums its shortcut (downsample or identity).
    /// </summary>
    public EncoderPlan Plan()
    {
        var units = new List<PlanUnit>
        {
            new("conv1", [new PlanTerm(EncoderPlan.Image, n => (((ResNet)n).conv1, ((ResNet)n).bn1))],
                PoolAfter: maxpool is { } pool ? new PlanPool((int)pool.kernel_size[0], (int)(pool.stride?[0] ?? pool.kernel_size[0]), (int)(pool.padding?[0] ?? 0)) : null),
        };
        int j = 0;
        for (int s = 0; s < Spec.Layers.Count; s++)
            for (int b = 0; b < Spec.Layers[s]; b++, j++)
            {
                int block = j, blockIn = units.Count - 1;
                var rb = _blocks[j];
                for (int k = 0; k < rb.Units; k++)
                {
                    int unit = k;
                    var terms = new List<PlanTerm> { new(units.Count - 1, n => (((ResNet)n)._blocks[block].ConvOf(unit), ((ResNet)n)._blocks[block].NormOf(unit))) };
                    bool last = k == rb.Units - 1;
                    if (last)
                        terms.Add(rb.Downsample is null
                            ? new PlanTerm(blockIn, null, ".identity")
                            : new PlanTerm(blockIn, n => ((Conv2d)((ResNet)n)._blocks[block].Downsample![0], (BatchNorm2d)((ResNet)n)._blocks[block].Downsample![1]), ".downsample"));
                    units.Add(new PlanUnit($"layer{s + 1}.{b}.conv{k + 1}", terms, EndsBlock: last));
                }
            }
        return new EncoderPlan(units, [units.Count - 1]).Validated();
    }

    public override Tensor forward(Tensor x)
    {
        // Each intermediate is released once the next unit has read it (see ResidualBlock.Unit).
        var stem = StemUnit(x);
        var h = Pool(stem);
        if (!ReferenceEquals(h, stem)) stem.Dispose();
        foreach (var block in _blocks)
        {
            var next = block.call(h);
            h.Dispose();
            h = next;
        }
        return h;
    }
}
