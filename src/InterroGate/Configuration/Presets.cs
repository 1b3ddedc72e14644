using InterroGate.Architectures;
using InterroGate.Data;
using InterroGate.Training;

namespace InterroGate.Configuration;

/// <summary>Named configurations in code; a file path may be given wherever a preset name is accepted.</summary>
public static class Presets
{
    /// <summary>The paper's quarter-width protocol on the full MultiFashion benchmark (2-core CPU: about an hour).</summary>
    public static CompareConfig MultiFashionQuarter => new()
    {
        Name = "multifashion-w025",
        Data = new DataConfig { Dataset = "multifashion", TrainSize = 50_000, ValidationSize = 10_000, TestSize = 10_000 },
        Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
        Training = new TrainingConfig { Epochs = 5, BatchSize = 128, Lr = 2e-3, WeightDecay = 1e-4, Schedule = new(ScheduleKind.Cosine) },
        InterroGateTraining = new TrainingConfig { Epochs = 5, BatchSize = 128, Lr = 5e-4, WeightDecay = 1e-4, Schedule = new(ScheduleKind.Cosine), FreezeGatesLastEpochs = 2 },
        InterroGate = new InterroGateConfig { Tau = [0.0], AlphaInit = 0.01 },
        StlStartsFromMtl = true,
        // 1170 gate steps (3 epochs; the last 2 of 5 train the weights with the gates fixed). In the gate regime
        // (docs/method.md): α₀ = 0.01, and λs where the push λs·σ'(α)/(T·L·C) on a gate is within a small factor of the
        // spread of the task gradient across a layer's channels. Ten times the gate steps of multifashion-quick move the
        // range down. Measured (seed 0, bench/RESULTS.md): λs = 0.125, 0.25, 0.5, 1, 2 leave 86, 76, 50, 31 and 17% of
        // the channels task-specific.
        LambdaS = [0.125, 0.25, 0.5, 1, 2],
    };

    /// <summary>MultiFashion subset sized to finish `compare` in about 5 minutes on a 2-core CPU.</summary>
    public static CompareConfig MultiFashionQuick => MultiFashionQuarter with
    {
        Name = "multifashion-quick",
        Data = new DataConfig { Dataset = "multifashion", TrainSize = 8000, ValidationSize = 2000, TestSize = 4000 },
        Training = MultiFashionQuarter.Training with { Epochs = 3, Lr = 3e-3 },
        // Two epochs of gate learning, then one with the gates fixed in which the weights adapt to the pattern (without it
        // the gates that flip late in training are never repaired and the sharing runs fall below MTL).
        InterroGateTraining = MultiFashionQuarter.InterroGateTraining! with { Epochs = 3, Lr = 1e-3, FreezeGatesLastEpochs = 1 },
        // 124 gate steps, α₀ = 0.01. Measured (bench/RESULTS.md, "The gate regime"): λs = 1, 2, 4, 8 leave about 84, 59,
        // 31 and 13% of the channels task-specific, the push from under 1× to a few times the spread of the task gradient.
        LambdaS = [1, 2, 4, 8],
    };

    /// <summary>
    /// The quarter-width protocol's baselines: STL, MTL, MTL under every loss-balancing method, MTAN and Cross-stitch
    /// (InterroGate's rows are multifashion-w025's; the same STL and MTL runs start them).
    /// </summary>
    public static CompareConfig MultiFashionQuarterMethods => MultiFashionQuarter with
    {
        Name = "multifashion-w025-methods",
        LambdaS = [],
        Architectures = [new MtanConfig(), new CrossStitchConfig()],
        Methods = Factory.Balancers.Keys.Where(k => k is not ("uniform" or "fixed"))
            .Select(k => ConfigJson.Deserialize<BalancerConfig>($"{{ \"type\": \"{k}\" }}")).ToArray(),
    };

    /// <summary>Full width, full data: for a GPU machine.</summary>
    public static CompareConfig MultiFashionFull => MultiFashionQuarter with
    {
        Name = "multifashion-w1",
        Backbone = new BackboneConfig { Name = "resnet20", Width = 1.0 },
        Training = MultiFashionQuarter.Training with { Epochs = 20, Schedule = new(ScheduleKind.Step, StepSize: 8, Gamma: 1.0 / 3) },
        InterroGateTraining = MultiFashionQuarter.InterroGateTraining! with { Epochs = 10, FreezeGatesLastEpochs = 3 },
    };

    /// <summary>
    /// FashionScenes, NYUD-v2's tasks (semseg, depth, normals): ResNet-18 dilated to output stride 16 with one
    /// 64-channel ASPP head per task, on 64×64 scenes; sized for a 2-core CPU (STL, MTL and three λ_s in well
    /// under an hour). On a GPU, set backbone.outputStride=8, head.channels=256 and more scenes.
    /// </summary>
    public static CompareConfig FashionScenesNyud => new()
    {
        Name = "fashion-scenes-nyud",
        Data = new DataConfig { Dataset = "fashion-scenes", TrainSize = 1500, ValidationSize = 200, TestSize = 500 },
        Tasks = FashionScenes.NyudTasks,
        Backbone = new BackboneConfig { Name = "resnet18", OutputStride = 16 },
        Head = new Heads.HeadConfig { Dense = "aspp", Channels = 64 },
        Training = new TrainingConfig { Epochs = 3, BatchSize = 32, EvalBatchSize = 100, Lr = 1e-3, WeightDecay = 1e-4, Schedule = new(ScheduleKind.Cosine) },
        InterroGateTraining = new TrainingConfig { Epochs = 3, BatchSize = 32, EvalBatchSize = 100, Lr = 5e-4, WeightDecay = 1e-4, Schedule = new(ScheduleKind.Cosine), FreezeGatesLastEpochs = 1 },
        InterroGate = new InterroGateConfig { Tau = [0.0], AlphaInit = 0.01 },
        StlStartsFromMtl = true,
        // 94 gate steps (2 epochs of 47). In ResNet-18 one α of a C-channel layer gets σ'(α)/(T·L·C) of λs from the
        // sparsity loss (L = 17 gated layers), so SGD at 0.1 moves it ≈ 7e-6·λs per step at C = 64 and 9e-7·λs at
        // C = 512. With α₀ = 0.01 (the gate regime, docs/method.md) λs from 12 (the 64-channel layers barely move) to
        // 200 (every layer can flip): the old range scaled by the ratio of the α₀s. Measured (seed 0, bench/RESULTS.md):
        // 98.7, 78.6 and 0% task-specific, whole layers flipping by width (push 15-190× the task gradient's spread).
        LambdaS = [12, 50, 200],
    };

    /// <summary>
    /// MultiFashion with a CPU-sized ViT (vit_cpu_patch4_32 on the 36×36 images: a 9×9 grid of patches and the class
    /// token, width 64, 4 blocks) instead of ResNet-20, on multifashion-quick's subset and schedule: STL, MTL and
    /// InterroGate gating the patch embedding and every linear projection (docs/method.md, "The ViT"). λs: the ViT has
    /// 17 gate layers counting as L = 25 layers in Eq. 4 (q, k, v three each), 64 to 256 channels wide, so over the 124
    /// gate steps SGD at 0.1 moves one α of a 64-channel layer by about 1e-3·λs in all (the qkv layer's as much, fc1's a
    /// quarter of it): with α₀ = 0.01, λs = 10 lets the 64-channel layers flip and 40 fc1's (multifashion-quick's λs
    /// flip nothing here: its ResNet's layers are 4 to 16 channels wide). Measured (3 seeds, bench/RESULTS.md): λs = 10,
    /// 20 and 40 leave 95.6, 44.4 and 42.4% of the channels task-specific.
    /// </summary>
    public static CompareConfig MultiFashionViT => MultiFashionQuick with
    {
        Name = "multifashion-vit",
        Backbone = new BackboneConfig { Name = "vit_cpu_patch4_32" },
        LambdaS = [10, 20, 40],
    };

    /// <summary>
    /// FashionScenes' NYUD-v2 tasks on the CPU-sized ViT (patches of 4 on the 64×64 scenes: a 16×16 grid) with one DPT
    /// decoder per task (32 wide here; the paper's 64 with head.dptFeatures), reading blocks 0-3; otherwise as
    /// fashion-scenes-nyud. λs: with T = 3 and 94 gate steps one α of a 64-channel layer moves about 5e-4·λs in all, half
    /// of multifashion-vit's 1e-3·λs, so its range doubled. Measured (3 seeds, bench/RESULTS.md): λs = 20 leaves 99.7%
    /// of the channels task-specific, 40 and 80 flip the 64- and 192-channel layers whole (43.2%); for a channel-level,
    /// per-task pattern use <c>interroGate.gateOptimizer=adam</c> with gateLr 1e-3 and λs 0.1-0.4 (measured on seed 0).
    /// </summary>
    public static CompareConfig FashionScenesViT => FashionScenesNyud with
    {
        Name = "fashion-scenes-vit",
        Backbone = new BackboneConfig { Name = "vit_cpu_patch4_32" },
        Head = new Heads.HeadConfig { Dense = "dpt", DptFeatures = 32 },
        LambdaS = [20, 40, 80],
    };

    /// <summary>FashionScenes, PASCAL-Context's tasks that it has (semseg, normals, saliency, edges); otherwise as fashion-scenes-nyud.</summary>
    public static CompareConfig FashionScenesPascal => FashionScenesNyud with
    {
        Name = "fashion-scenes-pascal",
        Tasks = FashionScenes.PascalTasks,
    };

    /// <summary>
    /// The paper's dense recipe (docs/method.md, "Optimisation recipes"): Adam lr 1e-4, weight decay 1e-4, poly 0.9 schedule, batch 8, on the
    /// benchmark at full resolution; InterroGate starts from the STL and MTL runs and trains its weights with the
    /// gates fixed for the last tenth of its epochs. The data is read from <c>data.root</c>
    /// (<c>--set data.root=/data/NYUD_MT</c>).
    /// </summary>
    private static CompareConfig PaperDense(string name, string dataset, IReadOnlyList<string>? tasks, int epochs, BackboneConfig backbone,
        Heads.HeadConfig head, double[] lambdaS)
    {
        var training = new TrainingConfig
        {
            Epochs = epochs, BatchSize = 8, EvalBatchSize = 8, Lr = 1e-4, WeightDecay = 1e-4,
            Schedule = new(ScheduleKind.Poly, Power: 0.9),
        };
        return new CompareConfig
        {
            Name = name,
            Data = new DataConfig { Dataset = dataset },
            Tasks = tasks,
            Backbone = backbone,
            Head = head,
            Training = training,
            InterroGateTraining = training with { FreezeGatesLastEpochs = epochs / 10 },
            InterroGate = new InterroGateConfig { Tau = [0.0], AlphaInit = 0.01 },
            StlStartsFromMtl = true,
            LambdaS = lambdaS,
        };
    }

    /// <summary>
    /// NYUD-v2 (semseg, depth, normals), ResNet-50 dilated to output stride 8 with DeepLab-v3 ASPP heads (Table 11),
    /// 100 epochs of the 795 training images. λs: with L = 49 gated layers and 8,900 gate steps, SGD at 0.1 moves one α
    /// of a C-channel layer by about 1.4·λs/C in all, so with α₀ = 0.01 λs from 0.4 (the 64-channel layers can flip)
    /// to 6.4 (the 512-channel ones can) spans the range; an estimate from Eq. 4's gradient, not a measured sweep (the
    /// run's first line says when the push outweighs the task gradient).
    /// </summary>
    public static CompareConfig NyudResNet50 => PaperDense("nyudv2-resnet50", "nyudv2", ["semseg", "depth", "normals"], 100,
        new BackboneConfig { Name = "resnet50", OutputStride = 8 }, new Heads.HeadConfig { Dense = "aspp", Channels = 256 }, [0.4, 1.6, 6.4]);

    /// <summary>
    /// PASCAL-Context (semseg, human_parts, sal, normals, edge), ResNet-18 dilated to output stride 8 with ASPP heads,
    /// 60 epochs of the 4,998 training images, the prior work's scalar task weights (semseg 1, human parts 2,
    /// saliency 5, normals 10, edge 50). λs: L = 17, T = 5, 33,700 gate steps: one α moves about 3.7·λs/C in all,
    /// so with α₀ = 0.01 λs from 0.06 to 0.6 spans the range (an estimate from Eq. 4's gradient).
    /// </summary>
    public static CompareConfig PascalResNet18 => PaperDense("pascal-context-resnet18", "pascal-context",
        [PascalContext.SemanticSegmentation, PascalContext.HumanParts, PascalContext.Saliency, PascalContext.Normals, PascalContext.Edges], 60,
        new BackboneConfig { Name = "resnet18", OutputStride = 8 }, new Heads.HeadConfig { Dense = "aspp", Channels = 256 }, [0.06, 0.2, 0.6]) with
    {
        Balancer = new FixedWeightsBalancerConfig { Weights = [1, 2, 5, 10, 50] },
    };

    /// <summary>
    /// NYUD-v2 (semseg, depth, normals), HRNet-18 (HRNetV2-W18) with HRNet heads (Table 10), 100 epochs. λs: the gated
    /// HRNet-18 has L = 268 gated layers, so with 8,900 gate steps one α of a C-channel layer moves about 0.26·λs/C in
    /// all: with α₀ = 0.01 λs from 0.8 (the 18- and 36-channel layers can flip) to 12.8 (the 144- and 256-channel ones
    /// can); an estimate.
    /// </summary>
    public static CompareConfig NyudHRNet18 => PaperDense("nyudv2-hrnet18", "nyudv2", ["semseg", "depth", "normals"], 100,
        new BackboneConfig { Name = "hrnet18" }, new Heads.HeadConfig { Dense = "hrnet" }, [0.8, 3.2, 12.8]);

    /// <summary>
    /// NYUD-v2 (semseg, depth, normals) with ViT-B/16 and a DPT decoder per task (64 wide, blocks 2, 5, 8, 11), the
    /// paper's ViT recipe (appendix B): Adam, learning rate 1e-5 for the encoder and 1e-4 for the heads, weight decay
    /// 1e-6, batch 8, poly schedule, 100 epochs. Start the encoders from timm's ImageNet weights with
    /// <c>--set pretrained=vit_base_patch16_224.safetensors</c> (a single run: <c>startFrom.pretrained</c>). The images must be multiples of 32 high and
    /// wide (the preprocessed layout's 288×384 are). λs: ViT-B/16 has 49 gate layers counting as L = 73 in Eq. 4 (q, k, v
    /// three each), 768 to 3,072 channels, and 8,900 gate steps: SGD at 0.1 moves one α of a C-channel layer by about
    /// 1.0·λs/C in all, so with α₀ = 0.01 λs from 8 (the 768-channel layers can flip) to 32 (the 3,072-channel ones can),
    /// and 128 beyond; an estimate from Eq. 4's gradient as for nyudv2-resnet50, not a measured sweep.
    /// </summary>
    public static CompareConfig NyudViT
    {
        get
        {
            var recipe = PaperDense("nyudv2-vit-dpt", "nyudv2", ["semseg", "depth", "normals"], 100,
                new BackboneConfig { Name = "vit_base_patch16_224" }, new Heads.HeadConfig { Dense = "dpt", DptFeatures = 64 }, [8, 32, 128]);
            var training = recipe.Training with { Lr = 1e-5, HeadLr = 1e-4, WeightDecay = 1e-6 };
            return recipe with { Training = training, InterroGateTraining = training with { FreezeGatesLastEpochs = 10 } };
        }
    }

    /// <summary>
    /// PASCAL-Context's five tasks on HRNet-18 with HRNet heads, 60 epochs, the scalar task weights of
    /// pascal-context-resnet18. λs: L = 268, T = 5, 33,700 gate steps: one α moves about 0.59·λs/C, so with α₀ = 0.01
    /// 0.3 to 4.8.
    /// </summary>
    public static CompareConfig PascalHRNet18 => PascalResNet18 with
    {
        Name = "pascal-context-hrnet18",
        Backbone = new BackboneConfig { Name = "hrnet18" },
        Head = new Heads.HeadConfig { Dense = "hrnet" },
        LambdaS = [0.3, 1.2, 4.8],
    };

    /// <summary>
    /// CelebA at 32×32 (the paper's Table 9): ResNet-20 at <paramref name="width"/>, tasks gender (Male), age (Young) and
    /// clothes (Wearing_Necktie; why: docs/datasets.md), the official splits whole. The paper's recipe (docs/method.md,
    /// "Optimisation recipes"): Adam lr 1e-3, weight decay 1e-4, batch 128, learning rate divided by 3 every 20 epochs;
    /// STL and MTL train 60 epochs. InterroGate starts from them and trains 10 epochs, its gates learning in the first
    /// (1,272 steps, as many as multifashion-w025's 1,170) and fixed in the other 9, the learning rate divided by 3 every
    /// 4 epochs so that it ends, as STL and MTL do, at a ninth of the start. λs: multifashion-w025's measured
    /// range, times 3/2 for T = 3 tasks (the push on a gate is λs·σ'(α)/(T·L·C)) and times the width ratio for the wider
    /// layers; extrapolated, not measured (each run's first line says where its λs puts the gates).
    /// The data is read from data.root (<c>--set data.root=/data/celeba</c>).
    /// </summary>
    private static CompareConfig CelebAResNet20(string name, double width)
    {
        var training = new TrainingConfig
        {
            Epochs = 60, BatchSize = 128, EvalBatchSize = 1000, Lr = 1e-3, WeightDecay = 1e-4,
            Schedule = new(ScheduleKind.Step, StepSize: 20, Gamma: 1.0 / 3),
        };
        double scale = 1.5 * width / 0.25;
        return new CompareConfig
        {
            Name = name,
            Data = new DataConfig { Dataset = "celeba", TrainSize = 162_770, ValidationSize = 19_867, TestSize = 19_962, ImageSize = 32 },
            Backbone = new BackboneConfig { Name = "resnet20", Width = width },
            Training = training,
            InterroGateTraining = training with { Epochs = 10, FreezeGatesLastEpochs = 9, Schedule = new(ScheduleKind.Step, StepSize: 4, Gamma: 1.0 / 3) },
            InterroGate = new InterroGateConfig { Tau = [0.0], AlphaInit = 0.01 },
            StlStartsFromMtl = true,
            LambdaS = new[] { 0.125, 0.25, 0.5, 1, 2 }.Select(l => l * scale).ToArray(),
        };
    }

    /// <summary>CelebA, ResNet-20 at full width (Table 9's first block).</summary>
    public static CompareConfig CelebAFull => CelebAResNet20("celeba-w1", 1.0);
    /// <summary>CelebA, ResNet-20 at half width (Table 9's second block).</summary>
    public static CompareConfig CelebAHalf => CelebAResNet20("celeba-w05", 0.5);
    /// <summary>CelebA, ResNet-20 at quarter width (Table 9's third block).</summary>
    public static CompareConfig CelebAQuarter => CelebAResNet20("celeba-w025", 0.25);

    public static readonly IReadOnlyDictionary<string, Func<CompareConfig>> Comparisons = new Dictionary<string, Func<CompareConfig>>
    {
        ["multifashion-quick"] = () => MultiFashionQuick,
        ["multifashion-w025"] = () => MultiFashionQuarter,
        ["multifashion-w025-methods"] = () => MultiFashionQuarterMethods,
        ["multifashion-w1"] = () => MultiFashionFull,
        ["celeba-w1"] = () => CelebAFull,
        ["celeba-w05"] = () => CelebAHalf,
        ["celeba-w025"] = () => CelebAQuarter,
        ["fashion-scenes-nyud"] = () => FashionScenesNyud,
        ["fashion-scenes-pascal"] = () => FashionScenesPascal,
        ["multifashion-vit"] = () => MultiFashionViT,
        ["fashion-scenes-vit"] = () => FashionScenesViT,
        ["nyudv2-vit-dpt"] = () => NyudViT,
        ["nyudv2-resnet50"] = () => NyudResNet50,
        ["pascal-context-resnet18"] = () => PascalResNet18,
        ["nyudv2-hrnet18"] = () => NyudHRNet18,
        ["pascal-context-hrnet18"] = () => PascalHRNet18,
    };

    /// <summary>Single runs: each comparison preset's run for one architecture, e.g. multifashion-quick/interrogate.</summary>
    public static RunConfig? Run(string name)
    {
        var parts = name.Split('/');
        if (parts.Length != 2 || !Comparisons.TryGetValue(parts[0], out var make)) return null;
        var c = make();
        return parts[1] switch
        {
            "stl" => c.Run(new SingleTaskConfig()),
            "mtl" => c.Run(new HardSharingConfig()),
            "interrogate" => c.Run(c.InterroGate),
            _ => null,
        };
    }

    public static IEnumerable<string> RunNames =>
        Comparisons.Keys.SelectMany(k => new[] { "stl", "mtl", "interrogate" }.Select(a => $"{k}/{a}"));

    /// <summary>Loads a comparison from a preset name or JSON file, then applies --set overrides.</summary>
    public static CompareConfig LoadComparison(string nameOrPath, IEnumerable<string> overrides)
    {
        string json = Source(nameOrPath, n => Comparisons.TryGetValue(n, out var f) ? f() : null, Comparisons.Keys);
        // A run's file (what `config init` writes) given to compare: say what it is, not only that a key is unknown.
        if (File.Exists(nameOrPath) && RunOnlyKey(json) is { } key)
            throw new ConfigException(key, $"{nameOrPath} is a run configuration (it has \"{key}\", which a comparison does not): train it with " +
                                           $"`interrogate train {nameOrPath}`; a comparison's file has lambdaS, interroGate and the keys README lists under `compare`");
        return ConfigJson.Deserialize<CompareConfig>(json, overrides, nameOrPath, FolderOf(nameOrPath));
    }

    /// <summary>The first top-level key of <paramref name="json"/> that a run has and a comparison lacks (architecture, startFrom, ...); null if none.</summary>
    private static string? RunOnlyKey(string json)
    {
        try
        {
            return System.Text.Json.Nodes.JsonNode.Parse(json, documentOptions: new System.Text.Json.JsonDocumentOptions { CommentHandling = System.Text.Json.JsonCommentHandling.Skip, AllowTrailingCommas = true })
                is System.Text.Json.Nodes.JsonObject o && !o.Any(kv => ComparisonKeys.Contains(kv.Key))
                ? o.Select(kv => kv.Key).FirstOrDefault(k => RunOnlyKeys.Contains(k)) : null;
        }
        catch (System.Text.Json.JsonException) { return null; } // the deserializer names what does not parse
    }

    /// <summary>The keys a run has and a comparison lacks.</summary>
    private static HashSet<string> RunOnlyKeys => _runOnlyKeys ??= KeysOf(typeof(RunConfig)).Except(KeysOf(typeof(CompareConfig))).ToHashSet();
    private static HashSet<string>? _runOnlyKeys;

    /// <summary>Loads a run from a preset name or JSON file, then applies --set overrides.</summary>
    public static RunConfig LoadRun(string nameOrPath, IEnumerable<string> overrides) =>
        ConfigJson.Deserialize<RunConfig>(Source(nameOrPath, Run, RunNames), overrides, nameOrPath, FolderOf(nameOrPath));

    /// <summary>Whether <paramref name="nameOrPath"/> names a comparison (a comparison preset, or a file with comparison keys).</summary>
    public static bool IsComparison(string nameOrPath)
    {
        if (Comparisons.ContainsKey(nameOrPath)) return true;
        if (!File.Exists(nameOrPath)) return false;
        try
        {
            return System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(nameOrPath)) is System.Text.Json.Nodes.JsonObject o
                   && o.Any(kv => ComparisonKeys.Contains(kv.Key));
        }
        catch (System.Text.Json.JsonException) { return false; }
    }

    /// <summary>The keys a comparison has and a run lacks (lambdaS, seeds, methods, architectures, targets, grid, ...).</summary>
    private static HashSet<string> ComparisonKeys => _comparisonKeys ??= KeysOf(typeof(CompareConfig)).Except(KeysOf(typeof(RunConfig))).ToHashSet();
    private static HashSet<string>? _comparisonKeys;

    private static IEnumerable<string> KeysOf(Type type) => type.GetProperties(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance)
        .Where(p => p.GetCustomAttributes(typeof(System.Text.Json.Serialization.JsonIgnoreAttribute), true).Length == 0)
        .Select(p => System.Text.Json.JsonNamingPolicy.CamelCase.ConvertName(p.Name));

    /// <summary>The folder of a config file (paths in it are relative to it); null for a preset.</summary>
    private static string? FolderOf(string nameOrPath) =>
        File.Exists(nameOrPath) ? Path.GetDirectoryName(Path.GetFullPath(nameOrPath)) : null;

    private static string Source<T>(string nameOrPath, Func<string, T?> preset, IEnumerable<string> names) where T : class
    {
        if (File.Exists(nameOrPath)) return File.ReadAllText(nameOrPath);
        var p = preset(nameOrPath);
        if (p is not null) return ConfigJson.Serialize(p);
        if (typeof(T) == typeof(RunConfig) && Comparisons.ContainsKey(nameOrPath))
            throw ConfigException.ForArgument("CONFIG", $"'{nameOrPath}' is a comparison preset: run it with `interrogate compare {nameOrPath}`, or train one of its runs: " +
                                                $"{nameOrPath}/stl, {nameOrPath}/mtl or {nameOrPath}/interrogate");
        if (typeof(T) == typeof(CompareConfig) && Run(nameOrPath) is not null)
            throw ConfigException.ForArgument("CONFIG", $"'{nameOrPath}' is one run of the comparison preset {nameOrPath.Split('/')[0]}: train it with `interrogate train {nameOrPath}`, " +
                                                $"or compare with {nameOrPath.Split('/')[0]}");
        var near = names.Where(n => EditDistance(n, nameOrPath) <= 2).ToArray();
        throw ConfigException.ForArgument("CONFIG", $"'{nameOrPath}' is neither a file nor a preset{(near.Length > 0 ? $"; did you mean {string.Join(" or ", near)}?" : ";")} " +
                                            $"Presets: {string.Join(", ", names)}");
    }

    /// <summary>Insertions, deletions and substitutions that turn <paramref name="a"/> into <paramref name="b"/>.</summary>
    private static int EditDistance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }
}
