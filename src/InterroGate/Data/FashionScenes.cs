// FashionScenes: a small dense multi-task benchmark (semantic segmentation, depth, surface normals, saliency,
// edges) composed from real Fashion-MNIST items on a receding floor, a fast stand-in for NYUD-v2 and PASCAL-Context.
using InterroGate.Data.Formats;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>
/// Options of <see cref="FashionScenes"/>. <see cref="Root"/> is the Fashion-MNIST folder (null:
/// <see cref="FashionMnist.DefaultRoot"/>); scenes are <see cref="Height"/>×<see cref="Width"/> RGB; each split has
/// the given number of scenes, generated on demand from (<see cref="Seed"/>, split, index); each scene holds
/// <see cref="MinItems"/> to <see cref="MaxItems"/> items; <see cref="Tasks"/> picks tasks by name (null: all five);
/// <see cref="TrainTransform"/> augments training samples only and must return <see cref="Height"/>×<see cref="Width"/>.
/// </summary>
public sealed record FashionScenesOptions(
    string? Root = null,
    int Height = 64,
    int Width = 64,
    int TrainSize = 10_000,
    int ValidationSize = 1_000,
    int TestSize = 1_000,
    int Seed = 0,
    int MinItems = 2,
    int MaxItems = 4,
    IReadOnlyList<string>? Tasks = null,
    IJointTransform? TrainTransform = null)
{
    /// <summary>The smallest scene side: normals and edges need neighbours, the floor needs rows.</summary>
    public const int MinSide = 8;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first option that is out of range.</summary>
    public void Validate()
    {
        Positive(TrainSize, nameof(TrainSize));
        Positive(ValidationSize, nameof(ValidationSize));
        Positive(TestSize, nameof(TestSize));
        if (Height < MinSide) throw new ArgumentException($"FashionScenes option Height is {Height}; it must be at least {MinSide}.", nameof(Height));
        if (Width < MinSide) throw new ArgumentException($"FashionScenes option Width is {Width}; it must be at least {MinSide}.", nameof(Width));
        Positive(MinItems, nameof(MinItems));
        if (MinItems > MaxItems)
            throw new ArgumentException($"FashionScenes option MinItems ({MinItems}) is larger than MaxItems ({MaxItems}).", nameof(MinItems));
        if (Tasks is not null)
        {
            if (Tasks.Count == 0) throw new ArgumentException("FashionScenes option Tasks is empty; leave it null for all tasks.", nameof(Tasks));
            var unknown = Tasks.FirstOrDefault(n => FashionScenes.AllTasks.IndexOf(n) < 0);
            if (unknown is not null)
                throw new ArgumentException($"FashionScenes option Tasks names '{unknown}'; valid: {string.Join(", ", FashionScenes.AllTasks.Names)}.", nameof(Tasks));
        }
    }

    private static void Positive(int value, string name)
    {
        if (value <= 0) throw new ArgumentException($"FashionScenes option {name} is {value}; it must be at least 1.", name);
    }
}

/// <summary>Which part of the benchmark a data set is.</summary>
public enum SceneSplit { Train, Validation, Test }

/// <summary>
/// One Fashion-MNIST item in a scene. <see cref="Image"/> indexes the Fashion-MNIST training images (train and
/// validation scenes) or test images (test scenes); <see cref="Label"/> is its class; it covers the
/// <see cref="Size"/>×<see cref="Size"/> box at (<see cref="Top"/>, <see cref="Left"/>), which may reach outside the
/// canvas. <see cref="Mask"/> (H×W, row-major) marks its pixels on the canvas, hidden or not, and
/// <see cref="Depth"/> its surface there (0 elsewhere); <see cref="BaseDepth"/> is its depth before relief.
/// </summary>
public sealed record SceneItem(int Image, int Label, int Top, int Left, int Size, double BaseDepth, bool[] Mask, float[] Depth);

/// <summary>
/// A composed scene, every array row-major: <see cref="Image"/> RGB [3, H, W]; <see cref="Floor"/> the background
/// plane's depth [H, W]; <see cref="Segment"/> the index in <see cref="Items"/> of the front-most item at each pixel
/// (−1: background); then the targets: <see cref="Semseg"/> (0 background, 1 + class), <see cref="Depth"/>,
/// <see cref="Normals"/> [3, H, W], <see cref="Edge"/> and <see cref="Saliency"/> (0 or 1). <see cref="Items"/> run
/// back to front: each is nearer the camera than all before it, so the last is the salient one.
/// </summary>
public sealed record Scene(
    int Height, int Width, byte[] Image, float[] Floor, int[] Segment,
    byte[] Semseg, float[] Depth, float[] Normals, byte[] Edge, byte[] Saliency, IReadOnlyList<SceneItem> Items);

/// <summary>
/// Scenes of 2 to 4 Fashion-MNIST items, each scaled 1× to 2× (bilinear), tinted and dropped at a random place
/// (possibly partly off the canvas) over a textured floor that recedes from about 2 depth units at the bottom
/// row to about 8 at the top, with a random tilt. An item's pixels are those brighter than
/// <see cref="Threshold"/>; later items lie in front of earlier ones. Targets, all from the same composition:
/// <c>semseg</c> (11 classes: 0 background, 1 + the front-most item's class), <c>depth</c> (each item nearer than
/// everything behind it, with a relief of up to <see cref="Relief"/> of its depth where it is bright),
/// <c>normals</c> (from the depth map; x right, y up, z toward the camera, unit length), <c>edge</c> (1 where a
/// 4-neighbour belongs to another item or the background) and <c>sal</c> (the nearest item's pixels).
/// Validation scenes draw items from Fashion-MNIST training images held apart from the training scenes' images;
/// test scenes draw from the test images. Nothing is stored: scene i is regenerated from (seed, split, i).
/// </summary>
public sealed class FashionScenes : DenseDataset
{
    /// <summary>Segmentation classes: background and the ten Fashion-MNIST classes.</summary>
    public const int Classes = 11;

    /// <summary>An item pixel is one whose (scaled) intensity exceeds this, of 255.</summary>
    public const int Threshold = 20;

    /// <summary>How much nearer, as a fraction of its depth, an item's brightest pixel is than its base depth.</summary>
    public const double Relief = 0.1;

    /// <summary>How many training images are held apart for validation scenes (at most a sixth of them).</summary>
    public const int ValidationPool = 10_000;

    public static readonly TaskSet AllTasks = new([
        new TaskSpec("semseg", TaskKind.Segmentation, Classes),
        new TaskSpec("depth", TaskKind.Depth, 1),
        new TaskSpec("normals", TaskKind.Normals, 3),
        new TaskSpec("edge", TaskKind.Edges, 1),
        new TaskSpec("sal", TaskKind.Saliency, 1),
    ]);

    /// <summary>The NYUD-v2-like task set: segmentation, depth, normals.</summary>
    public static string[] NyudTasks => ["semseg", "depth", "normals"];

    /// <summary>The PASCAL-Context-like task set: segmentation, normals, saliency, edges.</summary>
    public static string[] PascalTasks => ["semseg", "normals", "sal", "edge"];

    /// <summary>
    /// The usual training augmentation at <paramref name="height"/>×<paramref name="width"/>: scale up by 1 to 1.5,
    /// crop back to size, flip half the time. Scaling up first means the crop never pads. Depth is kept: the scenes are
    /// rendered by one fixed camera, and a zoomed view of them changes no distance (the floor's depth stays tied to
    /// the image row the network reads it from).
    /// </summary>
    public static IJointTransform Augmentation(int height, int width) =>
        new Compose(new RandomScale(1, 1.5, scalesDepth: false), new RandomCrop(height, width), new HorizontalFlip());

    private readonly SceneGenerator _generator;
    private readonly int _count;

    private FashionScenes(SceneGenerator generator, int count, TaskSet tasks, ImageInput input, IJointTransform? transform, int seed)
        : base($"fashionscenes/{generator.SplitName}", tasks, input, transform, seed)
    {
        _generator = generator;
        _count = count;
    }

    public override int Count => _count;
    public SceneSplit Split => _generator.Split;

    /// <summary>The Fashion-MNIST images this split's items come from (training images, or test images for the test split).</summary>
    public IReadOnlyList<int> Pool => _generator.Pool;

    /// <summary>The three splits from the Fashion-MNIST folder in <see cref="FashionScenesOptions.Root"/>.</summary>
    public static DatasetSplits Load(FashionScenesOptions options)
    {
        options.Validate();
        return Build(FashionMnist.Load(options.Root ?? FashionMnist.DefaultRoot), options);
    }

    /// <summary>The three splits from Fashion-MNIST already in memory.</summary>
    public static DatasetSplits Build(FashionMnist source, FashionScenesOptions options)
    {
        options.Validate();
        int trainImages = source.TrainImages.Count;
        int valPool = Math.Min(ValidationPool, trainImages / 6);
        if (valPool == 0 || source.TestImages.Count == 0)
            throw new ArgumentException($"FashionScenes needs at least 6 training and 1 test image, not {trainImages} and {source.TestImages.Count}.", nameof(source));
        var shuffled = Enumerable.Range(0, trainImages).ToArray();
        new Random(options.Seed).Shuffle(shuffled);

        var train = new SceneGenerator(source, SceneSplit.Train, shuffled[valPool..], options);
        var val = new SceneGenerator(source, SceneSplit.Validation, shuffled[..valPool], options);
        var test = new SceneGenerator(source, SceneSplit.Test, Enumerable.Range(0, source.TestImages.Count).ToArray(), options);
        var tasks = options.Tasks is null ? AllTasks : AllTasks.Select(options.Tasks);
        var input = Statistics(train, Math.Min(64, options.TrainSize), options);
        return new DatasetSplits(
            new FashionScenes(train, options.TrainSize, tasks, input, options.TrainTransform, options.Seed),
            new FashionScenes(val, options.ValidationSize, tasks, input, null, options.Seed),
            new FashionScenes(test, options.TestSize, tasks, input, null, options.Seed));
    }

    /// <summary>Scene <paramref name="index"/> with everything it was composed from.</summary>
    public Scene Generate(int index)
    {
        if (index < 0 || index >= Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"{Name} has scenes 0 to {Count - 1}.");
        return _generator.Generate(index);
    }

    /// <summary>Scene <paramref name="index"/> as a sample of this data set's tasks, before any transform (the caller disposes it).</summary>
    public DenseSample Sample(int index) => Load(index);

    protected override DenseSample Load(int index)
    {
        var s = Generate(index);
        long h = s.Height, w = s.Width;
        var targets = new Dictionary<string, Tensor>();
        foreach (var t in Tasks)
            targets[t.Name] = t.Kind switch
            {
                TaskKind.Segmentation => tensor(Array.ConvertAll(s.Semseg, v => (long)v), [h, w]),
                TaskKind.Depth => tensor(s.Depth, [1, h, w]),
                TaskKind.Normals => tensor(s.Normals, [3, h, w]),
                TaskKind.Edges => tensor(Array.ConvertAll(s.Edge, v => (float)v), [1, h, w]),
                TaskKind.Saliency => tensor(Array.ConvertAll(s.Saliency, v => (float)v), [1, h, w]),
                _ => throw new InvalidOperationException($"FashionScenes has no {t.Kind} task."),
            };
        return new DenseSample(tensor(s.Image, [3, h, w]), targets);
    }

    /// <summary>Writes scenes <paramref name="indices"/> as one preview PNG; see <see cref="WritePreview(string, IReadOnlyList{Scene}, int)"/>.</summary>
    public void WritePreview(string path, IEnumerable<int> indices, int zoom = 3) => WritePreview(path, indices.Select(Generate).ToList(), zoom);

    /// <summary>
    /// Writes a PNG with one row per scene and six panels per row, each pixel <paramref name="zoom"/>×<paramref name="zoom"/>:
    /// the image, semseg (a colour per class, background dark), depth (near bright), normals ((n + 1) / 2 as RGB),
    /// edges and saliency (white on black).
    /// </summary>
    public static void WritePreview(string path, IReadOnlyList<Scene> scenes, int zoom = 3)
    {
        if (scenes.Count == 0) throw new ArgumentException("No scenes to preview.", nameof(scenes));
        if (zoom < 1) throw new ArgumentOutOfRangeException(nameof(zoom), zoom, "The zoom must be at least 1.");
        const int panels = 6, gap = 2;
        int h = scenes[0].Height, w = scenes[0].Width, ph = h * zoom, pw = w * zoom;
        int width = panels * pw + (panels - 1) * gap, height = scenes.Count * ph + (scenes.Count - 1) * gap;
        var rgb = new byte[width * height * 3];
        Array.Fill(rgb, (byte)128);
        for (int r = 0; r < scenes.Count; r++)
        {
            var s = scenes[r];
            if (s.Height != h || s.Width != w) throw new ArgumentException("All scenes of a preview must have the same size.", nameof(scenes));
            float near = s.Depth.Min(), far = s.Depth.Max();
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    int i = y * w + x, n = h * w;
                    byte d = (byte)Math.Round(255 * (1 - (s.Depth[i] - near) / Math.Max(far - near, 1e-6f)));
                    var colours = new (byte R, byte G, byte B)[]
                    {
                        (s.Image[i], s.Image[n + i], s.Image[2 * n + i]),
                        Palette[s.Semseg[i]],
                        (d, d, d),
                        (Unit(s.Normals[i]), Unit(s.Normals[n + i]), Unit(s.Normals[2 * n + i])),
                        s.Edge[i] != 0 ? ((byte)255, (byte)255, (byte)255) : ((byte)0, (byte)0, (byte)0),
                        s.Saliency[i] != 0 ? ((byte)255, (byte)255, (byte)255) : ((byte)0, (byte)0, (byte)0),
                    };
                    for (int p = 0; p < panels; p++)
                        for (int dy = 0; dy < zoom; dy++)
                            for (int dx = 0; dx < zoom; dx++)
                            {
                                int o = (((r * (ph + gap)) + y * zoom + dy) * width + p * (pw + gap) + x * zoom + dx) * 3;
                                (rgb[o], rgb[o + 1], rgb[o + 2]) = colours[p];
                            }
                }
        }
        ImageFiles.WritePng(path, new DecodedImage(rgb, height, width, 3));
    }

    private static byte Unit(float v) => (byte)Math.Round(Math.Clamp((v + 1) * 127.5, 0, 255));

    private static readonly (byte R, byte G, byte B)[] Palette =
    [
        (40, 40, 40), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    ];

    // One normalisation for all splits, measured on the first training scenes (the way MultiFashion measures its training set).
    private static ImageInput Statistics(SceneGenerator train, int scenes, FashionScenesOptions options)
    {
        double sum = 0, sq = 0;
        long n = 0;
        for (int i = 0; i < scenes; i++)
            foreach (var v in train.Generate(i).Image)
            {
                sum += v;
                sq += (double)v * v;
                n++;
            }
        double mean = sum / n / 255, var = sq / n / (255.0 * 255) - mean * mean;
        return new ImageInput(3, options.Height, options.Width, mean, Math.Sqrt(Math.Max(var, 1e-12)));
    }
}

/// <summary>Composes the scenes of one split; a scene is a pure function of (seed, split, index).</summary>
internal sealed class SceneGenerator(FashionMnist source, SceneSplit split, int[] pool, FashionScenesOptions options)
{
    private const int Item = 28;
    private readonly byte[] _images = split == SceneSplit.Test ? source.TestImages.Data : source.TrainImages.Data;
    private readonly byte[] _labels = split == SceneSplit.Test ? source.TestLabels : source.TrainLabels;

    public SceneSplit Split => split;
    public IReadOnlyList<int> Pool => pool;
    public string SplitName => split switch { SceneSplit.Train => "train", SceneSplit.Validation => "val", _ => "test" };

    public Scene Generate(int index)
    {
        var rng = new Random(SceneSeed(options.Seed, split, index));
        int h = options.Height, w = options.Width, n = h * w;

        // The floor: depth grows from the bottom row (near) to the top row (far), tilted left or right.
        double near = 1.5 + rng.NextDouble(), far = 6.5 + 3 * rng.NextDouble(), tilt = rng.NextDouble() - 0.5;
        var floor = new float[n];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                floor[y * w + x] = (float)(near + (far - near) * (1 - y / (h - 1.0)) * (1 + tilt * (x / (w - 1.0) - 0.5)));

        // Its texture: two low-frequency waves over a random colour, darker with distance.
        var image = new byte[3 * n];
        var colour = new[] { 50 + 150 * rng.NextDouble(), 50 + 150 * rng.NextDouble(), 50 + 150 * rng.NextDouble() };
        var waves = Enumerable.Range(0, 2).Select(_ => (
            Fx: (0.5 + 2.5 * rng.NextDouble()) * (rng.Next(2) * 2 - 1), Fy: 0.5 + 2.5 * rng.NextDouble(), Phase: 2 * Math.PI * rng.NextDouble())).ToArray();
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int i = y * w + x;
                double texture = 0;
                foreach (var (fx, fy, phase) in waves) texture += Math.Sin(2 * Math.PI * (fx * x / w + fy * y / h) + phase);
                double shade = (1 + 0.12 * texture) * (1 - 0.35 * (floor[i] - near) / (far - near));
                for (int c = 0; c < 3; c++) image[c * n + i] = (byte)Math.Clamp(Math.Round(colour[c] * shade), 0, 255);
            }

        // The items, back to front. Each lies in front of all earlier items and of the floor under its box.
        var depth = (float[])floor.Clone();
        var segment = new int[n];
        Array.Fill(segment, -1);
        var items = new List<SceneItem>();
        double nearestSoFar = double.MaxValue;
        int count = rng.Next(options.MinItems, options.MaxItems + 1);
        for (int k = 0; k < count; k++)
        {
            int img = pool[rng.Next(pool.Length)];
            int size = Item + rng.Next(Item + 1);                      // 1× to 2×
            int top = rng.Next(-size / 2, h - size / 2), left = rng.Next(-size / 2, w - size / 2); // its centre is on the canvas
            var tint = new[] { 0.35 + 0.65 * rng.NextDouble(), 0.35 + 0.65 * rng.NextDouble(), 0.35 + 0.65 * rng.NextDouble() };
            double nearer = 0.7 + 0.2 * rng.NextDouble();
            var intensity = Scale(img, size);

            int y0 = Math.Max(0, top), y1 = Math.Min(h, top + size), x0 = Math.Max(0, left), x1 = Math.Min(w, left + size);
            double behind = nearestSoFar;
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++) behind = Math.Min(behind, depth[y * w + x]);
            double baseDepth = nearer * behind;

            var mask = new bool[n];
            var itemDepth = new float[n];
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++)
                {
                    double v = intensity[(y - top) * size + (x - left)];
                    if (v <= FashionScenes.Threshold) continue;
                    int i = y * w + x;
                    float d = (float)(baseDepth * (1 - FashionScenes.Relief * v / 255)); // brighter = nearer
                    mask[i] = true;
                    itemDepth[i] = d;
                    depth[i] = d;
                    segment[i] = k;
                    for (int c = 0; c < 3; c++) image[c * n + i] = (byte)Math.Clamp(Math.Round(v * tint[c]), 0, 255);
                    nearestSoFar = Math.Min(nearestSoFar, d);
                }
            items.Add(new SceneItem(img, _labels[img], top, left, size, baseDepth, mask, itemDepth));
        }

        var semseg = new byte[n];
        var edge = new byte[n];
        var saliency = new byte[n];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int i = y * w + x, s = segment[i];
                semseg[i] = s < 0 ? (byte)0 : (byte)(1 + items[s].Label);
                bool boundary = (x > 0 && segment[i - 1] != s) || (x < w - 1 && segment[i + 1] != s)
                                || (y > 0 && segment[i - w] != s) || (y < h - 1 && segment[i + w] != s);
                edge[i] = boundary ? (byte)1 : (byte)0;
                saliency[i] = s >= 0 && s == count - 1 ? (byte)1 : (byte)0;
            }
        return new Scene(h, w, image, floor, segment, semseg, depth, Normals(depth, segment, h, w), edge, saliency, items);
    }

    /// <summary>
    /// Unit normals [3, H, W] of the depth map, x right, y up, z toward the camera: n ∝ (g ∂D/∂col, −g ∂D/∂row, 1),
    /// differences taken within a segment only so a depth jump at an item's outline does not tilt its border.
    /// g = H/8 pixels per depth unit, a fixed stand-in for the camera: the floor then faces mostly up and toward the camera.
    /// </summary>
    private static float[] Normals(float[] depth, int[] segment, int h, int w)
    {
        double g = h / 8.0;
        int n = h * w;
        var normals = new float[3 * n];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int i = y * w + x;
                double du = Difference(depth, segment, i, x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1);
                double dv = Difference(depth, segment, i, y > 0 ? i - w : -1, y < h - 1 ? i + w : -1);
                double nx = g * du, ny = -g * dv, len = Math.Sqrt(nx * nx + ny * ny + 1);
                normals[i] = (float)(nx / len);
                normals[n + i] = (float)(ny / len);
                normals[2 * n + i] = (float)(1 / len);
            }
        return normals;
    }

    // Central difference where both neighbours are in pixel i's segment, one-sided where one is, 0 where none is.
    private static double Difference(float[] depth, int[] segment, int i, int before, int after)
    {
        bool b = before >= 0 && segment[before] == segment[i], a = after >= 0 && segment[after] == segment[i];
        return (b, a) switch
        {
            (true, true) => (depth[after] - depth[before]) / 2.0,
            (false, true) => depth[after] - depth[i],
            (true, false) => depth[i] - depth[before],
            _ => 0,
        };
    }

    /// <summary>Fashion-MNIST image <paramref name="img"/> resized from 28×28 to size×size, bilinear (half-pixel centres).</summary>
    private double[] Scale(int img, int size)
    {
        var src = _images.AsSpan(img * Item * Item, Item * Item);
        var dst = new double[size * size];
        for (int y = 0; y < size; y++)
        {
            double sy = Math.Clamp((y + 0.5) * Item / size - 0.5, 0, Item - 1);
            int y0 = (int)sy, y1 = Math.Min(y0 + 1, Item - 1);
            double fy = sy - y0;
            for (int x = 0; x < size; x++)
            {
                double sx = Math.Clamp((x + 0.5) * Item / size - 0.5, 0, Item - 1);
                int x0 = (int)sx, x1 = Math.Min(x0 + 1, Item - 1);
                double fx = sx - x0;
                dst[y * size + x] = (1 - fy) * ((1 - fx) * src[y0 * Item + x0] + fx * src[y0 * Item + x1])
                                    + fy * ((1 - fx) * src[y1 * Item + x0] + fx * src[y1 * Item + x1]);
            }
        }
        return dst;
    }

    // A seed from (seed, split, index) that is the same in every process (HashCode.Combine is randomised per process).
    private static int SceneSeed(int seed, SceneSplit split, int index) => DenseDataset.StableSeed(seed, (int)split, index);
}
