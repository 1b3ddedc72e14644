// DeepLab-v3's head: atrous spatial pyramid pooling, then a 3×3 convolution and a 1×1 classifier (Chen et al., arXiv 1706.05587).
using InterroGate.Export;
using InterroGate.Layers;
using InterroGate.Pruning;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Heads;

/// <summary>
/// The dense head of the paper's ResNet experiments, one per task. ASPP: a 1×1 branch, three 3×3 branches at
/// dilations <see cref="Rates"/> and an image-level branch (global average, 1×1, broadcast back), each conv + BN +
/// ReLU with <see cref="Channels"/> outputs, concatenated and projected by 1×1 conv + BN + ReLU (+ dropout 0.5 in
/// training); then 3×3 conv + BN + ReLU and a 1×1 classifier with bias. Parameter names follow torchvision's ASPP
/// (aspp.convs.{i}, aspp.project); the output is at the features' resolution (the architecture upsamples it).
/// </summary>
public sealed class AsppHead : nn.Module<Tensor, Tensor>, IStaticHead
{
    private readonly Aspp aspp;
    private readonly Conv2d conv;
    private readonly BatchNorm2d bn;
    private readonly Conv2d classifier;

    public AsppHead(long inChannels, long outputs, IReadOnlyList<int> rates, long channels = 256) : base(nameof(AsppHead))
    {
        if (rates.Count == 0 || rates.Any(r => r < 1)) throw new ArgumentException($"ASPP rates must be ≥ 1, got [{string.Join(", ", rates)}].");
        if (channels < 1) throw new ArgumentOutOfRangeException(nameof(channels), channels, "ASPP channels must be ≥ 1.");
        aspp = new Aspp(inChannels, rates, channels);
        conv = nn.Conv2d(channels, channels, kernel_size: 3, padding: 1, bias: false);
        bn = nn.BatchNorm2d(channels);
        classifier = nn.Conv2d(channels, outputs, kernel_size: 1);
        Rates = rates.ToArray();
        Channels = channels;
        RegisterComponents();
        Layers.Convolutions.InitialiseResNetWeights(this);
    }

    /// <summary>Dilations of the 3×3 branches.</summary>
    public IReadOnlyList<int> Rates { get; }
    /// <summary>Width of every branch and of the projection.</summary>
    public long Channels { get; }

    /// <summary>DeepLab's rates for an encoder of output stride 8 (12, 24, 36) or 16 (6, 12, 18); halved again at 32.</summary>
    public static int[] RatesFor(int outputStride) => outputStride switch
    {
        8 => [12, 24, 36],
        16 => [6, 12, 18],
        _ => [3, 6, 9],
    };

    public override Tensor forward(Tensor x) => classifier.call(nn.functional.relu(BatchNorms.Forward(bn, conv.call(aspp.call(x)))));

    public int Emit(GraphBuilder graph, int input, string name)
    {
        int h = aspp.Emit(graph, input, $"{name}.aspp");
        h = graph.Op($"{name}.conv.relu", StaticOp.Relu, Channels, graph.FoldedConv($"{name}.conv", h, conv, bn, All(Channels)));
        return graph.Add(new StaticNode($"{name}.classifier", StaticOp.Conv, [h], classifier.out_channels, 1),
            ("weight", classifier.weight!), ("bias", classifier.bias!));
    }

    internal static long[] All(long n) => Enumerable.Range(0, (int)n).Select(i => (long)i).ToArray();

    /// <summary>The pyramid itself (torchvision's names: convs.0 the 1×1 branch, convs.1-3 the dilated ones, convs.4 pooling).</summary>
    private sealed class Aspp : nn.Module<Tensor, Tensor>
    {
        private readonly ModuleList<Sequential> convs;
        private readonly Sequential project;
        private readonly long _channels;

        public Aspp(long inChannels, IReadOnlyList<int> rates, long channels) : base(nameof(Aspp))
        {
            var branches = new List<Sequential> { Unit(nn.Conv2d(inChannels, channels, kernel_size: 1, bias: false), channels) };
            foreach (var r in rates)
                branches.Add(Unit(nn.Conv2d(inChannels, channels, kernel_size: 3, padding: r, dilation: r, bias: false), channels));
            // Image-level features: index 0 is the (parameter-free) pooling, so the conv is convs.{n}.1 as in torchvision.
            branches.Add(new Chain(nn.AdaptiveAvgPool2d(1), nn.Conv2d(inChannels, channels, kernel_size: 1, bias: false), nn.BatchNorm2d(channels), nn.ReLU()));
            convs = new ModuleList<Sequential>(branches.ToArray());
            project = new Chain(nn.Conv2d(channels * branches.Count, channels, kernel_size: 1, bias: false), nn.BatchNorm2d(channels), nn.ReLU(), nn.Dropout(0.5));
            _channels = channels;
            RegisterComponents();
        }

        private static Sequential Unit(Conv2d conv, long channels) => new Chain(conv, nn.BatchNorm2d(channels), nn.ReLU());

        public override Tensor forward(Tensor x)
        {
            var outs = new Tensor[convs.Count];
            for (int i = 0; i < convs.Count - 1; i++) outs[i] = convs[i].call(x);
            outs[^1] = DenseOutput.ResizeLike(convs[^1].call(x), x); // [B, C, 1, 1] -> [B, C, H, W]
            return project.call(cat(outs, 1));
        }

        public int Emit(GraphBuilder graph, int input, string name)
        {
            var keep = All(_channels);
            var outs = new int[convs.Count];
            for (int i = 0; i < convs.Count - 1; i++)
                outs[i] = graph.Op($"{name}.convs.{i}.relu", StaticOp.Relu, _channels,
                    graph.FoldedConv($"{name}.convs.{i}", input, (Conv2d)convs[i][0], (BatchNorm2d)convs[i][1], keep));
            var pool = convs[^1];
            int pooled = graph.Op($"{name}.convs.{convs.Count - 1}.pool", StaticOp.ImagePool, graph.Channels(input), input);
            int p = graph.Op($"{name}.convs.{convs.Count - 1}.relu", StaticOp.Relu, _channels,
                graph.FoldedConv($"{name}.convs.{convs.Count - 1}", pooled, (Conv2d)pool[1], (BatchNorm2d)pool[2], keep));
            outs[^1] = graph.Op($"{name}.convs.{convs.Count - 1}.broadcast", StaticOp.Resize, _channels, p, input);
            int joined = graph.Op($"{name}.concat", StaticOp.Concat, _channels * convs.Count, outs);
            return graph.Op($"{name}.project.relu", StaticOp.Relu, _channels,
                graph.FoldedConv($"{name}.project", joined, (Conv2d)project[0], (BatchNorm2d)project[1], keep));
        }
    }
}
