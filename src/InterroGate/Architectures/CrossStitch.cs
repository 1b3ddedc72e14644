// Cross-stitch networks: one network per task, joined after every stage by learned per-channel linear combinations (Misra et al., "Cross-stitch Networks for Multi-task Learning", CVPR 2016).
using InterroGate.Layers;
using InterroGate.Backbones;
using InterroGate.Tasks;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Architectures;

/// <summary>
/// T encoders (encoders.{task}, as in STL, so STL checkpoints load by name) and heads.{task}. After the
/// stem and after every residual stage, cross-stitch unit k mixes the tasks' features channel by channel:
/// x̃_t[c] = Σ_s α_k[t, s, c] x_s[c], α initialised to <see cref="CrossStitchConfig.SelfWeight"/> on the diagonal and
/// the rest spread evenly over the other tasks (the paper's 0.9 / 0.1). The units train with the separate
/// SGD optimiser at <see cref="CrossStitchConfig.UnitLr"/> (the paper gives them a much higher learning rate).
/// Nothing is shared by every task's loss alone, so <see cref="SharedParameters"/> is empty.
/// </summary>
public sealed class CrossStitch : MultiTaskModel
{
    private readonly ModuleMap<ResNet> encoders;
    private readonly ModuleMap<nn.Module<Tensor, Tensor>> heads;
    private readonly ParameterList cross_stitch;
    private readonly ResNet[] _encoders;
    private readonly int[] _stageEnds;

    public CrossStitch(TaskSet tasks, ResNetSpec spec, long inChannels, double selfWeight, Heads.HeadConfig? headConfig = null, double unitLr = 0.1)
        : base(nameof(CrossStitch), tasks, inChannels, headConfig)
    {
        if (!(selfWeight is >= 0 and <= 1)) throw new ArgumentOutOfRangeException(nameof(selfWeight), selfWeight, "The self weight must be in [0, 1].");
        if (!(unitLr > 0) || !double.IsFinite(unitLr)) throw new ArgumentOutOfRangeException(nameof(unitLr), unitLr, "The units' learning rate must be > 0.");
        Spec = spec;
        UnitLr = unitLr;
        encoders = ModuleMap.Of(tasks.Select(t => (t.Name, new ResNet(spec, inChannels))).ToArray());
        heads = MakeHeads(spec);
        _encoders = tasks.Select(t => encoders[t.Name]).ToArray();
        _stageEnds = spec.Layers.Select((_, s) => spec.Layers.Take(s + 1).Sum() - 1).ToArray(); // last block index of each stage

        int T = tasks.Count;
        double other = T > 1 ? (1 - selfWeight) / (T - 1) : 0;
        var init = new double[T * T];
        for (int t = 0; t < T; t++)
            for (int s = 0; s < T; s++) init[t * T + s] = t == s ? (T == 1 ? 1 : selfWeight) : other;
        var channels = new[] { spec.StemChannels }.Concat(_stageEnds.Select(b => _encoders[0].Blocks[b].OutChannels));
        cross_stitch = new ParameterList();
        // Out of any dispose scope open around the construction (Factory.CreateModel's frees the intermediates).
        foreach (long c in channels)
            cross_stitch.Add(new Parameter(tensor(init, [T, T, 1]).to(float32).expand(T, T, c).contiguous().DetachFromDisposeScope()));
        RegisterComponents();
    }

    public ResNetSpec Spec { get; }
    public override string Architecture => "cross-stitch";
    public override IEnumerable<Parameter> SharedParameters() => [];
    /// <summary>Learning rate of the units' SGD optimiser.</summary>
    public double UnitLr { get; }
    /// <summary>"weights" and "gates" (the cross-stitch units, SGD at <see cref="UnitLr"/>).</summary>
    public override IReadOnlyList<ParameterGroup> ParameterGroups() => WeightsAndGates(cross_stitch, UnitLr);

    /// <summary>The units' weights α_k [T, T, C_k] (row t: how task t reads every task's channels).</summary>
    public IReadOnlyList<Parameter> Units => cross_stitch.ToArray();

    public override Dictionary<string, Tensor> forward(Tensor x)
    {
        int T = Tasks.Count, unit = 0;
        var h = _encoders.Select(e => e.Pool(e.StemUnit(x))).ToArray();
        h = Stitch(h, unit++);
        for (int b = 0; b < _encoders[0].Blocks.Count; b++)
        {
            for (int t = 0; t < T; t++) h[t] = _encoders[t].Blocks[b].call(h[t]);
            if (_stageEnds.Contains(b)) h = Stitch(h, unit++);
        }
        return Tasks.Select((task, t) => (task.Name, Predict(task, heads[task.Name], h[t], x))).ToDictionary(p => p.Name, p => p.Item2);
    }

    private Tensor[] Stitch(Tensor[] features, int unit)
    {
        var alpha = cross_stitch[unit]; // [T, T, C]
        var stacked = stack(features, 1); // [B, T, C, H, W]
        // x̃[b, t, c] = Σ_s α[t, s, c] x[b, s, c]
        var mixed = einsum("tsc,bschw->btchw", alpha, stacked);
        return Enumerable.Range(0, features.Length).Select(t => mixed.select(1, t)).ToArray();
    }
}
