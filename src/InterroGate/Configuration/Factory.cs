using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Configuration;

/// <summary>
/// A data set a configuration names (<c>data.dataset</c>): its one-line description (what <c>interrogate list</c>
/// prints), whether it is read from a folder the user names (<c>data.root</c>, no default), and how it opens from
/// the data configuration.
/// </summary>
public sealed record DatasetEntry(string Name, string Description, Func<DataConfig, DatasetSplits> Open, bool NeedsRoot = false);

/// <summary>The data sets by name: one <see cref="DatasetEntry"/> each, which the listing, the errors and <see cref="Open"/> read.</summary>
public static class DataCatalog
{
    /// <summary>Every data set; adding one is its class in <c>Data/</c> and one entry here.</summary>
    public static readonly IReadOnlyList<DatasetEntry> Entries =
    [
        new("multifashion", "MultiFashion: two Fashion-MNIST items on a 36×36 canvas; tasks top_left, bottom_right (10 classes each)",
            c => MultiFashion.Load(c.Root ?? FashionMnist.DefaultRoot, new MultiFashionOptions(c.TrainSize, c.ValidationSize, c.TestSize, c.Seed))),
        new("folder", "a user data set: tasks.json and train/val/test folders of .npy files (see README)",
            c => UserFolderDataset.Load(c.Root!, c.Seed), NeedsRoot: true),
        new("synthetic", "a small learnable synthetic data set (tests and smoke runs)",
            c => Synthetic.Create(c.TrainSize, c.ValidationSize, c.TestSize, c.Seed)),
        new("fashion-scenes", "FashionScenes: 64×64 scenes of 2-4 Fashion-MNIST items on a floor; dense tasks semseg, depth, normals, edge, sal",
            c => FashionScenes.Load(new FashionScenesOptions(c.Root ?? FashionMnist.DefaultRoot, TrainSize: c.TrainSize,
                ValidationSize: c.ValidationSize, TestSize: c.TestSize, Seed: c.Seed, TrainTransform: FashionScenes.Augmentation(64, 64)))),
        // The benchmarks' own splits: validation and test are the val split.
        new("nyudv2", "NYUD-v2 from disk (NYUD_MT folder layout or the preprocessed NumPy layout); semseg, depth, normals (+ edge); test = val split",
            c => NyudV2.Load(new NyudV2Options(c.Root!, Seed: c.Seed, SkipMissing: c.SkipMissing,
                TrainTransform: NyudV2.Augmentation)),
            NeedsRoot: true),
        new("celeba", "CelebA from disk (official layout: img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt; or Kaggle's CSV copy); attributes as binary tasks",
            c => CelebA.Load(new CelebAOptions(c.Root!)
            {
                Tasks = c.Attributes?.Select(kv => new CelebATask(kv.Key, kv.Value)).ToArray() ?? CelebA.PaperTasks,
                ImageSize = c.ImageSize,
                TrainSize = c.TrainSize,
                ValidationSize = c.ValidationSize,
                TestSize = c.TestSize,
                Seed = c.Seed,
                CacheRoot = c.Cache,
                Progress = CacheProgress(),
            }),
            NeedsRoot: true),
        new("pascal-context", "PASCAL-Context multi-task layout (PASCAL_MT) from disk, 512×512; semseg, human_parts, sal, normals, edge; test = val split",
            c => PascalContext.Load(new PascalContextOptions(c.Root!)
            {
                Seed = c.Seed,
                SkipMissing = c.SkipMissing,
                TrainTransform = PascalContext.Augmentation,
                EvalTransform = new Resize(512, 512),
            }),
            NeedsRoot: true),
    ];

    /// <summary>Names and one-line descriptions, in the order of <see cref="Entries"/>.</summary>
    public static IReadOnlyDictionary<string, string> Descriptions { get; } = Entries.ToDictionary(e => e.Name, e => e.Description);

    public static IReadOnlyCollection<string> Names => Entries.Select(e => e.Name).ToArray();

    /// <summary>Whether <paramref name="dataset"/> is read from a folder the user names (data.root), with no default.</summary>
    public static bool NeedsRoot(string dataset) => Entries.Any(e => e.Name == dataset && e.NeedsRoot);

    /// <summary>Ids of a split list left out because their files are missing (<see cref="DataConfig.SkipMissing"/>), per split; empty when none.</summary>
    public static IReadOnlyDictionary<string, int> Skipped(DatasetSplits splits)
    {
        static int Count(IMultiTaskDataset d) => d is ISkipsMissing s ? s.SkippedCount : 0;
        var counts = new Dictionary<string, int> { ["train"] = Count(splits.Train), ["val"] = Count(splits.Test) };
        return counts.Where(kv => kv.Value > 0).ToDictionary();
    }

    /// <summary>
    /// Depth pixels that were NaN or infinite in the files read so far and were taken as unknown (0), per split that
    /// has some (its data set's name: "nyudv2/train"); empty when none. Counted as samples load: call it after the
    /// samples were read (after training or evaluation).
    /// </summary>
    public static IReadOnlyDictionary<string, long> NonFiniteDepth(DatasetSplits splits) =>
        new[] { splits.Train, splits.Validation, splits.Test }.Distinct().OfType<NyudV2Dataset>()
            .Where(d => d.NanDepthPixels > 0).ToDictionary(d => d.Name, d => d.NanDepthPixels);

    /// <summary>The line that says <paramref name="count"/> depth pixels of <paramref name="split"/> were not finite.</summary>
    public static string NonFiniteDepthMessage(string split, long count) =>
        $"{count:N0} depth pixels of {split} were NaN or infinite in their files and were read as unknown (0): no loss or metric counts them";

    /// <summary>One line per tenth of a CelebA cache build (a first run decodes about 200,000 JPEGs).</summary>
    private static Action<int, int> CacheProgress()
    {
        int last = -1;
        return (done, total) =>
        {
            int tenth = (int)(10L * done / total);
            if (tenth == last) return;
            last = tenth;
            Console.Error.WriteLine($"celeba: decoding images into the cache: {done:N0} / {total:N0}");
        };
    }

    /// <summary>The splits of <paramref name="c"/>'s data set; the configuration is checked first (keys under data.).</summary>
    public static DatasetSplits Open(DataConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        c.Validate("data");
        return OpenChecked(c);
    }

    private static DatasetSplits OpenChecked(DataConfig c) =>
        (Entries.FirstOrDefault(e => e.Name == c.Dataset) ?? throw new ConfigException("data.dataset", $"'{c.Dataset}' is unknown; valid: {string.Join(", ", Names)}")).Open(c);
}

/// <summary>The one registry from names to methods: a switch per axis.</summary>
public static class Factory
{
    /// <summary>Architecture names and descriptions (from the config records registered on <see cref="ArchitectureConfig"/>).</summary>
    public static IReadOnlyDictionary<string, string> Architectures => Registry<ArchitectureConfig>.Descriptions;

    /// <summary>Loss-balancing names and descriptions (from the config records registered on <see cref="BalancerConfig"/>).</summary>
    public static IReadOnlyDictionary<string, string> Balancers => Registry<BalancerConfig>.Descriptions;

    /// <summary>The tasks a run learns: the data set's, or the named subset in the given order.</summary>
    public static TaskSet ResolveTasks(TaskSet available, IReadOnlyList<string>? names)
    {
        if (names is null) return available;
        var unknown = names.Where(n => available.IndexOf(n) < 0).ToArray();
        if (unknown.Length > 0)
            throw new ConfigException("tasks", $"{string.Join(", ", unknown.Select(u => $"'{u}'"))} not in the data set; its tasks are: {string.Join(", ", available.Names)}");
        if (names.Distinct().Count() != names.Count) throw new ConfigException("tasks", "a task is named twice");
        return available.Select(names);
    }

    /// <summary>A freshly initialised model (seeded by the run's seed).</summary>
    public static MultiTaskModel CreateModel(RunConfig config, TaskSet tasks, (int Channels, int Height, int Width) image)
    {
        config.Validate(tasks.Count);
        manual_seed(config.Training.Seed); // the CPU generator: initialisation
        if (cuda.is_available()) cuda.manual_seed_all(config.Training.Seed); // the GPU's: dropout and gate noise there
        var spec = BackboneCatalog.Spec(config.Backbone.Name, config.Backbone.Width, config.Backbone.OutputStride);
        if (spec is ViTSpec vit && (image.Height % vit.PatchSize != 0 || image.Width % vit.PatchSize != 0))
            throw new ConfigException("backbone.name",
                $"{config.Backbone.Name} on {image.Height}×{image.Width} images; a ViT with patches of {vit.PatchSize} needs a height and width that are multiples of {vit.PatchSize} (resize the data or pick another patch size)");
        spec = config.Head.EncoderFor(spec, tasks.Any(t => t.IsDense));
        if (spec is ViTSpec { OutputBlocks: not null } && (image.Height % 32 != 0 || image.Width % 32 != 0))
            throw new ConfigException("head.dense", $"dpt on {image.Height}×{image.Width} images; the DPT head needs a height and width that are multiples of 32 (resize the data, or use aspp)");
        // Initialisation makes temporaries (TorchSharp's fan-in slices, the handles its init functions return): freed here
        // rather than left to finalizers. Registered parameters and buffers leave the scope with their modules.
        using var scope = NewDisposeScope();
        return config.Architecture.CreateModel(tasks, spec, image, config.Head);
    }

    /// <summary>Applies the run's thread count to libtorch (0 keeps its default).</summary>
    public static void ApplyThreads(TrainingConfig training)
    {
        if (training.Threads > 0) set_num_threads(training.Threads);
    }
}
