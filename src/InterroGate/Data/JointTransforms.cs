// Joint geometric augmentation of dense multi-task samples (random scale, crop, horizontal flip, rotation), the
// training pipeline of the NYUD-v2 / PASCAL-Context multi-task benchmarks: one draw per sample, applied alike to
// the image and every target map so they stay aligned.
using InterroGate.Tasks;
using InterroGate.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>
/// How each kind of map is resampled and padded, shared by the transforms below. The image is kind null.
/// Conventions the transforms rely on: normals are camera-frame unit vectors with x to the right, y up and z
/// toward the camera (as <see cref="FashionScenes"/> writes them); unknown pixels are
/// <see cref="TaskSpec.IgnoreLabel"/> in segmentation, saliency and edge maps (left out of their losses and metrics,
/// not taken as background, "not salient" or "no edge") and 0 (the zero vector for normals) in depth and normals.
/// </summary>
internal static class JointMaps
{
    /// <summary>The value of pixels with no data: padded, or rotated in from outside the sample.</summary>
    public static double Unknown(TaskKind? kind) => kind is TaskKind.Segmentation or TaskKind.Saliency or TaskKind.Edges ? TaskSpec.IgnoreLabel : 0;

    /// <summary>
    /// Whether a kind is resampled by nearest neighbour. Labels and edges must stay in their value set. Depth
    /// uses nearest too: bilinear would mix valid depth with unknown (0) pixels into false, too-near values,
    /// and average across object boundaries into "flying pixels" at depths no surface has. Normals use nearest
    /// so they stay unit vectors (or exactly zero where unknown) without a renormalisation that cannot tell a
    /// short mixed vector from an unknown one. Saliency uses nearest so that its unknown value (255) never blends
    /// into known pixels. The image is bilinear.
    /// </summary>
    public static bool Nearest(TaskKind? kind) => kind is TaskKind.Segmentation or TaskKind.Depth or TaskKind.Normals or TaskKind.Edges or TaskKind.Saliency;

    /// <summary>
    /// Applies <paramref name="map"/> to the image (kind null) and to each dense target; image-level targets
    /// pass through. The new tensors outlive the call; the sample's tensors that were replaced are disposed,
    /// so a chain of transforms leaves no intermediates behind.
    /// </summary>
    public static DenseSample Map(DenseSample sample, TaskSet tasks, Func<Tensor, TaskKind?, Tensor> map)
    {
        var replaced = new List<Tensor>();
        Tensor Keep(Tensor before, Tensor after)
        {
            if (ReferenceEquals(before, after)) return before;
            replaced.Add(before);
            return after.MoveToOuterDisposeScope();
        }

        DenseSample result;
        using (NewDisposeScope())
        {
            var image = Keep(sample.Image, map(sample.Image, null));
            var targets = new Dictionary<string, Tensor>(sample.Targets.Count);
            foreach (var (name, y) in sample.Targets)
            {
                int i = tasks.IndexOf(name);
                if (i < 0) throw new ArgumentException($"The sample has a target '{name}' that is not one of the tasks ({string.Join(", ", tasks.Names)}).", nameof(sample));
                var kind = tasks[i].Kind;
                targets[name] = kind.IsDense() ? Keep(y, map(y, kind)) : y;
            }
            result = new DenseSample(image, targets);
        }
        foreach (var t in replaced) t.Dispose();
        return result;
    }

    /// <summary>A map [C, H, W] or [H, W] of any dtype as float32 [1, C, H, W], the layout the resampling ops take.</summary>
    public static Tensor ToBatch(Tensor t) => (t.dim() == 2 ? t.unsqueeze(0) : t).unsqueeze(0).to(float32);

    /// <summary>The inverse of <see cref="ToBatch"/>: back to <paramref name="like"/>'s rank and dtype (integers rounded, bytes clamped).</summary>
    public static Tensor FromBatch(Tensor y, Tensor like)
    {
        y = y.squeeze(0);
        if (like.dim() == 2) y = y.squeeze(0);
        if (like.dtype == ScalarType.Byte)
        {
            using var top = Scalars.Of(255L);
            return y.round().clamp(Scalars.Zero, top).to(ScalarType.Byte);
        }
        return like.is_floating_point() ? y.to(like.dtype) : y.round().to(like.dtype);
    }

    /// <summary>The map resized to <paramref name="height"/>×<paramref name="width"/>, by the kind's interpolation.</summary>
    public static Tensor Resize(Tensor t, TaskKind? kind, int height, int width)
    {
        var y = Nearest(kind)
            ? nn.functional.interpolate(ToBatch(t), [height, width], mode: InterpolationMode.Nearest)
            : nn.functional.interpolate(ToBatch(t), [height, width], mode: InterpolationMode.Bilinear, align_corners: false);
        return FromBatch(y, t);
    }

    /// <summary>
    /// <paramref name="t"/> resized to <paramref name="height"/>×<paramref name="width"/> as a scene seen
    /// <paramref name="depthFactor"/> times nearer: depth values divided by it (unknown depth, 0, stays 0), other maps as resized.
    /// </summary>
    public static Tensor Scaled(Tensor t, TaskKind? kind, int height, int width, double depthFactor)
    {
        var resized = Resize(t, kind, height, width);
        return kind == TaskKind.Depth && depthFactor != 1 ? resized.Times(1 / depthFactor) : resized;
    }

    /// <summary>
    /// The <paramref name="height"/>×<paramref name="width"/> window whose top-left corner is at
    /// (<paramref name="top"/>, <paramref name="left"/>); parts of the window outside the map are the kind's unknown value.
    /// </summary>
    public static Tensor Window(Tensor t, TaskKind? kind, int top, int left, int height, int width)
    {
        int h = (int)t.shape[^2], w = (int)t.shape[^1];
        int padTop = Math.Max(0, -top), padBottom = Math.Max(0, top + height - h);
        int padLeft = Math.Max(0, -left), padRight = Math.Max(0, left + width - w);
        var padded = padTop + padBottom + padLeft + padRight == 0
            ? t
            : nn.functional.pad(t, [padLeft, padRight, padTop, padBottom], PaddingModes.Constant, Unknown(kind));
        return padded.narrow(-2, top + padTop, height).narrow(-1, left + padLeft, width).contiguous();
    }
}

/// <summary>
/// Scales the sample by one factor f drawn uniformly from [<see cref="Min"/>, <see cref="Max"/>]: the image
/// bilinearly, labels, saliency, edges, depth and normals by nearest neighbour (see <see cref="JointMaps.Nearest"/>).
/// With <see cref="ScalesDepth"/> (the default) depth values are divided by f: a scene that looks f times larger is
/// taken as seen f times nearer, as the dense multi-task reference code scales depth; without, depth is kept (a
/// zoomed view of the same camera: no distance changes). The tensors it replaces are disposed.
/// </summary>
public sealed record RandomScale : IJointTransform
{
    public RandomScale(double min, double max, bool scalesDepth = true)
    {
        if (!(min > 0) || !(max >= min)) throw new ArgumentException($"RandomScale needs 0 < min <= max, not min {min}, max {max}.");
        (Min, Max, ScalesDepth) = (min, max, scalesDepth);
    }

    public double Min { get; }
    public double Max { get; }
    public bool ScalesDepth { get; }

    public DenseSample Apply(DenseSample sample, TaskSet tasks, Random random)
    {
        double f = Min + (Max - Min) * random.NextDouble();
        int h = Math.Max(1, (int)Math.Round(sample.Height * f)), w = Math.Max(1, (int)Math.Round(sample.Width * f));
        if (h == sample.Height && w == sample.Width) return sample;
        return JointMaps.Map(sample, tasks, (t, kind) => JointMaps.Scaled(t, kind, h, w, ScalesDepth ? f : 1));
    }
}

/// <summary>
/// Zooms the sample about its centre by one factor f, keeping its size (what the dense multi-task reference code's
/// ScaleNRotate does without rotation): f &gt; 1 crops the centre of the enlarged sample, f &lt; 1 pads the reduced one
/// with each map's unknown value. f is drawn uniformly from [<see cref="Min"/>, <see cref="Max"/>], or from
/// <see cref="Choices"/> where given. Maps are resampled as <see cref="RandomScale"/> resamples them, depth divided
/// by f where <see cref="ScalesDepth"/>. The tensors it replaces are disposed.
/// </summary>
public sealed record RandomZoom : IJointTransform
{
    public RandomZoom(double min, double max, bool scalesDepth = true)
    {
        if (!(min > 0) || !(max >= min)) throw new ArgumentException($"RandomZoom needs 0 < min <= max, not min {min}, max {max}.");
        (Min, Max, ScalesDepth) = (min, max, scalesDepth);
    }

    /// <summary>A zoom by one of <paramref name="choices"/>, each as likely.</summary>
    public RandomZoom(IReadOnlyList<double> choices, bool scalesDepth = true)
    {
        if (choices.Count == 0 || choices.Any(c => !(c > 0) || double.IsInfinity(c))) throw new ArgumentException("RandomZoom needs factors > 0 to choose from.");
        (Min, Max, Choices, ScalesDepth) = (choices.Min(), choices.Max(), choices.ToArray(), scalesDepth);
    }

    public double Min { get; }
    public double Max { get; }
    public IReadOnlyList<double>? Choices { get; }
    public bool ScalesDepth { get; }

    public DenseSample Apply(DenseSample sample, TaskSet tasks, Random random)
    {
        double f = Choices is { } c ? c[random.Next(c.Count)] : Min + (Max - Min) * random.NextDouble();
        int h = sample.Height, w = sample.Width;
        int sh = Math.Max(1, (int)Math.Round(h * f)), sw = Math.Max(1, (int)Math.Round(w * f));
        if (sh == h && sw == w) return sample;
        int top = (int)Math.Floor((sh - h) / 2.0), left = (int)Math.Floor((sw - w) / 2.0);
        return JointMaps.Map(sample, tasks, (t, kind) => JointMaps.Window(JointMaps.Scaled(t, kind, sh, sw, ScalesDepth ? f : 1), kind, top, left, h, w));
    }
}

/// <summary>
/// Resizes every sample to <see cref="Height"/>×<see cref="Width"/> (evaluation at a fixed size). Labels stay
/// exact by nearest neighbour; normals are not re-tilted when the aspect ratio changes. The tensors it replaces are disposed.
/// </summary>
public sealed record Resize : IJointTransform
{
    public Resize(int height, int width)
    {
        if (height <= 0 || width <= 0) throw new ArgumentException($"Resize needs a positive size, not {height}×{width}.");
        (Height, Width) = (height, width);
    }

    public int Height { get; }
    public int Width { get; }

    public DenseSample Apply(DenseSample sample, TaskSet tasks, Random random) =>
        sample.Height == Height && sample.Width == Width
            ? sample
            : JointMaps.Map(sample, tasks, (t, kind) => JointMaps.Resize(t, kind, Height, Width));
}

/// <summary>
/// A random <see cref="Height"/>×<see cref="Width"/> window of the sample. Where the sample is smaller it is
/// placed at a random offset inside the window and the rest is padded with the unknown value of each map: 0
/// for the image, depth and normals (the zero vector); <see cref="TaskSpec.IgnoreLabel"/> for segmentation,
/// saliency and edges. The tensors it replaces are disposed.
/// </summary>
public sealed record RandomCrop : IJointTransform
{
    public RandomCrop(int height, int width)
    {
        if (height <= 0 || width <= 0) throw new ArgumentException($"RandomCrop needs a positive size, not {height}×{width}.");
        (Height, Width) = (height, width);
    }

    public int Height { get; }
    public int Width { get; }

    public DenseSample Apply(DenseSample sample, TaskSet tasks, Random random)
    {
        int top = Offset(sample.Height, Height, random), left = Offset(sample.Width, Width, random);
        return JointMaps.Map(sample, tasks, (t, kind) => JointMaps.Window(t, kind, top, left, Height, Width));
    }

    // A window start in the sample's coordinates: inside it when the sample is larger, at or before 0 (padding) when smaller.
    private static int Offset(int size, int window, Random random) =>
        size >= window ? random.Next(size - window + 1) : -random.Next(window - size + 1);
}

/// <summary>
/// The centred <see cref="Height"/>×<see cref="Width"/> window of the sample (evaluation): a centre crop where the
/// sample is larger, padding as <see cref="RandomCrop"/> pads where it is smaller. The tensors it replaces are disposed.
/// </summary>
public sealed record CenterCropOrPad : IJointTransform
{
    public CenterCropOrPad(int height, int width)
    {
        if (height <= 0 || width <= 0) throw new ArgumentException($"CenterCropOrPad needs a positive size, not {height}×{width}.");
        (Height, Width) = (height, width);
    }

    public int Height { get; }
    public int Width { get; }

    public DenseSample Apply(DenseSample sample, TaskSet tasks, Random random)
    {
        if (sample.Height == Height && sample.Width == Width) return sample;
        int top = (int)Math.Floor((sample.Height - Height) / 2.0), left = (int)Math.Floor((sample.Width - Width) / 2.0);
        return JointMaps.Map(sample, tasks, (t, kind) => JointMaps.Window(t, kind, top, left, Height, Width));
    }
}

/// <summary>
/// Mirrors the sample left to right with probability <see cref="P"/>. The normals' x component is negated: in
/// the mirrored scene a surface facing right faces left. The tensors it replaces are disposed.
/// </summary>
public sealed record HorizontalFlip : IJointTransform
{
    public HorizontalFlip(double p = 0.5)
    {
        if (!(p >= 0 && p <= 1)) throw new ArgumentException($"HorizontalFlip needs a probability in [0, 1], not {p}.");
        P = p;
    }

    public double P { get; }

    public DenseSample Apply(DenseSample sample, TaskSet tasks, Random random)
    {
        if (random.NextDouble() >= P) return sample;
        return JointMaps.Map(sample, tasks, (t, kind) =>
        {
            var flipped = t.flip(-1);
            return kind == TaskKind.Normals ? flipped.mul(tensor(new float[] { -1, 1, 1 }, dtype: flipped.dtype).view(3, 1, 1)) : flipped;
        });
    }
}

/// <summary>
/// Rotates the sample about its centre by one angle drawn uniformly from ±<see cref="MaxDegrees"/>; positive
/// angles turn the content counter-clockwise on screen. The image is bilinear, the maps nearest. Pixels rotated
/// in from outside are unknown: 0 in the image and depth, <see cref="TaskSpec.IgnoreLabel"/> in segmentation,
/// saliency and edges, the zero vector in normals. Normal vectors turn with the
/// content: their (x, y) components (y up) rotate by the same angle. The tensors it replaces are disposed.
/// </summary>
public sealed record RandomRotation : IJointTransform
{
    public RandomRotation(double maxDegrees)
    {
        if (!(maxDegrees >= 0 && maxDegrees <= 180)) throw new ArgumentException($"RandomRotation needs maxDegrees in [0, 180], not {maxDegrees}.");
        MaxDegrees = maxDegrees;
    }

    public double MaxDegrees { get; }

    public DenseSample Apply(DenseSample sample, TaskSet tasks, Random random)
    {
        double degrees = (2 * random.NextDouble() - 1) * MaxDegrees;
        return degrees == 0 ? sample : Rotate(sample, tasks, degrees);
    }

    /// <summary>The sample rotated by <paramref name="degrees"/> counter-clockwise (a fixed angle, for tests and evaluation).</summary>
    public static DenseSample Rotate(DenseSample sample, TaskSet tasks, double degrees)
    {
        double a = degrees * Math.PI / 180, cos = Math.Cos(a), sin = Math.Sin(a);
        int h = sample.Height, w = sample.Width;
        // affine_grid maps each output position to the input position it samples, in coordinates normalised to
        // [-1, 1] per axis with y down. Content turned counter-clockwise on screen moves by (x, y) -> (x cos + y sin,
        // -x sin + y cos) in pixels; the grid needs the inverse, rescaled per axis so a non-square image is not sheared.
        using var theta = tensor(new float[] { (float)cos, (float)(-sin * h / w), 0, (float)(sin * w / h), (float)cos, 0 }).view(1, 2, 3);
        return JointMaps.Map(sample, tasks, (t, kind) =>
        {
            var x = JointMaps.ToBatch(t);                                                   // [1, C, H, W]
            var grid = nn.functional.affine_grid(theta, [1, x.shape[1], h, w], align_corners: false);
            var mode = JointMaps.Nearest(kind) ? GridSampleMode.Nearest : GridSampleMode.Bilinear;
            var y = nn.functional.grid_sample(x, grid, mode, GridSamplePaddingMode.Zeros, align_corners: false);
            if (JointMaps.Unknown(kind) != 0)
            {
                // Zero padding would read as class 0, "not salient" or "no edge"; mark what came from outside with the ignore label instead.
                var inside = nn.functional.grid_sample(ones(1, 1, h, w), grid, GridSampleMode.Nearest, GridSamplePaddingMode.Zeros, align_corners: false);
                using var ignore = Scalars.Of(TaskSpec.IgnoreLabel);
                y = y.masked_fill(inside.le(Scalars.Half), ignore);
            }
            else if (kind == TaskKind.Normals)
            {
                // The vectors turn counter-clockwise with the content; with y up that is the ordinary rotation.
                var (nx, ny) = (y.select(1, 0), y.select(1, 1));
                y = stack([nx.Times(cos) - ny.Times(sin), nx.Times(sin).Plus(ny.Times(cos)), y.select(1, 2)], 1);
            }
            return JointMaps.FromBatch(y, t);
        });
    }
}

/// <summary>Applies transforms in order, each to the previous one's result.</summary>
public sealed class Compose(params IJointTransform[] transforms) : IJointTransform
{
    public IReadOnlyList<IJointTransform> Transforms { get; } = transforms;

    public DenseSample Apply(DenseSample sample, TaskSet tasks, Random random)
    {
        foreach (var t in Transforms) sample = t.Apply(sample, tasks, random);
        return sample;
    }

    public override string ToString() => $"Compose({string.Join(", ", Transforms)})";
}
