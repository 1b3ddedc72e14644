using System.Text.Json.Serialization;
using InterroGate.Configuration;
using InterroGate.Gating;

namespace InterroGate.Architectures;

/// <summary>How tasks share the network; each method's hyperparameters live in its own record.</summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "type", UnknownDerivedTypeHandling = JsonUnknownDerivedTypeHandling.FailSerialization)]
[JsonDerivedType(typeof(SingleTaskConfig), "stl")]
[JsonDerivedType(typeof(HardSharingConfig), "mtl")]
[JsonDerivedType(typeof(InterroGateConfig), "interrogate")]
[JsonDerivedType(typeof(MtanConfig), "mtan")]
[JsonDerivedType(typeof(CrossStitchConfig), "cross-stitch")]
public abstract record ArchitectureConfig : IDescribed
{
    /// <summary>One line for `interrogate list`.</summary>
    [JsonIgnore] public abstract string Description { get; }

    /// <summary>Registry name (the JSON "type").</summary>
    [JsonIgnore] public abstract string Type { get; }

    /// <summary>True where the architecture is built on the stages of a ResNet (MTAN, cross-stitch) and takes no other backbone.</summary>
    [JsonIgnore] public virtual bool ResNetOnly => false;

    /// <summary>Throws <see cref="ConfigException"/> naming the key (under <paramref name="path"/>) and its valid range.</summary>
    public virtual void Validate(string path, int tasks) { }

    /// <summary>A freshly initialised model of this architecture for <paramref name="tasks"/> on <paramref name="spec"/>.</summary>
    public abstract MultiTaskModel CreateModel(Tasks.TaskSet tasks, Backbones.IEncoderSpec spec, (int Channels, int Height, int Width) image, Heads.HeadConfig? head = null);

    /// <summary>The ResNet an architecture built on ResNet stages needs.</summary>
    protected Backbones.ResNetSpec ResNetOf(Backbones.IEncoderSpec spec) =>
        spec as Backbones.ResNetSpec ?? throw new ConfigException("backbone.name", $"{Type} needs a ResNet backbone; got {spec.Name}");
}

/// <summary>STL: one network per task.</summary>
public sealed record SingleTaskConfig : ArchitectureConfig
{
    public override MultiTaskModel CreateModel(Tasks.TaskSet tasks, Backbones.IEncoderSpec spec, (int Channels, int Height, int Width) image, Heads.HeadConfig? head = null) =>
        new SingleTask(tasks, spec, image.Channels, head);
    [JsonIgnore] public override string Description => "single-task learning: one network per task";
    [JsonIgnore] public override string Type => "stl";
}

/// <summary>MTL: one shared encoder, one head per task.</summary>
public sealed record HardSharingConfig : ArchitectureConfig
{
    public override MultiTaskModel CreateModel(Tasks.TaskSet tasks, Backbones.IEncoderSpec spec, (int Channels, int Height, int Width) image, Heads.HeadConfig? head = null) =>
        new HardSharing(tasks, spec, image.Channels, head);
    [JsonIgnore] public override string Description => "hard sharing: one shared encoder, one head per task";
    [JsonIgnore] public override string Type => "mtl";
}

/// <summary>
/// InterroGate's hyperparameters. <see cref="Tau"/>: one budget per task, or one value
/// for every task. <see cref="AlphaInit"/>: initial gate logit (positive: tasks start specialised).
/// <see cref="GateLr"/>: learning rate of the separate SGD optimiser for α and β.
/// <see cref="NoiseTemperature"/>: Gumbel-sigmoid gate noise during training; 0 = off.
/// </summary>
public sealed record InterroGateConfig : ArchitectureConfig
{
    public override MultiTaskModel CreateModel(Tasks.TaskSet tasks, Backbones.IEncoderSpec spec, (int Channels, int Height, int Width) image, Heads.HeadConfig? head = null) =>
        new InterroGateModel(tasks, spec, image.Channels, (image.Height, image.Width), this, head);
    [JsonIgnore] public override string Description => "InterroGate: shared + per-task copies of every layer, learned per-channel gates, prunable";
    [JsonIgnore] public override string Type => "interrogate";
    public GatingMode Gating { get; init; } = GatingMode.Conv;
    public double LambdaS { get; init; } = 1.0;
    public IReadOnlyList<double> Tau { get; init; } = [0.0];
    public SparsityKind Sparsity { get; init; } = SparsityKind.Hinge;
    /// <summary>
    /// Small, so that the task gradient accumulated over the gate-learning steps can carry a gate across zero
    /// (docs/method.md, "The gate regime", R2); 0.5 needs a push so large that whole layers flip together.
    /// </summary>
    public double AlphaInit { get; init; } = 0.01;
    public double GateLr { get; init; } = 0.1;
    /// <summary>
    /// The gates' optimiser: SGD (default, the paper's) or Adam, whose per-gate step is about <see cref="GateLr"/> in the
    /// direction of the gate's running mean gradient whatever its size (docs/method.md, "The gate regime").
    /// </summary>
    public GateOptimizer GateOptimizer { get; init; } = GateOptimizer.Sgd;
    public double NoiseTemperature { get; init; }
    /// <summary>
    /// Gate chatter control: 0 (default) makes G = 1[α &gt; 0] at every step, as the paper writes it; h &gt; 0 switches a
    /// gate on only once α &gt; h and off only once α &lt; −h (see <see cref="Gating.GateLayer"/>). Chosen by measurement:
    /// bench/RESULTS.md, "Gate chatter".
    /// </summary>
    public double GateHysteresis { get; init; }
    /// <summary>How each unit's T+1 copies are computed: one call per branch, one fused call, or measured per unit.</summary>
    public BranchFusion Fusion { get; init; } = BranchFusion.Off;
    /// <summary>
    /// While the gates are fixed (the last epochs, evaluation), a copy that tasks read at only some channels computes
    /// only those filters (true, default) or all of them (false); see <see cref="Gating.GatedEncoder.KeptFiltersOnly"/>.
    /// Same function and gradients either way. Measured: bench/RESULTS.md, "Training with fixed gates".
    /// </summary>
    public bool KeptFiltersOnly { get; init; } = true;
    /// <summary>
    /// While the gates learn, whether the backward pass runs only through the filters some task reads (the others are
    /// computed without autograd, for the gates' gradient): true, false, or null (default) for true on the CPU and false
    /// on a GPU. See <see cref="Gating.GatedEncoder.BackwardReadFiltersOnly"/>. Same function and gradients either way.
    /// Measured: bench/RESULTS.md, "Gate-learning steps".
    /// </summary>
    public bool? BackwardReadFiltersOnly { get; init; }
    /// <summary>
    /// A compute budget to train to (<see cref="BudgetTarget"/>): λs is then adapted during training (starting from
    /// <see cref="LambdaS"/>) and the gates are landed on the budget when they are fixed. Null: λs stays as given.
    /// </summary>
    public BudgetTarget? Target { get; init; }

    /// <summary>τ for each of <paramref name="tasks"/> tasks.</summary>
    public double[] TauFor(int tasks) =>
        Tau.Count == 1 ? Enumerable.Repeat(Tau[0], tasks).ToArray()
        : Tau.Count == tasks ? Tau.ToArray()
        : throw new ConfigException("architecture.tau", $"has {Tau.Count} values; give one per task ({tasks}) or a single value");

    public override void Validate(string path, int tasks)
    {
        ConfigException.Require(double.IsFinite(LambdaS) && LambdaS >= 0, $"{path}.lambdaS", LambdaS, "≥ 0");
        ConfigException.Require(Tau.Count == 1 || Tau.Count == tasks || tasks <= 0 && Tau.Count > 0, $"{path}.tau", $"{Tau.Count} values", $"1 value or one per task ({tasks})");
        for (int i = 0; i < Tau.Count; i++)
            ConfigException.Require(Tau[i] is >= 0 and <= 1, $"{path}.tau[{i}]", Tau[i], "[0, 1]");
        ConfigException.Require(double.IsFinite(AlphaInit), $"{path}.alphaInit", AlphaInit, "a finite number");
        ConfigException.Require(GateLr > 0 && double.IsFinite(GateLr), $"{path}.gateLr", GateLr, "> 0");
        ConfigException.Require(NoiseTemperature >= 0 && double.IsFinite(NoiseTemperature), $"{path}.noiseTemperature", NoiseTemperature, "≥ 0 (0 = no noise)");
        ConfigException.Require(GateHysteresis >= 0 && double.IsFinite(GateHysteresis), $"{path}.gateHysteresis", GateHysteresis, "≥ 0 (0 = G = 1[α > 0] at every step)");
        if (Target is { } target)
        {
            target.Validate($"{path}.target", tasks);
            if (Tau.Any(t => t != 0))
                throw new ConfigException($"{path}.tau", $"[{string.Join(", ", Tau)}] with a target; give 0 (the target is the budget: the sparsity loss is applied while the cost exceeds it)");
            ConfigException.Require(LambdaS > 0, $"{path}.lambdaS", LambdaS, "> 0 with a target (the starting value of the adapted λs)");
        }
    }
}

/// <summary>MTAN: a shared encoder with per-task attention modules at every stage.</summary>
public sealed record MtanConfig : ArchitectureConfig
{
    public override MultiTaskModel CreateModel(Tasks.TaskSet tasks, Backbones.IEncoderSpec spec, (int Channels, int Height, int Width) image, Heads.HeadConfig? head = null) =>
        new Mtan(tasks, ResNetOf(spec), image.Channels, head);
    [JsonIgnore] public override string Description => "MTAN: shared encoder with per-task attention modules at every stage (Liu et al., CVPR 2019)";
    [JsonIgnore] public override string Type => "mtan";
    [JsonIgnore] public override bool ResNetOnly => true;
}

/// <summary>
/// Cross-stitch: one network per task joined by cross-stitch units after the stem and every stage.
/// <see cref="SelfWeight"/>: initial weight of a task's own channels (the rest is spread over the others);
/// <see cref="UnitLr"/>: learning rate of the units' SGD optimiser (higher than the weights', as in the paper).
/// </summary>
public sealed record CrossStitchConfig : ArchitectureConfig
{
    public override MultiTaskModel CreateModel(Tasks.TaskSet tasks, Backbones.IEncoderSpec spec, (int Channels, int Height, int Width) image, Heads.HeadConfig? head = null) =>
        new CrossStitch(tasks, ResNetOf(spec), image.Channels, SelfWeight, head, UnitLr);
    [JsonIgnore] public override string Description => "Cross-stitch: one network per task, per-channel cross-stitch units after every stage (Misra et al., CVPR 2016)";
    [JsonIgnore] public override string Type => "cross-stitch";
    [JsonIgnore] public override bool ResNetOnly => true;
    public double SelfWeight { get; init; } = 0.9;
    public double UnitLr { get; init; } = 0.1;

    public override void Validate(string path, int tasks)
    {
        ConfigException.Require(SelfWeight is >= 0 and <= 1, $"{path}.selfWeight", SelfWeight, "[0, 1]");
        ConfigException.Require(UnitLr > 0 && double.IsFinite(UnitLr), $"{path}.unitLr", UnitLr, "> 0");
    }
}
