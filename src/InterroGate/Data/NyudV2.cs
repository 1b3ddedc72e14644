// NYUD-v2 (Silberman et al., ECCV 2012) in the two layouts multi-task work uses: NYUD_MT folders and MTAN NumPy arrays.
using InterroGate.Configuration;
using InterroGate.Data.Formats;
using InterroGate.Tasks;
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>How a NYUD-v2 folder is laid out on disk.</summary>
public enum NyudLayout
{
    /// <summary>Decide from the folder: <c>gt_sets/</c> means <see cref="MultiTask"/>, <c>train/image/</c> means <see cref="Preprocessed"/>.</summary>
    Auto,

    /// <summary>
    /// The NYUD_MT release used by the multi-task dense-prediction code bases (ASTMT, MTI-Net, Vandenhende et al.'s
    /// Multi-Task-Learning-PyTorch): <c>images/{id}.jpg</c>, <c>segmentation/{id}.png</c>, <c>depth/{id}.npy</c>,
    /// <c>normals/{id}.npy</c>, <c>edge/{id}.npy</c>, split lists <c>gt_sets/train.txt</c> and <c>gt_sets/val.txt</c>
    /// (one id per line). 40 classes; tasks semseg, depth, normals and edge.
    /// </summary>
    MultiTask,

    /// <summary>
    /// The NumPy release of MTAN (Liu et al., CVPR 2019), also used by LibMTL: <c>train/</c> and <c>val/</c>, each with
    /// <c>image/{i}.npy</c>, <c>label/{i}.npy</c>, <c>depth/{i}.npy</c> and <c>normal/{i}.npy</c>, at 288×384.
    /// 13 classes; tasks semseg, depth and normals.
    /// </summary>
    Preprocessed,
}

/// <summary>Where NYUD-v2 lies and which part of it to load.</summary>
/// <param name="Root">The data set folder, in either <see cref="NyudLayout"/>.</param>
/// <param name="Tasks">Task names to load, in this order; null loads every task of the layout.</param>
/// <param name="ValidationSize">
/// Training samples held out (drawn with <paramref name="Seed"/>) as the validation split; 0 validates on the val
/// split, which is also the test split.
/// </param>
/// <param name="Seed">Draws the held-out samples and seeds the training transform.</param>
/// <param name="TrainTransform">Applied to training samples only (scale, crop, flip); never to validation or test.</param>
/// <param name="TrainHeight">Height the training transform produces (null: the stored height).</param>
/// <param name="TrainWidth">Width the training transform produces (null: the stored width).</param>
/// <param name="SkipMissing">
/// Leave out listed ids whose files are missing instead of failing; they are in <see cref="NyudV2Dataset.SkippedIds"/>.
/// </param>
/// <param name="Layout">The layout to read; <see cref="NyudLayout.Auto"/> detects it.</param>
public sealed record NyudV2Options(
    string Root,
    IReadOnlyList<string>? Tasks = null,
    int ValidationSize = 0,
    int Seed = 0,
    IJointTransform? TrainTransform = null,
    int? TrainHeight = null,
    int? TrainWidth = null,
    bool SkipMissing = false,
    NyudLayout Layout = NyudLayout.Auto);

/// <summary>
/// Loads NYUD-v2 in either layout as <see cref="DatasetSplits"/> of <see cref="NyudV2Dataset"/>s. NYUD-v2 has no
/// separate test set: the test split is the val split (654 images), as in the code bases these layouts come from.
/// Images come out uint8 [3, H, W] in both layouts (the preprocessed layout's floats in [0, 1] are scaled by 255 and
/// rounded, at most half a grey level off, so transforms see one kind of image), and batches are normalised with one
/// mean and std for all channels, the channel averages of the ImageNet statistics (<see cref="Mean"/>,
/// <see cref="Std"/>), so ImageNet-pretrained backbones see inputs of the range they were trained on. Targets follow <see cref="TaskKind"/>: unlabelled pixels are
/// <see cref="TaskSpec.IgnoreLabel"/>, unknown depth is 0, unknown normals are the zero vector.
/// </summary>
public static class NyudV2
{
    /// <summary>The channel average of the ImageNet mean (0.485, 0.456, 0.406).</summary>
    public const double Mean = 0.449;

    /// <summary>The channel average of the ImageNet std (0.229, 0.224, 0.225).</summary>
    public const double Std = 0.226;

    /// <summary>The tasks of <see cref="NyudLayout.MultiTask"/>: 40-class segmentation, depth (m), normals, edges.</summary>
    /// <summary>
    /// The presets' training augmentation, the dense multi-task reference code's: a flip, then a zoom about the centre by
    /// 1, 1.2 or 1.5 with depth divided by it, keeping every image's one size (docs/datasets.md).
    /// </summary>
    public static IJointTransform Augmentation => new Compose(new HorizontalFlip(), new RandomZoom([1, 1.2, 1.5]));

    public static readonly TaskSet MultiTaskTasks = new([
        new TaskSpec("semseg", TaskKind.Segmentation, 40),
        new TaskSpec("depth", TaskKind.Depth, 1),
        new TaskSpec("normals", TaskKind.Normals, 3),
        new TaskSpec("edge", TaskKind.Edges, 1),
    ]);

    /// <summary>The tasks of <see cref="NyudLayout.Preprocessed"/>: 13-class segmentation, depth, normals.</summary>
    public static readonly TaskSet PreprocessedTasks = new([
        new TaskSpec("semseg", TaskKind.Segmentation, 13),
        new TaskSpec("depth", TaskKind.Depth, 1),
        new TaskSpec("normals", TaskKind.Normals, 3),
    ]);

    /// <summary>What the loader looks for, for error messages.</summary>
    public const string ExpectedLayouts =
        "expected either the multi-task layout (NYUD_MT: images/<id>.jpg, segmentation/<id>.png, depth/<id>.npy, " +
        "normals/<id>.npy, edge/<id>.npy and the split lists gt_sets/train.txt, gt_sets/val.txt) or the preprocessed " +
        "NumPy layout (MTAN/LibMTL: train/ and val/, each with image/, label/, depth/ and normal/ folders of <i>.npy files)";

    /// <summary>The layout of the folder at <paramref name="root"/>; <see cref="DatasetNotFoundException"/> when it has neither.</summary>
    public static NyudLayout Detect(string root)
    {
        if (!Directory.Exists(root)) throw NotFound(root, "the folder does not exist");
        if (Directory.Exists(Path.Combine(root, "gt_sets"))) return NyudLayout.MultiTask;
        if (Directory.Exists(Path.Combine(root, "train", "image"))) return NyudLayout.Preprocessed;
        throw NotFound(root, "the folder has neither gt_sets/ nor train/image/");
    }

    /// <summary>The train, validation and test (= val) splits described by <paramref name="options"/>.</summary>
    public static DatasetSplits Load(NyudV2Options options)
    {
        var layout = options.Layout == NyudLayout.Auto ? Detect(options.Root) : options.Layout;
        NyudReader reader = layout == NyudLayout.MultiTask ? new MultiTaskReader(options.Root) : new PreprocessedReader(options.Root);
        var tasks = SelectTasks(reader.Tasks, options.Tasks, layout);
        if (options.TrainTransform is null && (options.TrainHeight is not null || options.TrainWidth is not null))
            throw new ArgumentException("A training size only applies with a training transform that produces it.", nameof(options));
        if (options.TrainHeight is <= 0 || options.TrainWidth is <= 0)
            throw new ArgumentException($"TrainHeight×TrainWidth {options.TrainHeight}×{options.TrainWidth} is out of range; valid: positive sizes.", nameof(options));

        var (trainIds, trainSkipped) = reader.Ids("train", tasks, options.SkipMissing);
        var (valIds, valSkipped) = reader.Ids("val", tasks, options.SkipMissing);
        if (options.ValidationSize < 0 || options.ValidationSize >= trainIds.Length)
            throw new ArgumentException($"ValidationSize {options.ValidationSize} is out of range; valid: 0 (validate on the val split) to {trainIds.Length - 1} (training samples held out).", nameof(options));

        var trainStored = reader.StoredSize("train", trainIds[0]);
        var valStored = reader.StoredSize("val", valIds[0]);
        var trainInput = Input(options.TrainHeight ?? trainStored.Height, options.TrainWidth ?? trainStored.Width);
        var test = new NyudV2Dataset("nyudv2/val", reader, "val", valIds, valSkipped, tasks, Input(valStored.Height, valStored.Width), null, options.Seed);
        if (options.ValidationSize == 0)
            return new DatasetSplits(
                new NyudV2Dataset("nyudv2/train", reader, "train", trainIds, trainSkipped, tasks, trainInput, options.TrainTransform, options.Seed),
                test, test);

        var order = Enumerable.Range(0, trainIds.Length).ToArray();
        new Random(options.Seed).Shuffle(order);
        var held = order[..options.ValidationSize].Order().Select(i => trainIds[i]).ToArray();
        var kept = order[options.ValidationSize..].Order().Select(i => trainIds[i]).ToArray();
        return new DatasetSplits(
            new NyudV2Dataset("nyudv2/train", reader, "train", kept, trainSkipped, tasks, trainInput, options.TrainTransform, options.Seed),
            new NyudV2Dataset("nyudv2/val (held out of train)", reader, "train", held, trainSkipped, tasks,
                Input(trainStored.Height, trainStored.Width), null, options.Seed),
            test);
    }

    private static ImageInput Input(int height, int width) => new(3, height, width, Mean, Std);

    private static TaskSet SelectTasks(TaskSet all, IReadOnlyList<string>? names, NyudLayout layout)
    {
        if (names is null) return all;
        if (names.Count == 0) throw new ConfigException("tasks", $"no tasks listed; valid: {string.Join(", ", all.Names)}");
        foreach (var name in names)
            if (all.IndexOf(name) < 0)
                throw new ConfigException("tasks", $"'{name}' is not a task of the {layout} NYUD-v2 layout; valid: {string.Join(", ", all.Names)}");
        return all.Select(names);
    }

    internal static DatasetNotFoundException NotFound(string root, string problem) =>
        new($"NYUD-v2 not found at {root}: {problem}; {ExpectedLayouts}.");
}

/// <summary>
/// One split of NYUD-v2, read a sample at a time from the files of its layout. Samples must all have the size of
/// <see cref="DenseDataset.Input"/> unless a transform brings them to it; a target map of another size than its image
/// is an error naming the file.
/// </summary>
public sealed class NyudV2Dataset : DenseDataset, ISkipsMissing
{
    private readonly NyudReader _reader;
    private readonly string _split;
    private readonly string[] _ids;
    private readonly long[] _nanDepth;

    internal NyudV2Dataset(string name, NyudReader reader, string split, string[] ids, IReadOnlyList<string> skipped,
        TaskSet tasks, ImageInput input, IJointTransform? transform, int seed)
        : base(name, tasks, input, transform, seed)
    {
        _reader = reader;
        _split = split;
        _ids = ids;
        _nanDepth = new long[ids.Length];
        SkippedIds = skipped;
    }

    public override int Count => _ids.Length;

    /// <summary>The sample ids in index order (file names without extension).</summary>
    public IReadOnlyList<string> Ids => _ids;

    /// <summary>Ids of the split that were dropped because files were missing (only with <see cref="NyudV2Options.SkipMissing"/>).</summary>
    public IReadOnlyList<string> SkippedIds { get; }

    int ISkipsMissing.SkippedCount => SkippedIds.Count;

    /// <summary>
    /// Depth pixels that were NaN or infinite and became 0 (unknown), summed over the samples loaded so far; a sample
    /// loaded again is not counted twice.
    /// </summary>
    public long NanDepthPixels => _nanDepth.Sum();

    /// <summary>The image file of sample <paramref name="index"/>.</summary>
    public string ImagePath(int index) => _reader.ImagePath(_split, _ids[index]);

    protected override DenseSample Load(int index)
    {
        string id = _ids[index];
        string imagePath = _reader.ImagePath(_split, id);
        var image = _reader.ReadImage(imagePath); // uint8 [3, H, W]
        long h = image.shape[1], w = image.shape[2];
        if (Transform is null && (h != Input.Height || w != Input.Width))
            throw new DataFormatException(imagePath, $"the image is {h}×{w}, the other images of the split are {Input.Height}×{Input.Width}");
        var targets = new Dictionary<string, Tensor>();
        foreach (var task in Tasks)
        {
            string path = _reader.TargetPath(_split, id, task.Kind);
            var target = task.Kind switch
            {
                TaskKind.Segmentation => _reader.ReadSegmentation(path, task.Outputs),
                TaskKind.Depth => ReadDepth(path, index),
                TaskKind.Normals => NyudReader.ReadNormals(path),
                TaskKind.Edges => NyudReader.ReadEdges(path),
                _ => throw new InvalidOperationException($"NYUD-v2 has no {task.Kind} targets."),
            };
            long th = target.shape[^2], tw = target.shape[^1];
            if (th != h || tw != w)
                throw new DataFormatException(path, $"the {task.Name} map is {th}×{tw}, its image {imagePath} is {h}×{w}");
            targets[task.Name] = target;
        }
        return new DenseSample(image, targets);
    }

    private Tensor ReadDepth(string path, int index)
    {
        var (depth, nan) = NyudReader.ReadDepth(path);
        Interlocked.Exchange(ref _nanDepth[index], nan);
        return depth;
    }
}

/// <summary>File names and decoding of one layout; the per-kind conversions to <see cref="TaskKind"/>'s layouts.</summary>
internal abstract class NyudReader(string root)
{
    protected string Root { get; } = root;

    public abstract TaskSet Tasks { get; }

    /// <summary>The ids of <paramref name="split"/> whose files are all present, and those skipped (or an error).</summary>
    public (string[] Ids, IReadOnlyList<string> Skipped) Ids(string split, TaskSet tasks, bool skipMissing)
    {
        var (listed, listPath) = ListIds(split);
        var ids = new List<string>(listed.Length);
        var skipped = new List<string>();
        var missingFiles = new List<string>();
        foreach (var id in listed)
        {
            var missing = tasks.Select(t => TargetPath(split, id, t.Kind)).Prepend(ImagePath(split, id)).Where(p => !File.Exists(p)).ToArray();
            if (missing.Length == 0) ids.Add(id);
            else { skipped.Add(id); missingFiles.AddRange(missing); }
        }
        if (skipped.Count > 0 && !skipMissing)
            throw new DataFormatException(listPath,
                $"{missingFiles.Count} file{(missingFiles.Count == 1 ? " is" : "s are")} missing for {skipped.Count} of {listed.Length} ids " +
                $"(first: {string.Join(", ", missingFiles.Take(3))}); restore them, or set skipMissing to leave those ids out");
        if (ids.Count == 0) throw new DataFormatException(listPath, skipped.Count == 0 ? "lists no samples" : "every listed sample has missing files");
        return (ids.ToArray(), skipped);
    }

    /// <summary>The ids of <paramref name="split"/> in order, and the file or folder they were listed from.</summary>
    protected abstract (string[] Ids, string ListPath) ListIds(string split);

    public abstract string ImagePath(string split, string id);
    public abstract string TargetPath(string split, string id, TaskKind kind);

    /// <summary>The image as uint8 [3, H, W].</summary>
    public abstract Tensor ReadImage(string path);

    /// <summary>Classes 0..classes−1 as int64 [H, W], <see cref="TaskSpec.IgnoreLabel"/> where unlabelled.</summary>
    public abstract Tensor ReadSegmentation(string path, int classes);

    /// <summary>Height and width of the stored image of <paramref name="id"/>, the size the split's samples share.</summary>
    public (int Height, int Width) StoredSize(string split, string id)
    {
        using var image = ReadImage(ImagePath(split, id));
        return ((int)image.shape[1], (int)image.shape[2]);
    }

    /// <summary>Depth in metres, float32 [1, H, W] from [H, W], [1, H, W] or [H, W, 1]; NaN and ±∞ become 0 (unknown) and are counted.</summary>
    public static (Tensor Depth, long NanPixels) ReadDepth(string path)
    {
        var depth = Plane(path, Npy.Read(path), "depth");
        var bad = depth.isfinite().logical_not();
        long nan = bad.sum().item<long>();
        return (nan > 0 ? depth.masked_fill(bad, Scalars.Zero) : depth, nan);
    }

    /// <summary>
    /// Unit normals float32 [3, H, W] from an [H, W, 3] array (both layouts store x, y, z last). Vectors are rescaled
    /// to unit length, as the reference loaders do after resizing; zero vectors (unknown) and vectors with a NaN stay
    /// or become zero.
    /// </summary>
    public static Tensor ReadNormals(string path)
    {
        var array = Npy.Read(path);
        if (array.Shape.Length != 3 || array.Shape[2] != 3)
            throw new DataFormatException(path, $"normals must be [H, W, 3], not ({string.Join(", ", array.Shape)})");
        var n = array.ToTensor().to(float32).permute(2, 0, 1).contiguous(); // [3, H, W]
        var bad = n.isfinite().logical_not().any(0, keepdim: true);
        n = n.masked_fill(bad, Scalars.Zero);
        var length = n.Squared().sum(0, keepdim: true).sqrt_();
        return n.div(length.Clamped(1e-12, null));
    }

    /// <summary>Edges float32 [1, H, W] in {0, 1} from [H, W] (or [1, H, W], [H, W, 1]); values above 0.5 are edges.</summary>
    public static Tensor ReadEdges(string path) => Plane(path, Npy.Read(path), "edge").gt(Scalars.Half).to(float32);

    /// <summary>A single-channel map as float32 [1, H, W].</summary>
    protected static Tensor Plane(string path, NpyArray array, string what)
    {
        var s = array.Shape;
        bool ok = s.Length == 2 || (s.Length == 3 && (s[0] == 1 || s[2] == 1));
        if (!ok) throw new DataFormatException(path, $"a {what} map must be [H, W], [1, H, W] or [H, W, 1], not ({string.Join(", ", s)})");
        long h = s.Length == 3 && s[0] == 1 ? s[1] : s[0], w = s.Length == 3 && s[0] == 1 ? s[2] : s[1];
        return array.ToTensor().to(float32).reshape(1, h, w);
    }
}

/// <summary>
/// NYUD_MT, read as data/nyud.py of Multi-Task-Learning-PyTorch (after ASTMT) reads it: the image is converted to
/// RGB; segmentation PNG value 0 is unlabelled and 1..40 become classes 0..39; depth is metres with 0 unknown;
/// normals are [H, W, 3] unit vectors with zero where unknown; edges are an [H, W] 0/1 map.
/// </summary>
internal sealed class MultiTaskReader : NyudReader
{
    public MultiTaskReader(string root) : base(root)
    {
        if (!Directory.Exists(root)) throw NyudV2.NotFound(root, "the folder does not exist");
        foreach (var split in new[] { "train", "val" })
            if (!File.Exists(Path.Combine(root, "gt_sets", split + ".txt")))
                throw NyudV2.NotFound(root, $"the split list gt_sets/{split}.txt is missing");
    }

    public override TaskSet Tasks => NyudV2.MultiTaskTasks;

    protected override (string[] Ids, string ListPath) ListIds(string split)
    {
        string path = Path.Combine(Root, "gt_sets", split + ".txt");
        return (File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray(), path);
    }

    public override string ImagePath(string split, string id) => Path.Combine(Root, "images", id + ".jpg");

    public override string TargetPath(string split, string id, TaskKind kind) => kind switch
    {
        TaskKind.Segmentation => Path.Combine(Root, "segmentation", id + ".png"),
        TaskKind.Depth => Path.Combine(Root, "depth", id + ".npy"),
        TaskKind.Normals => Path.Combine(Root, "normals", id + ".npy"),
        TaskKind.Edges => Path.Combine(Root, "edge", id + ".npy"),
        _ => throw new InvalidOperationException($"NYUD-v2 has no {kind} targets."),
    };

    public override Tensor ReadImage(string path)
    {
        var image = ImageFiles.Read(path);
        var t = tensor(image.Pixels, dtype: ScalarType.Byte).view(image.Height, image.Width, image.Channels).permute(2, 0, 1);
        return (image.Channels == 1 ? t.expand(3, -1, -1) : t).contiguous();
    }

    public override Tensor ReadSegmentation(string path, int classes)
    {
        // A gray or palette PNG: the class numbers as stored (8 or 16 bits, or palette indices).
        if (PngLabels.TryRead(path, out int height, out int width) is { } stored)
        {
            var values = new long[stored.Length];
            for (int i = 0; i < values.Length; i++)
            {
                int v = stored[i];
                if (v > classes) throw new DataFormatException(path, $"holds the value {v}; labels are 0 (unlabelled) and 1..{classes}");
                values[i] = v == 0 ? TaskSpec.IgnoreLabel : v - 1;
            }
            return tensor(values).view(height, width);
        }
        var png = ImageFiles.Read(path);
        var labels = new long[png.Height * png.Width];
        for (int i = 0; i < labels.Length; i++)
        {
            int c = png.Channels;
            byte v = png.Pixels[i * c];
            // A colour PNG would hold palette colours, not class numbers: accept it only when it is gray in disguise.
            if (c == 3 && (png.Pixels[i * c + 1] != v || png.Pixels[i * c + 2] != v))
                throw new DataFormatException(path, "is a colour image; a label map holds one class number per pixel (gray PNG)");
            if (v > classes) throw new DataFormatException(path, $"holds the value {v}; labels are 0 (unlabelled) and 1..{classes}");
            labels[i] = v == 0 ? TaskSpec.IgnoreLabel : v - 1;
        }
        return tensor(labels).view(png.Height, png.Width);
    }
}

/// <summary>
/// The MTAN NumPy release, read as create_dataset.py of MTAN and LibMTL read it: image [H, W, 3] float32 in [0, 1]
/// (stored here as bytes: ×255, rounded; uint8 arrays are taken as they are); label [H, W] with classes 0..12 and
/// −1 unlabelled; depth [H, W, 1] in metres, 0 unknown; normal [H, W, 3], zero where unknown. Ids are the file
/// names of <c>{split}/image/</c>, in numeric order.
/// </summary>
internal sealed class PreprocessedReader : NyudReader
{
    public PreprocessedReader(string root) : base(root)
    {
        if (!Directory.Exists(root)) throw NyudV2.NotFound(root, "the folder does not exist");
        foreach (var split in new[] { "train", "val" })
            if (!Directory.Exists(Path.Combine(root, split, "image")))
                throw NyudV2.NotFound(root, $"the folder {split}/image/ is missing");
    }

    public override TaskSet Tasks => NyudV2.PreprocessedTasks;

    protected override (string[] Ids, string ListPath) ListIds(string split)
    {
        string dir = Path.Combine(Root, split, "image");
        var ids = Directory.EnumerateFiles(dir, "*.npy").Select(p => Path.GetFileNameWithoutExtension(p)!)
            .OrderBy(id => long.TryParse(id, out long n) ? n : long.MaxValue).ThenBy(id => id, StringComparer.Ordinal).ToArray();
        return (ids, dir);
    }

    public override string ImagePath(string split, string id) => Path.Combine(Root, split, "image", id + ".npy");

    public override string TargetPath(string split, string id, TaskKind kind) => kind switch
    {
        TaskKind.Segmentation => Path.Combine(Root, split, "label", id + ".npy"),
        TaskKind.Depth => Path.Combine(Root, split, "depth", id + ".npy"),
        TaskKind.Normals => Path.Combine(Root, split, "normal", id + ".npy"),
        _ => throw new InvalidOperationException($"The preprocessed NYUD-v2 layout has no {kind} targets."),
    };

    public override Tensor ReadImage(string path)
    {
        var array = Npy.Read(path);
        if (array.Shape.Length != 3 || array.Shape[2] != 3)
            throw new DataFormatException(path, $"an image must be [H, W, 3], not ({string.Join(", ", array.Shape)})");
        var t = array.ToTensor();
        if (array.DType != "u1")
        {
            if (array.IsInteger) throw new DataFormatException(path, $"an image must be float32 in [0, 1] or uint8, not {array.DType}");
            double min = t.min().to(float64).item<double>(), max = t.max().to(float64).item<double>();
            // A little slack for resampling overshoot; anything beyond is another convention (0..255, normalised).
            if (!(min >= -0.01 && max <= 1.01))
                throw new DataFormatException(path, $"image values span {min:G4}..{max:G4}; the preprocessed layout stores floats in [0, 1]");
            using var top = Scalars.Of(255L);
            t = t.mul(top).round_().clamp_(Scalars.Zero, top).to(ScalarType.Byte);
        }
        return t.permute(2, 0, 1).contiguous();
    }

    public override Tensor ReadSegmentation(string path, int classes)
    {
        var array = Npy.Read(path);
        if (array.Shape.Length != 2) throw new DataFormatException(path, $"a label map must be [H, W], not ({string.Join(", ", array.Shape)})");
        var t = array.ToTensor().to(float64);
        if (!t.eq(t.round()).all().item<bool>()) throw new DataFormatException(path, "holds non-integer labels");
        double min = t.min().item<double>(), max = t.max().item<double>();
        if (min < -1 || max > classes - 1)
            throw new DataFormatException(path, $"holds the label {(min < -1 ? min : max)}; labels are −1 (unlabelled) and 0..{classes - 1}");
        var labels = t.to(int64);
        using var ignore = Scalars.Of(TaskSpec.IgnoreLabel);
        return labels.masked_fill(labels.eq(Scalars.MinusOne), ignore);
    }
}
