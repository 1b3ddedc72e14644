using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Heads;

/// <summary>Global average pooling and one linear layer (torchvision's classifier, field `fc`).</summary>
public sealed class ClassificationHead : nn.Module<Tensor, Tensor>, Pruning.IStaticHead
{
    private readonly Linear fc;

    public ClassificationHead(long inChannels, long outputs) : base(nameof(ClassificationHead))
    {
        fc = nn.Linear(inChannels, outputs);
        RegisterComponents();
    }

    public int Emit(Pruning.GraphBuilder graph, int input, string name)
    {
        int pooled = graph.Op($"{name}.pool", Pruning.StaticOp.GlobalAvgPool, graph.Channels(input), input);
        return graph.Add(new Pruning.StaticNode($"{name}.fc", Pruning.StaticOp.Linear, [pooled], fc.out_features),
            ("weight", fc.weight!), ("bias", fc.bias!));
    }

    public override Tensor forward(Tensor x) =>
        fc.call(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)); // [B, C, H, W] -> [B, C] -> [B, K]
}
