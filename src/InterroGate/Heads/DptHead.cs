// The DPT decoder (Ranftl et al., "Vision Transformers for Dense Prediction", arXiv 2103.13413): the dense head of
// the paper's ViT experiments (arXiv 2402.16848, appendix B).
using InterroGate.Export;
using InterroGate.Layers;
using InterroGate.Pruning;
using InterroGate.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Heads;

/// <summary>
/// One task's DPT decoder. It reads the maps of four encoder blocks, concatenated along channels (on the patch grid at
/// 1/p of the input; <see cref="Backbones.ViTSpec.OutputBlocks"/>), and:
/// <list type="bullet">
/// <item>reads out the class token (DPT's default "project" readout): where the maps carry it beside every patch
/// (2D channels each, a ViT with a class token), a 1×1 convolution from 2D to D channels (DPT's linear layer on
/// [patch | class]) and a GELU; without one the D channels of the patches are read as they are;</item>
/// <item>reassembles them into maps at 1/4, 1/8, 1/16 and 1/32 of the input: a 1×1 convolution to D/8, D/4, D/2 and D
/// channels, then each map brought from 1/p to its scale, up by bilinear upsampling (where DPT uses transposed
/// convolutions: resizing keeps the static network to resizes and convolutions) or down by 3×3 convolutions of stride 2
/// (DPT's for its last map); at p = 16: ×4, ×2, as is, ½. Then a 3×3 convolution to <see cref="Features"/> channels
/// each (DPT's <c>layer_rn</c>, with a bias here as every convolution of a static network has one);</item>
/// <item>fuses them top-down (DPT's FeatureFusionBlock): from the coarsest, each step adds a residual convolution unit
/// (x + BN(conv(relu(BN(conv(relu(x))))))) of the next skip, applies a second one, upsamples by 2 (bilinear, corners
/// aligned) and a 1×1 convolution;</item>
/// <item>predicts with DPT's segmentation head, for every task kind: a 3×3 convolution + BN + ReLU, dropout 0.1 in
/// training, a 1×1 classifier and an upsampling by 2 (bilinear, corners aligned), at the input's resolution.</item>
/// </list>
/// The residual units with batch norm and the segmentation head are DPT's segmentation model; its depth model's
/// head (and units without batch norm) is not used. The patch size must be a power of two up to 32 and the input's
/// height and width multiples of 32.
/// </summary>
public sealed class DptHead : nn.Module<Tensor, Tensor>, IStaticHead
{
    private readonly ModuleList<Conv2d>? readout;  // the class token read out: 1×1 from [patch | class] (2D) to D, then GELU
    private readonly ModuleList<Conv2d> project;   // reassemble: 1×1 to D/8, D/4, D/2, D
    private readonly ModuleList<Sequential> down;  // reassemble of maps coarser than the grid: 3×3 stride-2 convolutions
    private readonly ModuleList<Conv2d> layer_rn;  // 3×3 to the feature width
    private readonly ModuleList<FusionBlock> fusion;
    private readonly Conv2d head_conv;
    private readonly BatchNorm2d head_bn;
    private readonly Dropout head_dropout;
    private readonly Conv2d classifier;
    private readonly int[] _scale; // per map: > 1 upsample by it, < −1 downsample by its magnitude, 1 as is

    /// <param name="tokenWidth">D: the channels of each of the four token maps the head reads.</param>
    /// <param name="patchSize">p: the encoder's patch size (the maps it hands over are at 1/p of the input).</param>
    /// <param name="features">The decoder's width (the paper: 64).</param>
    /// <param name="readsClassToken">Whether each map carries the class token beside its patches (2D channels) for the readout.</param>
    public DptHead(long tokenWidth, long outputs, int patchSize, long features = 64, bool readsClassToken = false) : base(nameof(DptHead))
    {
        if (tokenWidth < 8) throw new ArgumentOutOfRangeException(nameof(tokenWidth), tokenWidth, "A DPT head needs tokens at least 8 wide.");
        if (features < 1) throw new ArgumentOutOfRangeException(nameof(features), features, "The DPT feature width must be ≥ 1.");
        if (outputs < 1) throw new ArgumentOutOfRangeException(nameof(outputs), outputs, "Outputs must be > 0.");
        if (!SupportsPatch(patchSize))
            throw new ArgumentException($"A DPT head reassembles maps at 1/4 to 1/32 of the input from a patch grid of 1/p: p must be a power of two up to 32, got {patchSize}.");
        TokenWidth = tokenWidth;
        ReadsClassToken = readsClassToken;
        Features = features;
        Outputs = outputs;
        PatchSize = patchSize;
        var widths = new[] { tokenWidth / 8, tokenWidth / 4, tokenWidth / 2, tokenWidth };
        Widths = widths;
        _scale = Enumerable.Range(0, 4).Select(i => (4 << i) <= patchSize ? patchSize / (4 << i) : -((4 << i) / patchSize)).ToArray();
        readout = readsClassToken ? new ModuleList<Conv2d>(Enumerable.Range(0, 4).Select(_ => nn.Conv2d(2 * tokenWidth, tokenWidth, 1)).ToArray()) : null;
        project = new ModuleList<Conv2d>(widths.Select(w => nn.Conv2d(tokenWidth, w, 1)).ToArray());
        down = new ModuleList<Sequential>(Enumerable.Range(0, 4).Select(i => new Chain(Enumerable.Range(0, _scale[i] < -1 ? (int)Math.Log2(-_scale[i]) : 0)
            .Select(_ => (nn.Module<Tensor, Tensor>)nn.Conv2d(widths[i], widths[i], 3, stride: 2, padding: 1)).ToArray())).ToArray());
        layer_rn = new ModuleList<Conv2d>(widths.Select(w => nn.Conv2d(w, features, 3, padding: 1)).ToArray());
        fusion = new ModuleList<FusionBlock>(Enumerable.Range(0, 4).Select(i => new FusionBlock(features, hasSkip: i < 3)).ToArray());
        head_conv = nn.Conv2d(features, features, 3, padding: 1, bias: false);
        head_bn = nn.BatchNorm2d(features);
        head_dropout = nn.Dropout(0.1);
        classifier = nn.Conv2d(features, outputs, 1);
        RegisterComponents();
    }

    /// <summary>Whether a DPT head can read a ViT of patch size <paramref name="p"/>: a power of two up to 32.</summary>
    public static bool SupportsPatch(int p) => p is >= 1 and <= 32 && (p & (p - 1)) == 0;

    public long TokenWidth { get; }
    /// <summary>Whether the maps carry the class token beside each patch, read out by a projection (DPT's "project").</summary>
    public bool ReadsClassToken { get; }
    /// <summary>Channels of each of the four maps the head reads: D, or 2D with the class token.</summary>
    public long MapWidth => ReadsClassToken ? 2 * TokenWidth : TokenWidth;
    public long Features { get; }
    public long Outputs { get; }
    public int PatchSize { get; }
    /// <summary>Channels of the four reassembled maps: D/8, D/4, D/2, D.</summary>
    public IReadOnlyList<long> Widths { get; }

    public override Tensor forward(Tensor x)
    {
        if (x.shape[1] != 4 * MapWidth)
            throw new ArgumentException($"A DPT head reads four token maps of {MapWidth} channels ({4 * MapWidth}), got {x.shape[1]}: build the ViT with four output blocks.");
        if (x.shape[2] * PatchSize % 32 != 0 || x.shape[3] * PatchSize % 32 != 0)
            throw new ArgumentException($"A DPT head needs an input whose height and width are multiples of 32; its token grid is {x.shape[2]}×{x.shape[3]} at patches of {PatchSize}.");
        var maps = x.chunk(4, 1);
        var layers = new Tensor[4];
        for (int i = 0; i < 4; i++)
        {
            var tokens = readout is null ? maps[i] : nn.functional.gelu(readout[i].call(maps[i]));
            var h = project[i].call(tokens);
            if (_scale[i] > 1) h = Upsample(h, _scale[i]);
            if (_scale[i] < -1) h = down[i].call(h);
            layers[i] = layer_rn[i].call(h);
        }
        var path = fusion[3].call(layers[3], null);
        for (int i = 2; i >= 0; i--) path = fusion[i].call(path, layers[i]);
        var y = head_dropout.call(nn.functional.relu(BatchNorms.Forward(head_bn, head_conv.call(path))));
        return Upsample(classifier.call(y), 2, alignCorners: true);
    }

    /// <summary>Bilinear upsampling by an integer factor; DPT aligns corners in its fusion blocks and head, not in the reassembly here.</summary>
    internal static Tensor Upsample(Tensor x, int factor, bool alignCorners = false) =>
        nn.functional.interpolate(x, size: [x.shape[2] * factor, x.shape[3] * factor], mode: InterpolationMode.Bilinear, align_corners: alignCorners);

    public int Emit(GraphBuilder graph, int input, string name)
    {
        var layers = new int[4];
        for (int i = 0; i < 4; i++)
        {
            var chunk = Enumerable.Range(0, (int)MapWidth).Select(c => i * MapWidth + c).ToArray();
            int h = graph.Gather($"{name}.read{i}", [input], chunk);
            if (readout is not null) h = graph.Op($"{name}.readout.{i}.gelu", StaticOp.Gelu, TokenWidth, Conv(graph, $"{name}.readout.{i}", h, readout[i]));
            h = Conv(graph, $"{name}.project.{i}", h, project[i]);
            if (_scale[i] > 1) h = graph.Add(new StaticNode($"{name}.upsample{i}", StaticOp.Upsample, [h], Widths[i], Stride: _scale[i]));
            var convs = down[i].children().Cast<Conv2d>().ToArray();
            for (int k = 0; k < convs.Length; k++) h = Conv(graph, $"{name}.down.{i}.{k}", h, convs[k]);
            layers[i] = Conv(graph, $"{name}.layer_rn.{i}", h, layer_rn[i]);
        }
        int path = fusion[3].Emit(graph, $"{name}.fusion.3", layers[3], -1);
        for (int i = 2; i >= 0; i--) path = fusion[i].Emit(graph, $"{name}.fusion.{i}", path, layers[i]);
        int y = graph.Op($"{name}.head.relu", StaticOp.Relu, Features, graph.FoldedConv($"{name}.head_conv", path, head_conv, head_bn, AsppHead.All(Features)));
        int logits = Conv(graph, $"{name}.classifier", y, classifier);
        return graph.Add(new StaticNode($"{name}.head.upsample", StaticOp.UpsampleAligned, [logits], Outputs, Stride: 2));
    }

    /// <summary>A convolution as it is (its own bias, zeros without one).</summary>
    internal static int Conv(GraphBuilder graph, string name, int input, Conv2d conv) =>
        graph.FoldedConv(name, input, conv, null, AsppHead.All(conv.out_channels));

    /// <summary>
    /// DPT's residual convolution unit as its segmentation model builds it: x + bn2(conv2(relu(bn1(conv1(relu(x)))))),
    /// 3×3 convolutions without bias, each followed by batch norm.
    /// </summary>
    private sealed class ResidualUnit : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d conv1;
        private readonly BatchNorm2d bn1;
        private readonly Conv2d conv2;
        private readonly BatchNorm2d bn2;

        public ResidualUnit(long features) : base(nameof(ResidualUnit))
        {
            conv1 = nn.Conv2d(features, features, 3, padding: 1, bias: false);
            bn1 = nn.BatchNorm2d(features);
            conv2 = nn.Conv2d(features, features, 3, padding: 1, bias: false);
            bn2 = nn.BatchNorm2d(features);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) =>
            x.Plus(BatchNorms.Forward(bn2, conv2.call(nn.functional.relu(BatchNorms.Forward(bn1, conv1.call(nn.functional.relu(x)))))));

        public int Emit(GraphBuilder graph, string name, int x)
        {
            long c = conv1.out_channels;
            int h = graph.Op($"{name}.relu0", StaticOp.Relu, c, x);
            h = graph.Op($"{name}.relu1", StaticOp.Relu, c, graph.FoldedConv($"{name}.conv1", h, conv1, bn1, AsppHead.All(c)));
            return graph.Op($"{name}.add", StaticOp.Add, c, x, graph.FoldedConv($"{name}.conv2", h, conv2, bn2, AsppHead.All(c)));
        }
    }

    /// <summary>
    /// DPT's feature fusion block: (path + unit1(skip)), unit2, ×2 bilinear (corners aligned), 1×1 convolution; the
    /// coarsest block has no skip and no unit1.
    /// </summary>
    private sealed class FusionBlock : nn.Module<Tensor, Tensor?, Tensor>
    {
        private readonly ResidualUnit? unit1;
        private readonly ResidualUnit unit2;
        private readonly Conv2d out_conv;

        public FusionBlock(long features, bool hasSkip) : base(nameof(FusionBlock))
        {
            unit1 = hasSkip ? new ResidualUnit(features) : null;
            unit2 = new ResidualUnit(features);
            out_conv = nn.Conv2d(features, features, 1);
            RegisterComponents();
        }

        public override Tensor forward(Tensor path, Tensor? skip)
        {
            var h = skip is null || unit1 is null ? path : path.Plus(unit1.call(skip));
            return out_conv.call(Upsample(unit2.call(h), 2, alignCorners: true));
        }

        public int Emit(GraphBuilder graph, string name, int path, int skip)
        {
            long c = out_conv.out_channels;
            int h = skip < 0 || unit1 is null ? path : graph.Op($"{name}.add", StaticOp.Add, c, path, unit1.Emit(graph, $"{name}.unit1", skip));
            h = unit2.Emit(graph, $"{name}.unit2", h);
            h = graph.Add(new StaticNode($"{name}.upsample", StaticOp.UpsampleAligned, [h], c, Stride: 2));
            return Conv(graph, $"{name}.out_conv", h, out_conv);
        }
    }
}
