// PASCAL-Context multi-task benchmark: the PASCAL_MT release of Maninis et al., "Attentive Single-Tasking of
// Multiple Tasks" (CVPR 2019), as loaded by Vandenhende et al.'s multi-task learning code (data/pascal_context.py).
using System.Text.Json;
using InterroGate.Data.Formats;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>
/// Where PASCAL-Context lives and how it is split and sized. <see cref="Tasks"/> null loads all five.
/// <see cref="ValidationSize"/> images are held out of train.txt (drawn with <see cref="Seed"/>) as the
/// validation split; 0 uses val.txt as validation too. The test split is always val.txt (the benchmark has no
/// public test labels). Images differ in size (about 500×375), while a batch needs one size: give
/// <see cref="TrainTransform"/> (random scale, crop, flip, then to the input size) and <see cref="EvalTransform"/>
/// (resize or pad to the input size) unless every image already has the input size. With a <see cref="Resize"/>
/// (the preset's, 512×512) the dense metrics score each image at its own size, the prediction resized back
/// (<see cref="DenseDataset.ScoresAtStoredSize"/>), as the benchmark's reference evaluation does. <see cref="SkipMissing"/> leaves out listed images whose files are missing instead of failing.
/// </summary>
public sealed record PascalContextOptions(string Root)
{
    public IReadOnlyList<string>? Tasks { get; init; }
    public int ValidationSize { get; init; }
    public int Seed { get; init; }
    public int InputHeight { get; init; } = 512;
    public int InputWidth { get; init; } = 512;
    public IJointTransform? TrainTransform { get; init; }
    public IJointTransform? EvalTransform { get; init; }
    public bool SkipMissing { get; init; }
    /// <summary>Threshold distilled saliency at 0.5, as the benchmark does (false: keep the soft value v / 255).</summary>
    public bool BinarizeSaliency { get; init; } = true;
}

/// <summary>
/// The PASCAL_MT folder layout, read as the benchmark's reference loader reads it:
/// <list type="bullet">
/// <item><c>JPEGImages/{id}.jpg</c>: the image (gray JPEGs become RGB).</item>
/// <item><c>semseg</c>: <c>semseg/VOC12/{id}.png</c>, else <c>semseg/pascal-context/{id}.png</c>; 21 classes
/// (0 = background, the 20 VOC objects) stored as is, 255 = ignore. Gray PNGs, or VOC-palette colour PNGs.</item>
/// <item><c>human_parts</c>: <c>human_parts/{id}.mat</c> (PASCAL-Part: struct <c>anno</c>, its <c>objects</c>
/// with <c>class_ind</c> and <c>parts</c>, each part a <c>part_name</c> and <c>mask</c>). The parts of person
/// objects (class 15) give 7 classes: 0 background, 1 head, 2 torso, 3 upper arm, 4 lower arm and hand,
/// 5 upper leg, 6 lower leg and foot; an image without any such part is ignore (255) everywhere.</item>
/// <item><c>sal</c>: <c>sal_distill/{id}.png</c>, v / 255 thresholded at 0.5 (see <see cref="PascalContextOptions.BinarizeSaliency"/>).</item>
/// <item><c>normals</c>: <c>normals_distill/{id}.png</c>, RGB → 2·v/255 − 1 per axis, made unit length; only on
/// pixels whose PASCAL-Context class (<c>LabelMap</c> of <c>pascal-context/trainval/{id}.mat</c>) is one of the
/// NYUD indoor classes the distilling network knew (and tvmonitor); the zero vector (unknown) elsewhere.</item>
/// <item><c>edge</c>: from the same <c>LabelMap</c>: pixels where its 4-neighbour Laplacian is non-zero (reflected
/// borders), thinned to one pixel (Guo–Hall thinning), as the benchmark derives them.</item>
/// <item><c>ImageSets/Context/train.txt</c>, <c>val.txt</c>: one id per line (4,998 and 5,105 images).</item>
/// </list>
/// When human_parts is the only task, images without human parts are left out (as the reference does), found
/// from <c>ImageSets/Parts/{split}.txt</c> when present, else by reading each .mat. Label maps must have the
/// image's size; a file of another size is an error naming it.
/// </summary>
public static class PascalContext
{
    /// <summary>
    /// The presets' training augmentation, the dense multi-task reference code's: a flip, a zoom about the centre by 0.75
    /// to 1.25 that keeps the image's size, then the 512×512 resize that evaluation makes too (docs/datasets.md).
    /// </summary>
    public static IJointTransform Augmentation => new Compose(new HorizontalFlip(), new RandomZoom(0.75, 1.25), new Resize(512, 512));

    public const string SemanticSegmentation = "semseg";
    public const string HumanParts = "human_parts";
    public const string Saliency = "sal";
    public const string Normals = "normals";
    public const string Edges = "edge";

    /// <summary>The person category of PASCAL VOC, whose parts make the human-parts task.</summary>
    public const int PersonClass = 15;

    /// <summary>All five tasks, in the benchmark's order.</summary>
    public static TaskSet AllTasks { get; } = new([
        new TaskSpec(SemanticSegmentation, TaskKind.Segmentation, 21),
        new TaskSpec(HumanParts, TaskKind.Segmentation, 7),
        new TaskSpec(Saliency, TaskKind.Saliency, 1),
        new TaskSpec(Normals, TaskKind.Normals, 3),
        new TaskSpec(Edges, TaskKind.Edges, 1),
    ]);

    /// <summary>
    /// The model input: RGB at the given size, normalised with the mean and standard deviation of the ImageNet
    /// statistics averaged over channels (0.449, 0.226), as <see cref="ImageInput"/> holds one value for all channels.
    /// </summary>
    public static ImageInput Input(int height, int width) => new(3, height, width, Mean: 0.449, Std: 0.226);

    /// <summary>The PASCAL-Part names of a person's parts and their class in the 6-part grouping (0 is background).</summary>
    public static IReadOnlyDictionary<string, int> PersonParts { get; } = new Dictionary<string, int>
    {
        ["hair"] = 1, ["head"] = 1, ["lear"] = 1, ["rear"] = 1, ["lebrow"] = 1, ["rebrow"] = 1, ["leye"] = 1, ["reye"] = 1,
        ["mouth"] = 1, ["nose"] = 1,
        ["neck"] = 2, ["torso"] = 2,
        ["luarm"] = 3, ["ruarm"] = 3,
        ["llarm"] = 4, ["rlarm"] = 4, ["lhand"] = 4, ["rhand"] = 4,
        ["luleg"] = 5, ["ruleg"] = 5,
        ["llleg"] = 6, ["rlleg"] = 6, ["lfoot"] = 6, ["rfoot"] = 6,
    };

    /// <summary>
    /// PASCAL-Context classes (of the 459 in <c>LabelMap</c>) that name an NYUD-v2 class, where the distilled
    /// normals are trusted; the benchmark also keeps tvmonitor (427). "unknown" is excluded.
    /// </summary>
    public static IReadOnlySet<int> NormalsValidClasses { get; } = new HashSet<int>
    {
        3, 4, 6, 9, 10, 11, 13, 15, 17, 18, 22, 23, 29, 30, 33, 34, 36, 37, 38, 39, 41, 43, 46, 49, 50, 51, 53, 55,
        56, 59, 61, 62, 65, 66, 68, 69, 72, 73, 78, 83, 84, 85, 87, 88, 95, 96, 101, 104, 105, 107, 111, 113, 115,
        122, 124, 135, 141, 142, 143, 146, 150, 154, 157, 158, 159, 165, 172, 174, 181, 183, 184, 191, 193, 195,
        197, 199, 202, 213, 215, 216, 219, 220, 223, 225, 228, 230, 232, 233, 238, 239, 242, 243, 246, 250, 251,
        252, 255, 260, 261, 263, 269, 272, 273, 275, 281, 283, 284, 285, 286, 287, 288, 290, 291, 292, 293, 295,
        304, 307, 309, 310, 314, 315, 319, 323, 329, 330, 331, 336, 342, 345, 349, 350, 351, 352, 355, 357, 368,
        370, 371, 374, 379, 380, 383, 384, 397, 401, 403, 405, 407, 408, 411, 412, 413, 414, 417, 419, 421, 423,
        427, 429, 430, 432, 440, 441, 442, 443, 444, 446, 454, 457,
    };

    private const string Layout =
        "the PASCAL_MT layout: JPEGImages/{id}.jpg, semseg/pascal-context/{id}.png (or semseg/VOC12/), human_parts/{id}.mat, " +
        "sal_distill/{id}.png, normals_distill/{id}.png, pascal-context/trainval/{id}.mat and ImageSets/Context/train.txt and val.txt " +
        "(the PASCAL_MT.tgz release of the multi-task PASCAL-Context benchmark)";

    /// <summary>Train, validation and test splits (test = val.txt) of the tasks asked for.</summary>
    public static DatasetSplits Load(PascalContextOptions options)
    {
        string root = options.Root;
        if (!Directory.Exists(root)) throw new DatasetNotFoundException($"No PASCAL-Context data at {root}: expected {Layout}.");
        var tasks = options.Tasks is null ? AllTasks : AllTasks.Select(options.Tasks);
        if (options.ValidationSize < 0) throw new ArgumentException($"ValidationSize must be 0 or more, not {options.ValidationSize}.");
        var input = Input(options.InputHeight, options.InputWidth);

        var (trainIds, trainSkipped, trainLeftOut) = Ids(root, "train", tasks, options.SkipMissing);
        var (valIds, valSkipped, valLeftOut) = Ids(root, "val", tasks, options.SkipMissing);
        PascalContextDataset Make(string name, string[] ids, IJointTransform? transform, int skipped, int leftOut) =>
            new($"{root}/{name}", tasks, input, transform, options.Seed, root, ids, skipped, leftOut, options.BinarizeSaliency);

        var test = Make("val", valIds, options.EvalTransform, valSkipped, valLeftOut);
        if (options.ValidationSize == 0)
            return new DatasetSplits(Make("train", trainIds, options.TrainTransform, trainSkipped, trainLeftOut), test, test);
        if (options.ValidationSize >= trainIds.Length)
            throw new ArgumentException($"ValidationSize {options.ValidationSize} leaves nothing to train on: train.txt has {trainIds.Length} usable images.");

        var order = Enumerable.Range(0, trainIds.Length).ToArray();
        new Random(options.Seed).Shuffle(order);
        var held = order.Take(options.ValidationSize).Order().ToArray();
        var rest = order.Skip(options.ValidationSize).Order().ToArray();
        return new DatasetSplits(
            Make("train", rest.Select(i => trainIds[i]).ToArray(), options.TrainTransform, trainSkipped, trainLeftOut),
            Make("train (held out for validation)", held.Select(i => trainIds[i]).ToArray(), options.EvalTransform, 0, 0),
            test);
    }

    /// <summary>The ids of a split list that have every file the tasks need (the others fail or, with skipMissing, are counted).</summary>
    private static (string[] Ids, int Skipped, int WithoutHumans) Ids(string root, string split, TaskSet tasks, bool skipMissing)
    {
        string list = Path.Combine(root, "ImageSets", "Context", split + ".txt");
        if (!File.Exists(list)) throw new DatasetNotFoundException($"No split list {list}: expected {Layout}.");
        var ids = File.ReadAllLines(list).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        var kept = new List<string>(ids.Length);
        var missing = new List<string>();
        int skipped = 0;
        foreach (var id in ids)
        {
            var absent = RequiredFiles(root, id, tasks).Where(f => !File.Exists(f)).ToArray();
            if (absent.Length == 0) kept.Add(id);
            else
            {
                skipped++;
                missing.AddRange(absent);
            }
        }
        if (skipped > 0 && !skipMissing)
            throw new DataFormatException(list,
                $"{skipped} of {ids.Length} listed images lack files ({missing.Count} missing), e.g. {string.Join(", ", missing.Take(5))}; " +
                "set SkipMissing to leave those images out.");

        int withoutHumans = 0;
        if (tasks.Count == 1 && tasks[0].Name == HumanParts)
        {
            var withHumans = ImagesWithHumanParts(root, split, kept);
            withoutHumans = kept.Count - withHumans.Count;
            kept = withHumans;
        }
        return (kept.ToArray(), skipped, withoutHumans);
    }

    private static IEnumerable<string> RequiredFiles(string root, string id, TaskSet tasks)
    {
        yield return ImagePath(root, id);
        foreach (var t in tasks)
            foreach (var f in TaskFiles[t.Name](root, id)) yield return f;
    }

    private static readonly Dictionary<string, Func<string, string, string[]>> TaskFiles = new()
    {
        [SemanticSegmentation] = (root, id) => [SemsegPath(root, id)],
        [HumanParts] = (root, id) => [Path.Combine(root, "human_parts", id + ".mat")],
        [Saliency] = (root, id) => [Path.Combine(root, "sal_distill", id + ".png")],
        [Normals] = (root, id) => [Path.Combine(root, "normals_distill", id + ".png"), LabelMapPath(root, id)],
        [Edges] = (root, id) => [LabelMapPath(root, id)],
    };

    internal static string ImagePath(string root, string id) => Path.Combine(root, "JPEGImages", id + ".jpg");
    internal static string LabelMapPath(string root, string id) => Path.Combine(root, "pascal-context", "trainval", id + ".mat");

    internal static string SemsegPath(string root, string id)
    {
        string voc = Path.Combine(root, "semseg", "VOC12", id + ".png");
        return File.Exists(voc) ? voc : Path.Combine(root, "semseg", "pascal-context", id + ".png");
    }

    /// <summary>
    /// The ids with a person object: from the object-category list ImageSets/Parts/{split}.txt (a JSON map id →
    /// categories, written by the reference loader) when it covers every id, else by reading each .mat file.
    /// </summary>
    private static List<string> ImagesWithHumanParts(string root, string split, List<string> ids)
    {
        string cache = Path.Combine(root, "ImageSets", "Parts", split + ".txt");
        if (File.Exists(cache))
        {
            Dictionary<string, int[]>? categories;
            try
            {
                categories = JsonSerializer.Deserialize<Dictionary<string, int[]>>(File.ReadAllText(cache));
            }
            catch (JsonException e)
            {
                throw new DataFormatException(cache, $"not a JSON map from image id to object categories: {e.Message}");
            }
            if (categories is not null && ids.All(categories.ContainsKey))
                return ids.Where(id => categories[id].Contains(PersonClass)).ToList();
        }
        return ids.Where(id => PersonObjects(MatFile.Read(Path.Combine(root, "human_parts", id + ".mat"))).Any()).ToList();
    }

    /// <summary>The person objects of a PASCAL-Part annotation file.</summary>
    private static IEnumerable<(MatStruct Objects, int Index)> PersonObjects(MatFile file)
    {
        var anno = file.Get<MatStruct>("anno");
        if (anno.Count == 0 || !anno.HasField("objects")) throw new DataFormatException(file.Path, "'anno' has no 'objects' field.");
        if (anno[0, "objects"] is not MatStruct objects) yield break; // [] when the image has no annotated object
        if (!objects.HasField("class_ind")) throw new DataFormatException(file.Path, "'anno.objects' has no 'class_ind' field.");
        for (int i = 0; i < objects.Count; i++)
            if (objects[i, "class_ind"] is MatArray { Count: 1 } c && c.ScalarValue == PersonClass) yield return (objects, i);
    }

    /// <summary>
    /// The 7-class part map (row-major H×W, int64) of one annotation file: person parts painted in file order,
    /// later parts over earlier ones; all ignore (255) when no person part is annotated.
    /// </summary>
    internal static long[] PartMap(MatFile file, int height, int width)
    {
        var map = new long[height * width];
        bool any = false;
        foreach (var (objects, i) in PersonObjects(file))
        {
            if (!objects.HasField("parts") || objects[i, "parts"] is not MatStruct { Count: > 0 } parts) continue;
            for (int p = 0; p < parts.Count; p++)
            {
                string at = $"anno.objects({i + 1}).parts({p + 1})";
                string name = (parts[p, "part_name"] as MatChar)?.Value
                    ?? throw new DataFormatException(file.Path, $"{at}.part_name is not text.");
                if (!PersonParts.TryGetValue(name, out int cls))
                    throw new DataFormatException(file.Path, $"{at} is an unknown person part '{name}' (known: {string.Join(", ", PersonParts.Keys)}).");
                var mask = parts[p, "mask"] as MatArray ?? throw new DataFormatException(file.Path, $"{at}.mask is not an array.");
                CheckSize(file.Path, $"{at}.mask", mask, height, width);
                var bits = mask.ToRowMajor<double>();
                for (int k = 0; k < bits.Length; k++)
                    if (bits[k] != 0)
                    {
                        map[k] = cls;
                        any = true;
                    }
            }
        }
        if (!any) Array.Fill(map, TaskSpec.IgnoreLabel);
        return map;
    }

    /// <summary>The class map (row-major H×W) of pascal-context/trainval/{id}.mat.</summary>
    internal static double[] LabelMap(string path, int height, int width)
    {
        var labels = MatFile.Read(path).Get<MatArray>("LabelMap");
        CheckSize(path, "LabelMap", labels, height, width);
        return labels.ToRowMajor();
    }

    private static void CheckSize(string path, string what, MatArray a, int height, int width)
    {
        if (a.Dims.Length != 2 || a.Dims[0] != height || a.Dims[1] != width)
            throw new DataFormatException(path, $"{what} is {string.Join('×', a.Dims)}, the image is {height}×{width}.");
    }

    /// <summary>
    /// Boundaries of a label map (row-major H×W): pixels whose 4-neighbour Laplacian (borders reflected without
    /// repeating the edge pixel) is non-zero, thinned to one pixel width — the benchmark's edge ground truth.
    /// </summary>
    public static bool[] EdgeMap(double[] labels, int height, int width)
    {
        static int Reflect(int i, int n) => n == 1 ? 0 : i < 0 ? -i : i >= n ? 2 * n - 2 - i : i;
        var edge = new bool[labels.Length];
        for (int r = 0; r < height; r++)
            for (int c = 0; c < width; c++)
            {
                double centre = labels[r * width + c];
                double laplacian = labels[Reflect(r - 1, height) * width + c] + labels[Reflect(r + 1, height) * width + c]
                    + labels[r * width + Reflect(c - 1, width)] + labels[r * width + Reflect(c + 1, width)] - 4 * centre;
                edge[r * width + c] = laplacian != 0;
            }
        return Thin(edge, height, width);
    }

    // Guo & Hall (1989), "Parallel thinning with two-subiteration algorithms", with the deletion conditions
    // G1, G2 and G3 (first subiteration) or G3' (second) tabulated over the 8-neighbourhood. Bit k of a
    // neighbourhood is the neighbour at k·45° counter-clockwise from east: E, NE, N, NW, W, SW, S, SE.
    private static readonly bool[][] ThinningTables = BuildThinningTables();

    private static bool[][] BuildThinningTables()
    {
        var first = new bool[256];
        var second = new bool[256];
        for (int n = 0; n < 256; n++)
        {
            bool B(int k) => (n >> (k % 8) & 1) != 0;
            int crossings = 0;
            for (int i = 0; i < 8; i += 2)
                if (!B(i) && (B(i + 1) || B(i + 2))) crossings++;
            int n1 = 0, n2 = 0;
            for (int k = 1; k < 8; k += 2)
            {
                if (B(k) || B(k - 1)) n1++;
                if (B(k) || B(k + 1)) n2++;
            }
            bool g12 = crossings == 1 && Math.Min(n1, n2) is 2 or 3;
            first[n] = g12 && !((B(1) || B(2) || !B(7)) && B(0));
            second[n] = g12 && !((B(5) || B(6) || !B(3)) && B(4));
        }
        return [first, second];
    }

    /// <summary>Morphological thinning of a binary image (row-major H×W) to one-pixel-wide, 8-connected lines; outside the image is background.</summary>
    public static bool[] Thin(bool[] image, int height, int width)
    {
        var skel = (bool[])image.Clone();
        var delete = new bool[skel.Length];
        // Neighbour offsets (row, column) in bit order E, NE, N, NW, W, SW, S, SE.
        ReadOnlySpan<int> dr = [0, -1, -1, -1, 0, 1, 1, 1];
        ReadOnlySpan<int> dc = [1, 1, 0, -1, -1, -1, 0, 1];
        for (bool changed = true; changed;)
        {
            changed = false;
            foreach (var table in ThinningTables)
            {
                // Decide every deletion from the same image, then delete: the subiterations are parallel.
                for (int r = 0; r < height; r++)
                    for (int c = 0; c < width; c++)
                    {
                        int i = r * width + c;
                        if (!skel[i]) { delete[i] = false; continue; }
                        int n = 0;
                        for (int k = 0; k < 8; k++)
                        {
                            int rr = r + dr[k], cc = c + dc[k];
                            if (rr >= 0 && rr < height && cc >= 0 && cc < width && skel[rr * width + cc]) n |= 1 << k;
                        }
                        delete[i] = table[n];
                    }
                for (int i = 0; i < skel.Length; i++)
                    if (delete[i])
                    {
                        skel[i] = false;
                        changed = true;
                    }
            }
        }
        return skel;
    }

    // The PASCAL VOC colour map (index bits spread over the high bits of R, G, B): colour label PNGs map back to indices.
    private static readonly Dictionary<int, int> VocPaletteIndex = Enumerable.Range(0, 256).ToDictionary(i =>
    {
        int r = 0, g = 0, b = 0;
        for (int j = 0, c = i; j < 8; j++, c >>= 3)
        {
            r |= (c & 1) << (7 - j);
            g |= (c >> 1 & 1) << (7 - j);
            b |= (c >> 2 & 1) << (7 - j);
        }
        return r << 16 | g << 8 | b;
    }, i => i);

    /// <summary>
    /// The class indices of a label PNG of an <paramref name="height"/>×<paramref name="width"/> image: gray values and
    /// palette indices as stored (<see cref="PngLabels"/>), the colours of an RGB PNG in the VOC palette mapped back to
    /// their index.
    /// </summary>
    internal static byte[] LabelIndices(string path, string imageName, int height, int width, Func<DecodedImage> decode)
    {
        if (PngLabels.TryRead(path, out int h, out int w) is { } stored)
        {
            if (h != height || w != width) throw new DataFormatException(path, $"is {h}×{w}, the image {imageName} is {height}×{width}.");
            var bytes = new byte[stored.Length];
            for (int k = 0; k < bytes.Length; k++)
            {
                if (stored[k] > 255)
                    throw new DataFormatException(path, $"label {stored[k]} at pixel ({k / w}, {k % w}); the 21 classes are 0..20 and 255 is ignore.");
                bytes[k] = (byte)stored[k];
            }
            return bytes;
        }
        var png = decode();
        if (png.Channels == 1) return png.Pixels;
        var indices = new byte[png.Height * png.Width];
        for (int k = 0; k < indices.Length; k++)
        {
            int rgb = png.Pixels[3 * k] << 16 | png.Pixels[3 * k + 1] << 8 | png.Pixels[3 * k + 2];
            if (!VocPaletteIndex.TryGetValue(rgb, out int index))
                throw new DataFormatException(path, $"colour ({png.Pixels[3 * k]}, {png.Pixels[3 * k + 1]}, {png.Pixels[3 * k + 2]}) at pixel ({k / png.Width}, {k % png.Width}) is not in the VOC palette; label maps are gray or VOC-palette PNGs.");
            indices[k] = (byte)index;
        }
        return indices;
    }
}

/// <summary>
/// One split of PASCAL-Context (see <see cref="PascalContext"/> for the layout and target conventions). Files are
/// read per sample; <see cref="Skipped"/> counts listed images left out for missing files.
/// </summary>
public sealed class PascalContextDataset : DenseDataset, ISkipsMissing
{
    private readonly string _root;
    private readonly bool _binarizeSaliency;

    internal PascalContextDataset(string name, TaskSet tasks, ImageInput input, IJointTransform? transform, int seed,
        string root, string[] ids, int skipped, int withoutHumanParts, bool binarizeSaliency)
        : base(name, tasks, input, transform, seed)
    {
        _root = root;
        Ids = ids;
        Skipped = skipped;
        WithoutHumanParts = withoutHumanParts;
        _binarizeSaliency = binarizeSaliency;
    }

    /// <summary>The image ids, in split-list order.</summary>
    public IReadOnlyList<string> Ids { get; }

    /// <summary>Listed images left out because a file they need is missing (with SkipMissing).</summary>
    public int Skipped { get; }

    int ISkipsMissing.SkippedCount => Skipped;

    /// <summary>Listed images left out because they have no human parts (only when human_parts is the sole task).</summary>
    public int WithoutHumanParts { get; }

    public override int Count => Ids.Count;

    protected override DenseSample Load(int index)
    {
        string id = Ids[index];
        string imagePath = PascalContext.ImagePath(_root, id);
        var image = ImageFiles.Read(imagePath);
        int h = image.Height, w = image.Width;
        var rgb = image.Channels == 3 ? image.Pixels : image.Pixels.SelectMany(v => new[] { v, v, v }).ToArray();
        var sample = new Sample(_root, id, h, w);
        var targets = Tasks.ToDictionary(t => t.Name, t => Readers[t.Name](this, sample));
        return new DenseSample(tensor(rgb, dtype: ScalarType.Byte).view(h, w, 3).permute(2, 0, 1).contiguous(), targets);
    }

    /// <summary>The files of one image; the LabelMap, shared by edges and normals, is read at most once.</summary>
    private sealed class Sample(string root, string id, int height, int width)
    {
        private double[]? _labels;
        public string Root => root;
        public string Id => id;
        public int Height => height;
        public int Width => width;
        public double[] Labels => _labels ??= PascalContext.LabelMap(PascalContext.LabelMapPath(root, id), height, width);

        public DecodedImage Png(string path, int channels)
        {
            var png = ImageFiles.Read(path);
            if (png.Height != height || png.Width != width)
                throw new DataFormatException(path, $"is {png.Height}×{png.Width}, the image {id}.jpg is {height}×{width}.");
            if (channels == 3 && png.Channels != 3) throw new DataFormatException(path, "must be an RGB PNG (one colour channel per normal axis).");
            return png;
        }
    }

    private static readonly Dictionary<string, Func<PascalContextDataset, Sample, Tensor>> Readers = new()
    {
        [PascalContext.SemanticSegmentation] = (_, s) =>
        {
            string path = PascalContext.SemsegPath(s.Root, s.Id);
            var labels = PascalContext.LabelIndices(path, s.Id + ".jpg", s.Height, s.Width, () => s.Png(path, 1));
            for (int k = 0; k < labels.Length; k++)
                if (labels[k] > 20 && labels[k] != TaskSpec.IgnoreLabel)
                    throw new DataFormatException(path, $"label {labels[k]} at pixel ({k / s.Width}, {k % s.Width}); the 21 classes are 0..20 and 255 is ignore.");
            return tensor(labels, dtype: ScalarType.Byte).to(ScalarType.Int64).view(s.Height, s.Width);
        },
        [PascalContext.HumanParts] = (_, s) =>
            tensor(PascalContext.PartMap(MatFile.Read(Path.Combine(s.Root, "human_parts", s.Id + ".mat")), s.Height, s.Width)).view(s.Height, s.Width),
        [PascalContext.Saliency] = (d, s) =>
        {
            var png = s.Png(Path.Combine(s.Root, "sal_distill", s.Id + ".png"), 1);
            var values = new float[s.Height * s.Width];
            for (int k = 0; k < values.Length; k++)
            {
                float v = png.Pixels[k * png.Channels] / 255f;
                values[k] = d._binarizeSaliency ? (v > 0.5f ? 1 : 0) : v;
            }
            return tensor(values).view(1, s.Height, s.Width);
        },
        [PascalContext.Normals] = (_, s) =>
        {
            var png = s.Png(Path.Combine(s.Root, "normals_distill", s.Id + ".png"), 3);
            var labels = s.Labels;
            int n = s.Height * s.Width;
            var normals = new float[3 * n]; // [3, H, W]
            for (int k = 0; k < n; k++)
            {
                if (!PascalContext.NormalsValidClasses.Contains((int)labels[k])) continue;
                double x = 2.0 * png.Pixels[3 * k] / 255 - 1, y = 2.0 * png.Pixels[3 * k + 1] / 255 - 1, z = 2.0 * png.Pixels[3 * k + 2] / 255 - 1;
                double norm = Math.Sqrt(x * x + y * y + z * z);
                if (norm == 0) continue;
                normals[k] = (float)(x / norm);
                normals[n + k] = (float)(y / norm);
                normals[2 * n + k] = (float)(z / norm);
            }
            return tensor(normals).view(3, s.Height, s.Width);
        },
        [PascalContext.Edges] = (_, s) =>
        {
            var edges = PascalContext.EdgeMap(s.Labels, s.Height, s.Width);
            return tensor(edges.Select(e => e ? 1f : 0f).ToArray()).view(1, s.Height, s.Width);
        },
    };
}
