using System.Text.Json.Serialization;
using InterroGate.Architectures;
using InterroGate.Balancing;
using InterroGate.Training;

namespace InterroGate.Configuration;

/// <summary>
/// Where the data comes from. Dataset: one of <see cref="DataCatalog.Names"/> (multifashion, folder (a user data set),
/// synthetic, fashion-scenes, nyudv2, celeba, pascal-context). The sizes draw subsets of the generated and the CelebA
/// data; folder, nyudv2 and pascal-context read their splits whole and refuse other sizes.
/// </summary>
public sealed record DataConfig
{
    public string Dataset { get; init; } = "multifashion";
    /// <summary>Folder of the data (default for multifashion: the Debian package's folder).</summary>
    public string? Root { get; init; }
    public int TrainSize { get; init; } = 50_000;
    public int ValidationSize { get; init; } = 10_000;
    public int TestSize { get; init; } = 10_000;
    public int Seed { get; init; }
    /// <summary>
    /// nyudv2 and pascal-context: leave out the ids of a split list whose files are missing (counted and reported)
    /// instead of failing on the first one.
    /// </summary>
    public bool SkipMissing { get; init; }
    /// <summary>
    /// celeba: the tasks, task name to CelebA attribute (for example {"smile": "Smiling"}); null: the paper's three,
    /// gender = Male, age = Young, clothes = Wearing_Necktie (why: docs/datasets.md). trainSize, validationSize and
    /// testSize draw seeded subsets of the official splits (162,770 / 19,867 / 19,962 images: the celeba presets use
    /// them whole).
    /// </summary>
    public IReadOnlyDictionary<string, string>? Attributes { get; init; }
    /// <summary>celeba: side of the square images the model reads (central square crop, then area resize); the paper: 32.</summary>
    public int ImageSize { get; init; } = 32;
    /// <summary>celeba: folder of the decoded-image cache; null: $XDG_CACHE_HOME/interrogate (~/.cache/interrogate).</summary>
    public string? Cache { get; init; }

    public void Validate(string path)
    {
        ConfigException.Require(DataCatalog.Names.Contains(Dataset), $"{path}.dataset", Dataset, string.Join(", ", DataCatalog.Names));
        ConfigException.Require(TrainSize > 0, $"{path}.trainSize", TrainSize, "> 0");
        ConfigException.Require(ValidationSize > 0, $"{path}.validationSize", ValidationSize, "> 0");
        ConfigException.Require(TestSize > 0, $"{path}.testSize", TestSize, "> 0");
        if (Dataset == "folder") ConfigException.Require(!string.IsNullOrWhiteSpace(Root), $"{path}.root", "(none)", "the folder holding tasks.json");
        ConfigException.Require(ImageSize is >= 8 and <= 1024, $"{path}.imageSize", ImageSize, "8 to 1024");
        // Keys only some data sets read: set for another, they would be ignored.
        if (Dataset != "celeba")
        {
            int standard = new DataConfig().ImageSize;
            ConfigException.Require(ImageSize == standard, $"{path}.imageSize", ImageSize, $"left at its default ({standard}): only celeba resizes its images; {Dataset} has a size of its own");
            ConfigException.Require(Cache is null, $"{path}.cache", Cache, $"unset: only celeba keeps a cache of its decoded images");
        }
        if (SkipMissing)
            ConfigException.Require(Dataset is "nyudv2" or "pascal-context", $"{path}.skipMissing", true,
                "false: only nyudv2 and pascal-context read split lists whose files can be missing");
        if (Attributes is not null)
        {
            ConfigException.Require(Dataset == "celeba", $"{path}.attributes", "(given)", "only with dataset celeba");
            ConfigException.Require(Attributes.Count > 0, $"{path}.attributes", "{}", "at least one task: {\"name\": \"CelebA attribute\"}");
            foreach (var (task, attribute) in Attributes)
                ConfigException.Require(!string.IsNullOrWhiteSpace(task) && !string.IsNullOrWhiteSpace(attribute), $"{path}.attributes", $"'{task}': '{attribute}'",
                    "task names and attribute names that are not empty");
            foreach (var task in Attributes.Keys)
                if (InterroGate.Tasks.TaskSpec.NameProblem(task) is { } problem && !string.IsNullOrWhiteSpace(task))
                    throw new ConfigException($"{path}.attributes", $"task '{task}' cannot be a task's name: {problem}");
        }
        if (DataCatalog.NeedsRoot(Dataset))
            ConfigException.Require(!string.IsNullOrWhiteSpace(Root), $"{path}.root", "(none)", $"the folder of the {Dataset} data on disk");
        if (Dataset is "folder" or "nyudv2" or "pascal-context")
        {
            // These read their splits whole (a folder's train/val/test, the benchmarks' split lists): a size would be ignored.
            var defaults = new DataConfig();
            foreach (var (key, value, standard) in new[] { ("trainSize", TrainSize, defaults.TrainSize), ("validationSize", ValidationSize, defaults.ValidationSize), ("testSize", TestSize, defaults.TestSize) })
                ConfigException.Require(value == standard, $"{path}.{key}", value,
                    $"left at its default ({standard}): {Dataset} reads its splits whole" + (Dataset == "folder" ? " (the train, val and test folders)" : " (validation and test are the val split)"));
        }
    }
}

/// <summary>
/// The encoder: name (see <see cref="Backbones.BackboneCatalog"/>), width multiplier (ResNet-20 only; 1 for every
/// other backbone) and output stride: 8, 16 or 32 for the torchvision ResNets (8 and 16 dilate the last stages),
/// 32 for ResNet-20. HRNets are never dilated and always have stride 4: for them <see cref="OutputStride"/> is
/// 4 or left at its default 32, which then means "the backbone's own" (any other value is an error).
/// </summary>
public sealed record BackboneConfig
{
    public string Name { get; init; } = "resnet20";
    public double Width { get; init; } = 1.0;
    public int OutputStride { get; init; } = 32;

    public void Validate(string path)
    {
        if (Backbones.BackboneCatalog.Invalid(Name, Width, OutputStride) is { } bad)
            ConfigException.Require(false, $"{path}.{bad.Key}", bad.Value, bad.Valid);
    }

    /// <summary>
    /// Throws <see cref="ConfigException"/> on <c>{path}.name</c> unless this backbone is a ResNet, which
    /// <paramref name="architecture"/> (MTAN, cross-stitch: built on the ResNet stages) needs.
    /// </summary>
    public void RequireResNet(string architecture, string path)
    {
        if (!Backbones.BackboneCatalog.ResNets.Contains(Name))
            throw new ConfigException($"{path}.name", $"{architecture} needs a ResNet backbone ({string.Join(", ", Backbones.BackboneCatalog.ResNets)}); got {Name}");
    }
}

/// <summary>Optimisation: Adam for the weights, the schedule, epochs, seed.</summary>
public sealed record TrainingConfig
{
    public int Epochs { get; init; } = 10;
    public int BatchSize { get; init; } = 128;
    public int EvalBatchSize { get; init; } = 500;
    public double Lr { get; init; } = 1e-3;
    /// <summary>
    /// The heads' learning rate where it differs from <see cref="Lr"/> (the paper's ViT setting: 1e-5 for the encoder,
    /// 1e-4 for the heads); null: the heads train at <see cref="Lr"/>. The schedule scales both.
    /// </summary>
    public double? HeadLr { get; init; }
    public double WeightDecay { get; init; } = 1e-4;
    public LearningRateSchedule Schedule { get; init; } = new();
    public int Seed { get; init; }
    /// <summary>CPU threads for libtorch; 0 = its default.</summary>
    public int Threads { get; init; }
    /// <summary>Stop each epoch after this many steps (0 = all); for smoke runs.</summary>
    public int MaxStepsPerEpoch { get; init; }
    /// <summary>
    /// The last this-many epochs keep the model's gate parameters fixed (where it has any) and train only the
    /// weights, so they adapt to the final sharing pattern instead of meeting gate flips at a vanishing
    /// learning rate.
    /// </summary>
    public int FreezeGatesLastEpochs { get; init; }
    /// <summary>
    /// Before every validation, replace the batch-norm running statistics by their average over this many training
    /// batches with the weights and gates of the moment (<see cref="Training.BatchNormStatistics"/>; docs/method.md,
    /// "Batch-norm statistics"), so validation, the saved checkpoints, the test split and the pruned network use
    /// statistics of the network that exists. 0 (default): the running statistics as training left them.
    /// </summary>
    public int BnBatches { get; init; }
    /// <summary>Where to train: cpu, cuda or cuda:N (`--device`).</summary>
    public string Device { get; init; } = "cpu";
    /// <summary>TF32 matrix math on CUDA (faster convolutions and matrix products at ~10-bit mantissa precision); no effect on CPU.</summary>
    public bool Tf32 { get; init; } = true;
    /// <summary>
    /// The forward pass's arithmetic: fp32, or bf16 (mixed precision through libtorch's autocast: convolutions and
    /// matrix products in bfloat16; reductions, normalisations, losses, weights and their updates in float32).
    /// </summary>
    public Runtime.Precision Precision { get; init; } = Runtime.Precision.Fp32;
    /// <summary>Images in channels-last (NHWC) memory order, so convolutions run in that layout (cuDNN's fastest on tensor cores).</summary>
    public bool ChannelsLast { get; init; }
    /// <summary>
    /// Optimisers that keep each parameter group in one buffer and update it with a few kernels (true, default), as
    /// PyTorch's multi-tensor optimisers do, or TorchSharp's, which step parameter by parameter (false). Same
    /// arithmetic and checkpoint format; the flat ones launch far fewer kernels per step.
    /// </summary>
    public bool FlatOptimizer { get; init; } = true;
    /// <summary>Where in-memory training and validation splits are held: auto (on the GPU when training there and they fit in 2 GiB), device or host.</summary>
    public Data.DataResidence DataOn { get; init; } = Data.DataResidence.Auto;
    /// <summary>
    /// Bit-identical CPU runs: no choice that depends on timings (<c>fusion: auto</c> is refused) and TF32 off. Two CPU
    /// runs of one configuration then give the same weights bit for bit on any machine with the same thread count
    /// (<see cref="Threads"/>; its default is the machine's core count, and libtorch's parallel reductions add in an
    /// order that depends on it). CUDA runs are refused: TorchSharp 0.107 cannot switch libtorch to its deterministic
    /// CUDA kernels, some of which add in a varying order.
    /// </summary>
    public bool Deterministic { get; init; }

    public void Validate(string path)
    {
        ConfigException.Require(Runtime.Devices.IsWellFormed(Device), $"{path}.device", Device, Runtime.Devices.Valid);
        ConfigException.Require(Epochs > 0, $"{path}.epochs", Epochs, "> 0");
        ConfigException.Require(BatchSize > 0, $"{path}.batchSize", BatchSize, "> 0");
        ConfigException.Require(EvalBatchSize > 0, $"{path}.evalBatchSize", EvalBatchSize, "> 0");
        ConfigException.Require(Lr > 0 && double.IsFinite(Lr), $"{path}.lr", Lr, "> 0");
        if (HeadLr is { } headLr) ConfigException.Require(headLr > 0 && double.IsFinite(headLr), $"{path}.headLr", headLr, "> 0, or null for lr");
        ConfigException.Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), $"{path}.weightDecay", WeightDecay, "≥ 0");
        ConfigException.Require(Schedule.StepSize > 0, $"{path}.schedule.stepSize", Schedule.StepSize, "> 0");
        ConfigException.Require(Schedule.Gamma is > 0 and <= 1, $"{path}.schedule.gamma", Schedule.Gamma, "(0, 1]");
        ConfigException.Require(Schedule.Power > 0 && double.IsFinite(Schedule.Power), $"{path}.schedule.power", Schedule.Power, "> 0");
        ConfigException.Require(Threads is >= 0 and <= 1024, $"{path}.threads", Threads, $"0 (default: the {Environment.ProcessorCount} cores here) to 1024 (more threads than cores slow a run down)");
        ConfigException.Require(MaxStepsPerEpoch >= 0, $"{path}.maxStepsPerEpoch", MaxStepsPerEpoch, "≥ 0 (0 = whole epochs)");
        ConfigException.Require(BnBatches >= 0, $"{path}.bnBatches", BnBatches, "≥ 0 (training batches to re-estimate batch-norm statistics from before each validation; 0 = off)");
        if (Deterministic)
            ConfigException.Require(Device == "cpu", $"{path}.deterministic", true, "false on CUDA (bit-identical runs are for the CPU; set training.device=cpu)");
        ConfigException.Require(FreezeGatesLastEpochs >= 0 && FreezeGatesLastEpochs < Epochs, $"{path}.freezeGatesLastEpochs", FreezeGatesLastEpochs, $"0 to {Epochs - 1} (fewer than {path}.epochs; presets set it, so lowering the epochs may need it lowered too)");
    }
}

/// <summary>How task losses (or their gradients) are combined; one record per method, named by "type".</summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "type")]
[JsonDerivedType(typeof(UniformBalancerConfig), "uniform")]
[JsonDerivedType(typeof(FixedWeightsBalancerConfig), "fixed")]
[JsonDerivedType(typeof(DwaBalancerConfig), "dwa")]
[JsonDerivedType(typeof(RlwBalancerConfig), "rlw")]
[JsonDerivedType(typeof(PCGradBalancerConfig), "pcgrad")]
[JsonDerivedType(typeof(CAGradBalancerConfig), "cagrad")]
[JsonDerivedType(typeof(MgdaBalancerConfig), "mgda")]
[JsonDerivedType(typeof(MgdaUbBalancerConfig), "mgda-ub")]
[JsonDerivedType(typeof(ImtlGBalancerConfig), "imtl-g")]
[JsonDerivedType(typeof(NashMtlBalancerConfig), "nash-mtl")]
[JsonDerivedType(typeof(AlignedMtlBalancerConfig), "aligned-mtl")]
[JsonDerivedType(typeof(UncertaintyBalancerConfig), "uncertainty")]
[JsonDerivedType(typeof(GradNormBalancerConfig), "gradnorm")]
[JsonDerivedType(typeof(FamoBalancerConfig), "famo")]
[JsonDerivedType(typeof(AutoLambdaBalancerConfig), "auto-lambda")]
public abstract record BalancerConfig : IDescribed
{
    /// <summary>One line for `interrogate list`.</summary>
    [JsonIgnore] public abstract string Description { get; }

    public abstract IBalancer Create(int tasks);
    public virtual void Validate(string path, int tasks) { }

    /// <summary>
    /// Whether the method works on the gradients of the parameters every task shares (the gradient methods and
    /// GradNorm): with none (STL, cross-stitch) it is the plain sum.
    /// </summary>
    [JsonIgnore] public virtual bool BalancesSharedGradients => false;
}

public sealed record UniformBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override string Description => "Σ_t L_t";
    public override IBalancer Create(int tasks) => FixedWeights.Uniform(tasks);
}

public sealed record FixedWeightsBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override string Description => "Σ_t ω_t L_t with given weights";
    public IReadOnlyList<double> Weights { get; init; } = [];
    public override IBalancer Create(int tasks) => new FixedWeights(Weights);

    public override void Validate(string path, int tasks)
    {
        ConfigException.Require(Weights.Count == tasks || tasks <= 0 && Weights.Count > 0, $"{path}.weights", $"{Weights.Count} weights", $"one per task ({tasks})");
        for (int i = 0; i < Weights.Count; i++)
            ConfigException.Require(Weights[i] >= 0 && double.IsFinite(Weights[i]), $"{path}.weights[{i}]", Weights[i], "≥ 0");
    }
}

/// <summary>DWA (<see cref="Dwa"/>): temperature τ &gt; 0 (2 in the paper).</summary>
public sealed record DwaBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override string Description => "Dynamic Weight Average: weights from the ratio of each task's last two epoch losses (Liu et al., CVPR 2019)";
    public double Temperature { get; init; } = 2;
    public override IBalancer Create(int tasks) => new Dwa(tasks, Temperature);
    public override void Validate(string path, int tasks) =>
        ConfigException.Require(Temperature > 0 && double.IsFinite(Temperature), $"{path}.temperature", Temperature, "> 0");
}

/// <summary>RLW (<see cref="Rlw"/>): no hyperparameters.</summary>
public sealed record RlwBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override string Description => "Random Loss Weighting: softmax of normal draws at every step (Lin et al., TMLR 2022)";
    public override IBalancer Create(int tasks) => new Rlw(tasks);
}

/// <summary>PCGrad (<see cref="Balancing.PCGrad"/>): no hyperparameters.</summary>
public sealed record PCGradBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override bool BalancesSharedGradients => true;
    [JsonIgnore] public override string Description => "PCGrad: project out conflicting gradient components (Yu et al., NeurIPS 2020)";
    public override IBalancer Create(int tasks) => new PCGrad();
}

/// <summary>CAGrad (<see cref="Balancing.CAGrad"/>): c ≥ 0, the radius of the ball around the average gradient (0.4 in the paper's image experiments).</summary>
public sealed record CAGradBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override bool BalancesSharedGradients => true;
    [JsonIgnore] public override string Description => "CAGrad: best worst-task improvement near the mean gradient (Liu et al., NeurIPS 2021)";
    public double C { get; init; } = 0.4;
    public override IBalancer Create(int tasks) => new CAGrad(C);
    public override void Validate(string path, int tasks) =>
        ConfigException.Require(C >= 0 && double.IsFinite(C), $"{path}.c", C, "≥ 0");
}

/// <summary>MGDA (<see cref="Mgda"/>): normalize = scale the task gradients to unit length before solving.</summary>
public sealed record MgdaBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override bool BalancesSharedGradients => true;
    [JsonIgnore] public override string Description => "MGDA: min-norm point of the task gradients' convex hull (Sener & Koltun, NeurIPS 2018)";
    public bool Normalize { get; init; }
    public override IBalancer Create(int tasks) => new Mgda(Normalize);
}

/// <summary>MGDA-UB (<see cref="MgdaUb"/>): normalize as for MGDA.</summary>
public sealed record MgdaUbBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override bool BalancesSharedGradients => true;
    [JsonIgnore] public override string Description => "MGDA-UB: MGDA's weights from gradients at the shared representation (Sener & Koltun, NeurIPS 2018)";
    public bool Normalize { get; init; }
    public override IBalancer Create(int tasks) => new MgdaUb(Normalize);
}

/// <summary>IMTL-G (<see cref="ImtlG"/>): no hyperparameters.</summary>
public sealed record ImtlGBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override bool BalancesSharedGradients => true;
    [JsonIgnore] public override string Description => "IMTL-G: equal projection onto every task's unit gradient (Liu et al., ICLR 2021)";
    public override IBalancer Create(int tasks) => new ImtlG();
}

/// <summary>Nash-MTL (<see cref="NashMtl"/>): no hyperparameters.</summary>
public sealed record NashMtlBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override bool BalancesSharedGradients => true;
    [JsonIgnore] public override string Description => "Nash-MTL: the Nash bargaining update, (GGᵀ)α = 1/α (Navon et al., ICML 2022)";
    public override IBalancer Create(int tasks) => new NashMtl();
}

/// <summary>Aligned-MTL (<see cref="AlignedMtl"/>): no hyperparameters.</summary>
public sealed record AlignedMtlBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override bool BalancesSharedGradients => true;
    [JsonIgnore] public override string Description => "Aligned-MTL: gradients aligned to an orthogonal equal-norm set (Senushkin et al., CVPR 2023)";
    public override IBalancer Create(int tasks) => new AlignedMtl();
}

/// <summary>Uncertainty weighting (<see cref="Balancing.Uncertainty"/>): the log-variances train with the weights.</summary>
public sealed record UncertaintyBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override string Description => "Uncertainty weighting: learned log-variances, exp(−s)L + s (Kendall et al., CVPR 2018)";
    public override IBalancer Create(int tasks) => new Uncertainty(tasks);
}

/// <summary>GradNorm (<see cref="GradNorm"/>): alpha ≥ 0 (1.5 in the paper's NYUv2 runs), weightLr &gt; 0 for the weights' Adam.</summary>
public sealed record GradNormBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override bool BalancesSharedGradients => true;
    [JsonIgnore] public override string Description => "GradNorm: weights that balance gradient norms by training rate (Chen et al., ICML 2018)";
    public double Alpha { get; init; } = 1.5;
    public double WeightLr { get; init; } = 0.025;
    public override IBalancer Create(int tasks) => new GradNorm(tasks, Alpha, WeightLr);
    public override void Validate(string path, int tasks)
    {
        ConfigException.Require(Alpha >= 0 && double.IsFinite(Alpha), $"{path}.alpha", Alpha, "≥ 0");
        ConfigException.Require(WeightLr > 0 && double.IsFinite(WeightLr), $"{path}.weightLr", WeightLr, "> 0");
    }
}

/// <summary>Auto-λ (<see cref="AutoLambda"/>): lr &gt; 0 of the weights' Adam (1e-3 from λ = 1, as the authors' 1e-4 from λ = 0.1).</summary>
public sealed record AutoLambdaBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override string Description => "Auto-λ: weights meta-learned through a virtual step, judged on training data in another order (Liu et al., TMLR 2022)";
    public double Lr { get; init; } = 1e-3;
    public override IBalancer Create(int tasks) => new AutoLambda(tasks, Lr);
    public override void Validate(string path, int tasks) =>
        ConfigException.Require(Lr > 0 && double.IsFinite(Lr), $"{path}.lr", Lr, "> 0");
}

/// <summary>FAMO (<see cref="Famo"/>): lr &gt; 0 and weightDecay ≥ 0 of the logits' Adam (0.025 and 0.001 in the paper).</summary>
public sealed record FamoBalancerConfig : BalancerConfig
{
    [JsonIgnore] public override string Description => "FAMO: weights that balance the rates of log-loss decrease, one extra forward pass (Liu et al., NeurIPS 2023)";
    public double Lr { get; init; } = 0.025;
    public double WeightDecay { get; init; } = 0.001;
    public override IBalancer Create(int tasks) => new Famo(tasks, Lr, WeightDecay);
    public override void Validate(string path, int tasks)
    {
        ConfigException.Require(Lr > 0 && double.IsFinite(Lr), $"{path}.lr", Lr, "> 0");
        ConfigException.Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), $"{path}.weightDecay", WeightDecay, "≥ 0");
    }
}

/// <summary>
/// Trained models an InterroGate run starts from: per task an STL checkpoint for that task's
/// branch and head, and an MTL checkpoint for the shared branch. Either part may be left out.
/// </summary>
public sealed record StartFrom
{
    public IReadOnlyDictionary<string, string> Stl { get; init; } = new Dictionary<string, string>();
    public string? Mtl { get; init; }
    /// <summary>
    /// Pretrained backbone weights (safetensors or a PyTorch state dict: .pth, .pt) loaded by name into every backbone
    /// of the model, before any STL or MTL start (which then overwrite what they hold); any architecture.
    /// </summary>
    public string? Pretrained { get; init; }
}

/// <summary>One training run: data, tasks, backbone, architecture, optimisation, loss balancing.</summary>
public sealed record RunConfig
{
    public string Name { get; init; } = "run";
    public DataConfig Data { get; init; } = new();
    /// <summary>Task names to learn (a subset of the data set's, in this order); null = all.</summary>
    public IReadOnlyList<string>? Tasks { get; init; }
    public BackboneConfig Backbone { get; init; } = new();
    /// <summary>The dense tasks' heads (image-level tasks always get a linear head).</summary>
    public Heads.HeadConfig Head { get; init; } = new();
    public ArchitectureConfig Architecture { get; init; } = new InterroGateConfig();
    public TrainingConfig Training { get; init; } = new();
    public BalancerConfig Balancer { get; init; } = new UniformBalancerConfig();
    /// <summary>Pretrained weights (any architecture) and trained STL/MTL checkpoints to start from; null = random start.</summary>
    public StartFrom? StartFrom { get; init; }

    /// <summary>
    /// Checks every value; task-dependent checks use the number of tasks the run will learn (0: not known yet, as before
    /// the data set is opened; a per-task list then only needs to be non-empty, and is checked again once it is known).
    /// </summary>
    public void Validate(int tasks) => Validate(tasks, "training");

    /// <summary><see cref="Validate(int)"/> with the training section named <paramref name="training"/> in messages (a comparison's InterroGate runs: interroGateTraining).</summary>
    internal void Validate(int tasks, string training)
    {
        ConfigException.Require(!string.IsNullOrWhiteSpace(Name), "name", "(empty)", "a non-empty name");
        foreach (var (key, section) in new (string, object?)[] { ("data", Data), ("backbone", Backbone), ("head", Head), ("architecture", Architecture), (training, Training), ("balancer", Balancer) })
            if (section is null) throw new ConfigException(key, "is null; leave the key out for its defaults, or give an object");
        Data.Validate("data");
        if (Tasks is not null) ConfigException.Require(Tasks.Count > 0, "tasks", "[]", "at least one task name, or leave it out for all");
        Backbone.Validate("backbone");
        Head.Validate("head");
        Architecture.Validate("architecture", tasks);
        if (Architecture.ResNetOnly) Backbone.RequireResNet(Architecture.Type, "backbone");
        Training.Validate(training);
        if (Architecture is InterroGateConfig { Target: not null } && Training.FreezeGatesLastEpochs < 1)
            throw new ConfigException($"{training}.freezeGatesLastEpochs", Training.Epochs < 2
                ? $"{Training.FreezeGatesLastEpochs} with architecture.target and {Training.Epochs} epoch: a budget needs at least 2 epochs ({training}.epochs), " +
                  "the gates learned in the first and fixed on the target for the last"
                : $"{Training.FreezeGatesLastEpochs} with architecture.target; give 1 to {Training.Epochs - 1} (the gates are landed on the target, then the weights train with them fixed)");
        Balancer.Validate("balancer", tasks);
        if (Training.Deterministic && Architecture is InterroGateConfig { Fusion: Gating.BranchFusion.Auto })
            throw new ConfigException("architecture.fusion", $"auto chooses by timing, which varies from run to run; with {training}.deterministic use on or off");
        if (Balancer.BalancesSharedGradients && Architecture is CrossStitchConfig)
            throw new ConfigException("balancer.type", $"{Registry<BalancerConfig>.NameOf(Balancer)} balances the gradients of the parameters every task shares, and cross-stitch has " +
                                                       "none (each task has its own network; the stitch units mix their features), so it would train as the plain sum; " +
                                                       "use a method that weighs the losses (uniform, fixed, dwa, rlw, uncertainty, famo, auto-lambda), or mtl, mtan or interrogate");
        if (Balancer is MgdaUbBalancerConfig && Architecture is not HardSharingConfig)
            throw new ConfigException("balancer.type", $"mgda-ub balances the gradients of the one representation every head reads, which only mtl has (architecture: {Architecture.Type}); use mgda");
        if (StartFrom?.Pretrained is { } pretrained)
        {
            ConfigException.Require(File.Exists(pretrained), "startFrom.pretrained", pretrained, "an existing .safetensors or PyTorch state dict (.pth, .pt, .bin) file");
            ConfigException.Require(Path.GetExtension(pretrained).ToLowerInvariant() is ".safetensors" or ".pth" or ".pt" or ".bin",
                "startFrom.pretrained", pretrained, "a .safetensors, .pth, .pt or .bin file");
        }
        // Checkpoint starts (stl, mtl) are for the architectures built from them; pretrained weights are for any.
        if (StartFrom is not null && (StartFrom.Stl.Count > 0 || StartFrom.Mtl is not null || StartFrom.Pretrained is null))
        {
            ConfigException.Require(Architecture is InterroGateConfig or SingleTaskConfig or CrossStitchConfig, "startFrom", Architecture.Type,
                "InterroGate runs (from STL and MTL checkpoints), cross-stitch runs (from STL checkpoints), STL runs (from an MTL checkpoint), " +
                "or any run with startFrom.pretrained alone");
            if (Architecture is CrossStitchConfig)
                ConfigException.Require(StartFrom.Mtl is null, "startFrom.mtl", StartFrom.Mtl, "empty for a cross-stitch run (its networks start from startFrom.stl)");
            if (Architecture is SingleTaskConfig)
            {
                ConfigException.Require(StartFrom.Stl.Count == 0, "startFrom.stl", string.Join(", ", StartFrom.Stl.Keys), "empty for an STL run (its encoders start from startFrom.mtl)");
                ConfigException.Require(StartFrom.Mtl is not null, "startFrom.mtl", "(missing)", "an MTL checkpoint for an STL run to start from");
            }
            foreach (var (task, path) in StartFrom.Stl)
                ConfigException.Require(File.Exists(path), $"startFrom.stl.{task}", path, "an existing checkpoint file");
            if (StartFrom.Mtl is not null) ConfigException.Require(File.Exists(StartFrom.Mtl), "startFrom.mtl", StartFrom.Mtl, "an existing checkpoint file");
        }
    }
}

/// <summary>
/// The paper's protocol: STL per task, MTL, then InterroGate at each λ_s of <see cref="LambdaS"/>,
/// started from the STL and MTL checkpoints when <see cref="InitialiseFromBaselines"/>.
/// </summary>
public sealed record CompareConfig
{
    public string Name { get; init; } = "compare";
    public DataConfig Data { get; init; } = new();
    public IReadOnlyList<string>? Tasks { get; init; }
    public BackboneConfig Backbone { get; init; } = new();
    /// <summary>The dense tasks' heads, the same in every row.</summary>
    public Heads.HeadConfig Head { get; init; } = new();
    /// <summary>Optimisation of the STL and MTL baselines.</summary>
    public TrainingConfig Training { get; init; } = new();
    /// <summary>Optimisation of the InterroGate runs (default: as the baselines).</summary>
    public TrainingConfig? InterroGateTraining { get; init; }

    /// <summary>Every run of the comparison on <paramref name="device"/>: the baselines' and the InterroGate runs' training.</summary>
    public CompareConfig OnDevice(string device) => this with
    {
        Training = Training with { Device = device },
        InterroGateTraining = InterroGateTraining is null ? null : InterroGateTraining with { Device = device },
    };
    /// <summary>InterroGate's options; its lambdaS is replaced by each value of <see cref="LambdaS"/>.</summary>
    public InterroGateConfig InterroGate { get; init; } = new();
    public IReadOnlyList<double> LambdaS { get; init; } = [0.5, 2, 8];
    /// <summary>
    /// Compute budgets to train InterroGate to, one run each, instead of the λs list (which must then be empty):
    /// e.g. [{"fraction": 0.25}, {"fraction": 0.5}, {"macs": 4.2e6}]. Null or empty: the λs list.
    /// </summary>
    public IReadOnlyList<Gating.BudgetTarget>? Targets { get; init; }
    public bool InitialiseFromBaselines { get; init; } = true;
    /// <summary>
    /// Trains MTL first and starts every STL encoder from its trained encoder, so that all the branches
    /// InterroGate combines descend from one network (the role ImageNet weights play in the paper) and a
    /// channel that switches from a task branch to the shared one keeps its meaning.
    /// </summary>
    public bool StlStartsFromMtl { get; init; }
    public BalancerConfig Balancer { get; init; } = new UniformBalancerConfig();
    /// <summary>
    /// Further MTL rows: the shared encoder trained with each of these loss-balancing methods (same data,
    /// backbone, optimisation and seed as the MTL row), e.g. [{"type": "pcgrad"}, {"type": "dwa"}].
    /// </summary>
    public IReadOnlyList<BalancerConfig> Methods { get; init; } = [];
    /// <summary>
    /// Further architecture rows trained with <see cref="Training"/>, e.g. [{"type": "mtan"}, {"type": "cross-stitch"}];
    /// a cross-stitch network starts from the STL models when <see cref="InitialiseFromBaselines"/> is set.
    /// </summary>
    public IReadOnlyList<ArchitectureConfig> Architectures { get; init; } = [];
    /// <summary>
    /// Training seeds: the whole protocol runs once per seed (folders seed-{s}), and the table reports every row as
    /// mean ± std over them, as the paper's Tables 10-11 do. Null: one run with <c>training.seed</c>. The data split
    /// (<c>data.seed</c>) is the same for every seed.
    /// </summary>
    public IReadOnlyList<int>? Seeds { get; init; }
    /// <summary>
    /// Further InterroGate settings to sweep: config key (a run's key path, e.g. <c>architecture.gateLr</c> or
    /// <c>training.lr</c>) to the values to try. Every InterroGate run is made for each λs of <see cref="LambdaS"/>
    /// and each combination of the grid's values; the STL and MTL runs are shared by all (so keys of data, tasks,
    /// backbone and head cannot vary here). Null: λs only.
    /// </summary>
    public IReadOnlyDictionary<string, IReadOnlyList<System.Text.Json.JsonElement>>? Grid { get; init; }
    /// <summary>
    /// τ values tried for every task independently (the paper's appendix F.3: 0, 0.25, 0.75, 1): each combination of
    /// one value per task is an <c>architecture.tau</c> of the sweep (4 values and 3 tasks: 64 combinations). Null: the
    /// τ of <see cref="InterroGate"/>.
    /// </summary>
    public IReadOnlyList<double>? TauGrid { get; init; }
    /// <summary>
    /// Pretrained backbone weights for every run (startFrom.pretrained of each: safetensors or a PyTorch state dict);
    /// InterroGate's branches then start from the STL and MTL runs, which started from these weights.
    /// </summary>
    public string? Pretrained { get; init; }

    /// <summary>Checks <see cref="Seeds"/>: not empty, no seed twice, none negative.</summary>
    public void ValidateSeeds()
    {
        if (Seeds is null) return;
        ConfigException.Require(Seeds.Count > 0, "seeds", "[]", "at least one seed (or leave it out for one run with training.seed)");
        ConfigException.Require(Seeds.Distinct().Count() == Seeds.Count, "seeds", $"[{string.Join(", ", Seeds)}]", "distinct seeds (a seed given twice would train the same runs twice)");
        for (int i = 0; i < Seeds.Count; i++) ConfigException.Require(Seeds[i] >= 0, $"seeds[{i}]", Seeds[i], "≥ 0");
    }

    /// <summary>This comparison for one seed: every run trains with <paramref name="seed"/>.</summary>
    /// <summary>An InterroGate run's checks, its training keys named as the comparison's section that sets them.</summary>
    private void ValidateInterroGateRun(RunConfig run, int tasks) => run.Validate(tasks, InterroGateTraining is null ? "training" : "interroGateTraining");

    public CompareConfig WithSeed(int seed) => this with
    {
        Seeds = null,
        Training = Training with { Seed = seed },
        InterroGateTraining = InterroGateTraining is null ? null : InterroGateTraining with { Seed = seed },
    };

    public void Validate(int tasks)
    {
        ValidateSeeds();
        for (int i = 0; i < Architectures.Count; i++)
        {
            ConfigException.Require(Architectures[i] is MtanConfig or CrossStitchConfig, $"architectures[{i}].type", Architectures[i].Type,
                "mtan or cross-stitch (STL, MTL and InterroGate have their own rows)");
            Architectures[i].Validate($"architectures[{i}]", tasks);
            if (Architectures[i].ResNetOnly) Backbone.RequireResNet(Architectures[i].Type, "backbone");
        }
        ConfigException.Require(Architectures.Select(a => a.Type).Distinct().Count() == Architectures.Count, "architectures",
            string.Join(", ", Architectures.Select(a => a.Type)), "each architecture at most once");
        for (int i = 0; i < Methods.Count; i++) Methods[i].Validate($"methods[{i}]", tasks);
        var names = Methods.Select(m => m.Create(Math.Max(tasks, 2)).Name).ToArray(); // a name does not depend on the tasks (0: not known yet)
        ConfigException.Require(names.Distinct().Count() == names.Length, "methods", string.Join(", ", names), "each method at most once");
        bool targets = Targets is { Count: > 0 };
        if (targets && LambdaS.Count > 0)
            throw new ConfigException("targets", $"given with a λs sweep (lambdaS: [{string.Join(", ", LambdaS)}]); give one or the other (lambdaS: [] with targets; interroGate.lambdaS is the adapted λs's starting value)");
        if (InterroGate.Target is not null)
            throw new ConfigException("interroGate.target", "is set for every run; list the budgets in targets instead (one run each)");
        ConfigException.Require(LambdaS.Count > 0 || targets || Methods.Count > 0 || Architectures.Count > 0, "lambdaS", "[]",
            "at least one value (an empty list is allowed only with targets, or when methods or architectures give other rows)");
        if (Targets is { } list)
            for (int i = 0; i < list.Count; i++) list[i].Validate($"targets[{i}]", tasks);
        for (int i = 0; i < LambdaS.Count; i++)
            ConfigException.Require(LambdaS[i] >= 0 && double.IsFinite(LambdaS[i]), $"lambdaS[{i}]", LambdaS[i], "≥ 0");
        InterroGateTraining?.Validate("interroGateTraining");
        Run(new HardSharingConfig()).Validate(tasks);
        if (LambdaS.Count > 0) ValidateInterroGateRun(Run(InterroGate), tasks);
        if (targets) ValidateInterroGateRun(Run(InterroGate with { Target = Targets![0] }), tasks);
        global::InterroGate.Training.SweepPoints.Validate(this, tasks);
        InterroGate.Validate("interroGate", tasks);
    }

    /// <summary>The single run this comparison makes for <paramref name="architecture"/>.</summary>
    /// <summary>
    /// The comparison's balancer for one run: an STL network trains its one task with weight 1 (as single-task baselines
    /// are trained; fixed task weights are for the networks that share), and fixed weights of a run on a subset of
    /// the tasks are those tasks' weights.
    /// </summary>
    private BalancerConfig BalancerFor(ArchitectureConfig architecture, IReadOnlyList<string>? tasks)
    {
        if (architecture is SingleTaskConfig) return new UniformBalancerConfig();
        if (tasks is null || Balancer is not FixedWeightsBalancerConfig fixedWeights || Tasks is not { Count: > 0 } all || fixedWeights.Weights.Count != all.Count)
            return Balancer;
        var index = all.Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i);
        return fixedWeights with { Weights = tasks.Select(t => index.TryGetValue(t, out int i) ? fixedWeights.Weights[i] : 1.0).ToArray() };
    }

    public RunConfig Run(ArchitectureConfig architecture, string? name = null, IReadOnlyList<string>? tasks = null) => new()
    {
        Name = name ?? $"{Name}-{architecture.Type}",
        Data = Data,
        Tasks = tasks ?? Tasks,
        Backbone = Backbone,
        Head = Head,
        Architecture = architecture,
        Training = architecture is InterroGateConfig ? InterroGateTraining ?? Training : Training,
        Balancer = BalancerFor(architecture, tasks),
        StartFrom = Pretrained is null ? null : new StartFrom { Pretrained = Pretrained },
    };
}
