// The HRNetV2 segmentation head (Wang et al., arXiv 1908.07919), as the official seg_hrnet.py `last_layer`.
using InterroGate.Export;
using InterroGate.Layers;
using InterroGate.Pruning;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Heads;

/// <summary>
/// The dense head every HRNet task uses: 1×1 conv (C → C, with bias) + BN + ReLU, then a 1×1 conv (C → outputs,
/// with bias). Its one field is the official <c>last_layer</c> Sequential, so keys read <c>last_layer.0</c> (conv),
/// <c>last_layer.1</c> (BN) and <c>last_layer.3</c> (classifier) as in <c>seg_hrnet.py</c> and in the multi-task
/// codebases' HighResolutionHead (which names it the same). It reads the encoder's concatenated stride-4 features
/// (<see cref="Backbones.HRNet"/> does the upsample + concat once for all heads) and returns the map at stride 4;
/// the caller upsamples it to the label resolution.
/// </summary>
public sealed class HrNetHead : nn.Module<Tensor, Tensor>, IStaticHead
{
    private readonly Sequential last_layer;

    public HrNetHead(long inChannels, long outputs) : base(nameof(HrNetHead))
    {
        if (inChannels <= 0) throw new ArgumentOutOfRangeException(nameof(inChannels), inChannels, "Input channels must be > 0.");
        if (outputs <= 0) throw new ArgumentOutOfRangeException(nameof(outputs), outputs, "Outputs must be > 0.");
        InChannels = inChannels;
        Outputs = outputs;
        last_layer = new Chain(
            nn.Conv2d(inChannels, inChannels, kernel_size: 1),
            nn.BatchNorm2d(inChannels),
            nn.ReLU(),
            nn.Conv2d(inChannels, outputs, kernel_size: 1));
        RegisterComponents();
    }

    public long InChannels { get; }
    public long Outputs { get; }

    public override Tensor forward(Tensor x) => last_layer.call(x); // [B, C, H/4, W/4] -> [B, outputs, H/4, W/4]

    public int Emit(GraphBuilder graph, int input, string name)
    {
        // The first conv's bias and the BN after it fold into one conv with bias.
        int h = graph.FoldedConv($"{name}.last_layer.0", input, (Conv2d)last_layer[0], (BatchNorm2d)last_layer[1], AsppHead.All(InChannels));
        h = graph.Op($"{name}.last_layer.2", StaticOp.Relu, InChannels, h);
        var classifier = (Conv2d)last_layer[3];
        return graph.Add(new StaticNode($"{name}.last_layer.3", StaticOp.Conv, [h], Outputs, 1),
            ("weight", classifier.weight!), ("bias", classifier.bias!));
    }
}
