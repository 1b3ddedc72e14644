// Hard parameter sharing (MTL): one shared encoder, one head per task.
using InterroGate.Layers;
using InterroGate.Backbones;
using InterroGate.Tasks;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Architectures;

/// <summary>MTL: a shared encoder (encoder) and task heads (heads.{task}); the paper's lower-cost baseline.</summary>
public sealed class HardSharing : MultiTaskModel
{
    private readonly nn.Module<Tensor, Tensor> encoder;
    private readonly ModuleMap<nn.Module<Tensor, Tensor>> heads;

    public HardSharing(TaskSet tasks, IEncoderSpec spec, long inChannels, Heads.HeadConfig? headConfig = null) : base(nameof(HardSharing), tasks, inChannels, headConfig)
    {
        Spec = spec;
        encoder = spec.CreateEncoder(inChannels);
        heads = MakeHeads(spec);
        RegisterComponents();
    }

    /// <summary>The backbone every encoder of this model has.</summary>
    public IEncoderSpec Spec { get; }
    public override string Architecture => "mtl";
    public override IEnumerable<Parameter> SharedParameters() => encoder.parameters();

    public override Tensor? SharedRepresentation => _representation;
    private Tensor? _representation;

    public override Dictionary<string, Tensor> forward(Tensor x)
    {
        var features = encoder.call(x);
        _representation = features;
        return Tasks.ToDictionary(t => t.Name, t => Predict(t, heads[t.Name], features, x));
    }
}
