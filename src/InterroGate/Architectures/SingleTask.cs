// Single-task learning (STL): one encoder and head per task, nothing shared.
using InterroGate.Layers;
using InterroGate.Backbones;
using InterroGate.Tasks;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Architectures;

/// <summary>STL: T independent networks (encoders.{task}, heads.{task}); the paper's upper-cost baseline.</summary>
public sealed class SingleTask : MultiTaskModel
{
    private readonly ModuleMap<nn.Module<Tensor, Tensor>> encoders;
    private readonly ModuleMap<nn.Module<Tensor, Tensor>> heads;

    public SingleTask(TaskSet tasks, IEncoderSpec spec, long inChannels, Heads.HeadConfig? headConfig = null) : base(nameof(SingleTask), tasks, inChannels, headConfig)
    {
        Spec = spec;
        encoders = ModuleMap.Of(tasks.Select(t => (t.Name, spec.CreateEncoder(inChannels))).ToArray());
        heads = MakeHeads(spec);
        RegisterComponents();
    }

    /// <summary>The backbone every encoder of this model has.</summary>
    public IEncoderSpec Spec { get; }
    public override string Architecture => "stl";
    public override IEnumerable<Parameter> SharedParameters() => [];

    public override Dictionary<string, Tensor> forward(Tensor x) =>
        Tasks.ToDictionary(t => t.Name, t => Predict(t, heads[t.Name], encoders[t.Name].call(x), x));
}
