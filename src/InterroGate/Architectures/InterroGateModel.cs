// InterroGate: learning to share, specialise and prune representations (Bejnordi et al., arXiv 2402.16848).
using InterroGate.Backbones;
using InterroGate.Gating;
using InterroGate.Layers;
using InterroGate.Tasks;
using InterroGate.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Architectures;

/// <summary>
/// The gated encoder (encoder.task_branches.{task}, encoder.shared, encoder.gates) and one head per
/// task reading that task's gated features. Its regulariser is λ_s · L_s (Eq. 4-5).
/// </summary>
public sealed class InterroGateModel : MultiTaskModel
{
    private readonly GatedEncoder encoder;
    private readonly ModuleMap<nn.Module<Tensor, Tensor>> heads;
    private readonly double[] _tau;
    private readonly double[] _layerMacs;
    private readonly int[]? _layerParts; // layers each gate layer counts as in Eq. 4's mean (null: one each)
    private readonly GateMonitor _monitor;
    private readonly BudgetController? budget;
    private readonly long _inChannels;
    private readonly (int Height, int Width) _inputSize;
    private double[]? _budgetWeights; // the budget's weight per task for the coming step

    public InterroGateModel(TaskSet tasks, IEncoderSpec spec, long inChannels, (int Height, int Width) inputSize, InterroGateConfig options,
        Heads.HeadConfig? headConfig = null)
        : base(nameof(InterroGateModel), tasks, inChannels, headConfig)
    {
        Options = options;
        _tau = options.TauFor(tasks.Count);
        Spec = spec;
        string[] names = tasks.Names.ToArray();
        // How fused units and Eqs. 2-3 are computed fast is chosen here, once (Gating does not know Runtime).
        encoder = new GatedEncoder(names, spec, inChannels, inputSize, options.Gating, options.AlphaInit, options.GateHysteresis)
            { Fusion = options.Fusion, FusedImplementation = Runtime.FusedBranches.Instance, KeptFiltersOnly = options.KeptFiltersOnly,
              BackwardReadFiltersOnly = options.BackwardReadFiltersOnly };
        Encoder.Noise = new GateNoise(options.NoiseTemperature);
        foreach (var g in Encoder.GateLayers) g.Implementation = Runtime.GateMixKernel.Implementation;
        heads = MakeHeads(spec);
        _layerMacs = Encoder.GatedLayerMacs().ToArray();
        _layerParts = Encoder.GateLayers.Any(g => g.Parts != 1) ? Encoder.GateLayers.Select(g => g.Parts).ToArray() : null;
        _monitor = new GateMonitor(names, Encoder.GateLayers.Select(g => g.Channels).ToArray());
        (_inChannels, _inputSize) = (inChannels, inputSize);
        if (options.Target is { } target)
            budget = new BudgetController(target, options.LambdaS, tasks.Count, Encoder.GateLayers.Select(g => g.Channels).ToArray(),
                gates => Encoder.PredictPrunedCost(SharingPattern.FromGates(gates)), HeadCost) { TaskNames = names };
        RegisterComponents();
    }

    /// <summary>The compute budget the model trains to (architecture.target); null without one.</summary>
    public BudgetController? Budget => budget;

    /// <summary>
    /// MACs and parameters of the heads at the model's input size (constant: they do not depend on the gates). Dense
    /// heads' BN folds into their convolutions in the deployed network, so their BN parameters are not counted.
    /// </summary>
    public (long Macs, long Parameters) HeadCost()
    {
        var first = parameters().First();
        var (device, dtype) = (first.device, first.dtype);
        var report = Analysis.CostCounter.Count(this, x => call(x.to(dtype, device)), [1, _inChannels, _inputSize.Height, _inputSize.Width]);
        long macs = report.Layers.Where(l => l.Name.StartsWith("heads.", StringComparison.Ordinal)).Sum(l => l.Macs);
        long headParameters = named_parameters().Where(p => p.name.StartsWith("heads.", StringComparison.Ordinal)).Sum(p => p.parameter.numel())
            - Analysis.DeployedCost.FoldedAway(named_modules().Where(m => m.name.StartsWith("heads.", StringComparison.Ordinal)).Select(m => m.module));
        return (macs, headParameters);
    }

    public override string? PrepareTraining(int gateSteps)
    {
        if (budget is null) return null;
        budget.SetGateSteps(gateSteps);
        return $"{budget.Describe()}; λs adapted from {Options.LambdaS:G4} at rate {budget.Rate:G3} per gate step" +
               (budget.RampSteps > 0 ? $", the budget descending from STL's cost over the first {budget.RampSteps:0} gate steps" : "");
    }

    public override void PrepareSpeed(Func<Tensor> sample)
    {
        if (encoder is { Fusion: BranchFusion.Auto, FusedUnits: null })
        {
            // The encoder's input is the image batch itself; the measurement leaves weights, statistics and RNG as they were.
            bool wasTraining = training;
            train();
            try { encoder.UseFusion(Runtime.FusionTuner.Measure(encoder, sample())); }
            finally { train(wasTraining); }
        }
    }

    public override string? FixGates()
    {
        if (budget is null) return null;
        var (landed, message) = budget.Land(HardGates());
        using (no_grad())
            for (int l = 0; l < landed.Length; l++) Encoder.GateLayers[l].Force(landed[l]);
        return message;
    }

    /// <summary>The encoder leaves the copies no task reads uncomputed while the gates are fixed (<see cref="GatedEncoder.GatesFixed"/>).</summary>
    public override void SetGatesFixed(bool gatesFixed) => Encoder.GatesFixed = gatesFixed;

    public override void EndTraining()
    {
        Encoder.GatesFixed = false;
        _monitor.Release();
    }

    public InterroGateConfig Options { get; }
    /// <summary>The backbone every branch of the encoder has.</summary>
    public IEncoderSpec Spec { get; }
    /// <summary>The gated encoder (encoder.task_branches.{task}, encoder.shared, encoder.gates).</summary>
    public GatedEncoder Encoder => encoder;
    /// <summary>The head of task <paramref name="task"/>.</summary>
    public nn.Module<Tensor, Tensor> Head(string task) => heads[task];
    public override string Architecture => "interrogate";

    public override Dictionary<string, Tensor> forward(Tensor x)
    {
        var features = encoder.call(x);
        return Tasks.Select((t, i) => (t.Name, Out: Predict(t, heads[t.Name], features[i], x))).ToDictionary(p => p.Name, p => p.Out);
    }

    /// <summary>
    /// λ_s · L_s (Eq. 4). With a budget, each task's term is weighted by the budget's adapted λ while the pruned cost
    /// exceeds the target and by 0 under it. None while the gates are fixed: α no longer moves, so the term has no effect
    /// (and the epochs' regularizer in metrics.jsonl reads 0 there).
    /// </summary>
    public override Tensor? Regularizer()
    {
        if (Encoder.GatesFixed) return null;
        var alphas = Encoder.GateLayers.Select(g => (Tensor)g.Alpha).ToArray();
        return budget is null
            ? SparsityLoss.Compute(alphas, _tau, Options.Sparsity, _layerMacs, layerParts: _layerParts).Times(Options.LambdaS)
            : SparsityLoss.Compute(alphas, _tau, Options.Sparsity, _layerMacs, BudgetWeights(), _layerParts);
    }

    /// <summary>λ_s·∂L_s/∂α per gated layer: the sparsity loss's push on every gate (closed form, no graph).</summary>
    public Tensor[] SparsityPush()
    {
        var alphas = Encoder.GateLayers.Select(g => (Tensor)g.Alpha).ToArray();
        return budget is null
            ? SparsityLoss.Gradient(alphas, _tau, Options.Sparsity, _layerMacs, layerParts: _layerParts).Select(g => g.Times(Options.LambdaS)).ToArray()
            : SparsityLoss.Gradient(alphas, _tau, Options.Sparsity, _layerMacs, BudgetWeights(), _layerParts);
    }

    private double[] BudgetWeights() => _budgetWeights ??= budget!.Weights(HardGates());

    public override void ObserveGradients()
    {
        // Called inside the training step's dispose scope, which frees the hard-gate copies.
        var alphas = Encoder.GateLayers.Select(g => (Tensor)g.Alpha).ToArray();
        var push = SparsityPush();
        // Without a hysteresis the gates the step used are 1[α > 0], which the monitor reads from α itself.
        _monitor.Observe(alphas, push, Options.GateHysteresis > 0 ? Encoder.GateLayers.Select(g => g.Hard()).ToArray() : null);
        // The budget ranks gates by the task gradient on the gate itself, ∂L/∂G: α's gradient divided by σ'(α), so that
        // a gate the tasks want strongly (|α| large, σ'(α) small) does not look as if it mattered little.
        if (budget is not null && alphas.All(a => a.grad is not null))
        {
            using var tiny = Scalars.Of(1e-12);
            var onGates = new Tensor[alphas.Length];
            for (int l = 0; l < alphas.Length; l++)
            {
                using var s = alphas[l].detach().sigmoid();
                using var slope = s.mul(s.OneMinus()).clamp_min(tiny); // σ'(α)
                onGates[l] = alphas[l].grad!.add(push[l], Scalars.MinusOne).div(slope);
            }
            budget.Observe(onGates);
        }
    }

    public override void GatesStepped()
    {
        foreach (var g in Encoder.GateLayers) g.Step();
        if (budget is not null) _budgetWeights = budget.Update(HardGates());
    }

    public override IReadOnlyList<GateLayerStats> TakeGateStatistics()
    {
        var report = _monitor.Report(Encoder.GateLayers, MixedChannels());
        _monitor.Reset();
        return report;
    }

    /// <summary>Per gated layer, the channels whose β mix the network forms and reads with the current gates: those some
    /// task reads from its own copy, where some shared unit reading the layer keeps a filter (none otherwise).</summary>
    private long[][] MixedChannels()
    {
        var pattern = Sharing();
        var units = Encoder.Units;
        var kept = pattern.KeptPerUnit(units);
        var mixed = new long[pattern.Layers.Count][];
        foreach (var unit in units.Where(u => u.Gated))
            mixed[unit.GateIndex] = unit.HasMix && unit.ReadBy.Any(v => kept[v][pattern.Tasks].Length > 0) ? pattern[unit.GateIndex].Mixed : [];
        return mixed;
    }

    public override string? GateRegimeWarning(int gateSteps) =>
        GateMonitor.Verdict(_monitor.Report(Encoder.GateLayers), Options.LambdaS, Options.AlphaInit, Options.GateLr, gateSteps, Options.GateOptimizer);

    /// <summary>"weights" and "gates" (α and β of every gate layer, <c>gateOptimizer</c> at <c>gateLr</c>).</summary>
    public override IReadOnlyList<ParameterGroup> ParameterGroups() =>
        WeightsAndGates(Encoder.GateLayers.SelectMany(g => g.Beta is null ? new[] { g.Alpha } : new[] { g.Alpha, g.Beta }), Options.GateLr, Options.GateOptimizer);

    public override IEnumerable<Parameter> SharedParameters() => Encoder.SharedParameters();

    /// <summary>Hard gates per gated layer, task and channel (G = 1[α &gt; 0], or the hysteresis state).</summary>
    public IReadOnlyList<bool[][]> HardGates() => Encoder.HardGates();

    /// <summary>Fraction of gates that pick the task's own copy, per task and overall.</summary>
    public (double Overall, double[] PerTask) TaskSpecificFraction()
    {
        var pattern = Sharing();
        var perTask = Enumerable.Range(0, Tasks.Count).Select(pattern.TaskSpecificFraction).ToArray();
        return (perTask.Average(), perTask);
    }

    /// <summary>Cost of the encoder once pruned with the current gates (see <see cref="PrunedCost"/>).</summary>
    public PrunedCost PredictPrunedEncoderCost() => Encoder.PredictPrunedCost(Sharing());

    /// <summary>The sharing pattern of the current hard gates.</summary>
    public SharingPattern Sharing() => SharingPattern.FromGates(HardGates());

    public override string? Headline()
    {
        var (overall, _) = TaskSpecificFraction();
        string text = $"task-specific {100 * overall:F1}%";
        if (budget is not null) text += $", budget gap {budget.Relative(budget.Cost(HardGates())):+0.0%;-0.0%;+0.0%}";
        return text;
    }

    public override IReadOnlyDictionary<string, double> Diagnostics()
    {
        var (overall, perTask) = TaskSpecificFraction();
        var d = new Dictionary<string, double> { ["task_specific"] = overall };
        for (int t = 0; t < Tasks.Count; t++) d[$"task_specific/{Tasks[t].Name}"] = perTask[t];
        if (budget is not null)
        {
            var gates = HardGates();
            d["budget_target"] = budget.TargetCost();
            d["budget_cost"] = budget.Cost(gates);
            d["budget_gap"] = budget.Relative(d["budget_cost"]);
            var lambdas = budget.Lambda;
            var shares = budget.TaskShares(gates);
            for (int t = 0; t < Tasks.Count; t++)
            {
                d[$"budget_lambda/{Tasks[t].Name}"] = lambdas[t];
                d[$"budget_own_share/{Tasks[t].Name}"] = shares[t];
            }
        }
        return d;
    }
}
