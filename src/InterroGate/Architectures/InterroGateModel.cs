// InterroGate: learning to share, specialise and prune representations (Bejnordi et al., arXiv 2402.16848).
using InterroGate.Layers;
using InterroGate.Backbones;
using InterroGate.Gating;
using InterroGate.Tasks;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Architectures;

/// <summary>
/// The gated encoder (encoder.task_branches.{task}, encoder.shared, encoder.gates) and one head per
/// task reading that task's gated features. Its regulariser is λ_s · L_s (Eq. 4-5).
/// </summary>
public sealed class InterroGateModel : MultiTaskModel
{
    private readonly nn.Module<Tensor, Tensor[]> encoder;
    private readonly ModuleMap<nn.Module<Tensor, Tensor>> heads;
    private readonly double[] _tau;
    private readonly double[] _layerMacs;
    private readonly GateMonitor _monitor;

    public InterroGateModel(TaskSet tasks, IEncoderSpec spec, long inChannels, (int Height, int Width) inputSize, InterroGateConfig options,
        Heads.HeadConfig? headConfig = null)
        : base(nameof(InterroGateModel), tasks, headConfig)
    {
        Options = options;
        _tau = options.TauFor(tasks.Count);
        Spec = spec;
        string[] names = tasks.Names.ToArray();
        switch (spec)
        {
            case ResNetSpec resnet:
                var gatedResNet = new GatedResNet(names, resnet, inChannels, inputSize, options.Gating, options.AlphaInit, options.GateHysteresis) { Fusion = options.Fusion };
                encoder = gatedResNet;
                break;
            case HRNetSpec hrnet:
                if (options.Gating != GatingMode.Conv)
                    throw new NotSupportedException($"The gated HRNet gates every convolution (gating: conv); gating: {options.Gating.ToString().ToLowerInvariant()} is for ResNets only.");
                // Branch fusion is the gated ResNet's option; the gated HRNet runs its T+1 copies one after the other.
                var gatedHRNet = new GatedHRNet(names, hrnet, inChannels, inputSize, options.AlphaInit, options.GateHysteresis);
                encoder = gatedHRNet;
                break;
            default:
                throw new NotSupportedException($"InterroGate has no gated form of the {spec.Name} backbone.");
        }
        Encoder.Noise = new GateNoise(options.NoiseTemperature);
        heads = MakeHeads(spec);
        _layerMacs = Encoder.GatedLayerMacs().ToArray();
        _monitor = new GateMonitor(names, Encoder.GateLayers.Select(g => g.Channels).ToArray());
        RegisterComponents();
    }

    public InterroGateConfig Options { get; }
    /// <summary>The backbone every branch of the encoder has.</summary>
    public IEncoderSpec Spec { get; }
    /// <summary>The gated encoder (encoder.task_branches.{task}, encoder.shared, encoder.gates).</summary>
    /// <remarks>
    /// A property over the one encoder field, not a second field: TorchSharp registers every field that holds a
    /// module, so a second field would register the encoder twice (every hook and cost count would see it twice).
    /// </remarks>
    public IGatedEncoder Encoder => (IGatedEncoder)encoder;
    /// <summary>The gated encoder where the backbone is a ResNet; null otherwise.</summary>
    public GatedResNet? ResNetEncoder => encoder as GatedResNet;
    /// <summary>The gated encoder where the backbone is an HRNet; null otherwise.</summary>
    public GatedHRNet? HRNetEncoder => encoder as GatedHRNet;
    /// <summary>The head of task <paramref name="task"/>.</summary>
    public nn.Module<Tensor, Tensor> Head(string task) => heads[task];
    public override string Architecture => "interrogate";

    public override Dictionary<string, Tensor> forward(Tensor x)
    {
        var features = encoder.call(x);
        return Tasks.Select((t, i) => (t.Name, Out: Predict(t, heads[t.Name], features[i], x))).ToDictionary(p => p.Name, p => p.Out);
    }

    public override Tensor? Regularizer() =>
        SparsityLoss.Compute(Encoder.GateLayers.Select(g => (Tensor)g.Alpha).ToArray(), _tau, Options.Sparsity, _layerMacs) * Options.LambdaS;

    /// <summary>λ_s·∂L_s/∂α per gated layer: the sparsity loss's push on every gate (closed form, no graph).</summary>
    public Tensor[] SparsityPush() =>
        SparsityLoss.Gradient(Encoder.GateLayers.Select(g => (Tensor)g.Alpha).ToArray(), _tau, Options.Sparsity, _layerMacs)
            .Select(g => g * Options.LambdaS).ToArray();

    public override void ObserveGradients()
    {
        // Called inside the training step's dispose scope, which frees the hard-gate copies.
        _monitor.Observe(Encoder.GateLayers.Select(g => (Tensor)g.Alpha).ToArray(), SparsityPush(), Encoder.GateLayers.Select(g => g.Hard()).ToArray());
    }

    public override void GatesStepped()
    {
        foreach (var g in Encoder.GateLayers) g.Step();
    }

    public override IReadOnlyList<GateLayerStats> TakeGateStatistics()
    {
        var report = _monitor.Report(Encoder.GateLayers);
        _monitor.Reset();
        return report;
    }

    public override string? GateRegimeWarning(int gateSteps) =>
        GateMonitor.Verdict(_monitor.Report(Encoder.GateLayers), Options.LambdaS, Options.AlphaInit, Options.GateLr, gateSteps);

    public override IEnumerable<Parameter> GateParameters() =>
        Encoder.GateLayers.SelectMany(g => g.Beta is null ? new[] { g.Alpha } : new[] { g.Alpha, g.Beta });

    public override IEnumerable<Parameter> SharedParameters() => Encoder.SharedParameters();

    /// <summary>Hard gates per gated layer, task and channel (G = 1[α &gt; 0], or the hysteresis state).</summary>
    public IReadOnlyList<bool[][]> HardGates()
    {
        using var _ = no_grad();
        return Encoder.GateLayers.Select(g =>
        {
            using var on = g.Hard().gt(0.5).cpu();
            return Enumerable.Range(0, g.Tasks).Select(t => on[t].data<bool>().ToArray()).ToArray();
        }).ToList();
    }

    /// <summary>Fraction of gates that pick the task's own copy, per task and overall.</summary>
    public (double Overall, double[] PerTask) TaskSpecificFraction()
    {
        var gates = HardGates();
        var perTask = Enumerable.Range(0, Tasks.Count)
            .Select(t => (double)gates.Sum(l => l[t].Count(b => b)) / gates.Sum(l => l[t].Length)).ToArray();
        return (perTask.Average(), perTask);
    }

    /// <summary>Cost of the encoder once pruned with the current gates (see <see cref="PrunedCost"/>).</summary>
    public PrunedCost PredictPrunedEncoderCost() => Encoder.PredictPrunedCost(HardGates());

    public override IReadOnlyDictionary<string, double> Diagnostics()
    {
        var (overall, perTask) = TaskSpecificFraction();
        var d = new Dictionary<string, double> { ["task_specific"] = overall };
        for (int t = 0; t < Tasks.Count; t++) d[$"task_specific/{Tasks[t].Name}"] = perTask[t];
        return d;
    }
}
