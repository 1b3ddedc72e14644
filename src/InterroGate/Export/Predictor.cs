using InterroGate.Data;
using InterroGate.Tasks;
using InterroGate.Data.Formats;
using InterroGate.Pruning;
using static TorchSharp.torch;

namespace InterroGate.Export;

/// <summary>One task's prediction for one image.</summary>
public sealed record TaskPrediction(
    string Task, TaskKind Kind,
    /// <summary>Classification: the predicted class.</summary>
    int? Class,
    /// <summary>Classification: softmax probability of each class; binary: sigmoid of each attribute; regression: the values; dense tasks: empty (see <see cref="Map"/>).</summary>
    double[] Values)
{
    /// <summary>A dense task's map at the image's own size; null for image-level tasks.</summary>
    public DenseMap? Map { get; init; }
}

/// <summary>
/// A dense task's prediction read per pixel, row-major, at the size of the image as read (the network's output resized
/// back, bilinearly, where the image was resized to the network's input): segmentation the class of each pixel [H, W];
/// saliency and edges the probability σ(output) [H, W]; depth the depth [H, W]; normals the unit normal [3, H, W].
/// </summary>
public sealed record DenseMap(long[] Shape, float[] Values, string Summary);

/// <summary>Every task's prediction for one image, or why the image could not be read.</summary>
public sealed record ImagePrediction(string Source, IReadOnlyDictionary<string, TaskPrediction>? Tasks, string? Error, string? Note = null);

/// <summary>An image file that cannot be used (not decodable, wrong channels); the message names the file.</summary>
public sealed class ImageInputException(string path, string problem) : Exception($"{path}: {problem}");

/// <summary>Loads a static network and predicts every task in one forward pass.</summary>
public sealed class Predictor : IDisposable
{
    private readonly StaticNetwork _network;
    private readonly StaticGraph _graph;

    /// <summary>Runs <paramref name="graph"/>, which it then owns: disposing the predictor frees it.</summary>
    public Predictor(StaticGraph graph) => (_graph, _network) = (graph, new StaticNetwork(graph));

    /// <summary>A static model file (.safetensors written by prune or export).</summary>
    public static Predictor Load(string path) => new(StaticModelFile.Load(path));

    public StaticGraph Graph => _network.Graph;
    public TaskSet Tasks => _network.Tasks;
    public ImageInput Input => _network.Graph.Input;

    /// <summary>
    /// Raw outputs per task for normalised images [B, C, H, W] of the network's dtype (float32 unless it was
    /// converted); <see cref="ImageInput.FromBytes"/> of <see cref="Input"/> makes them from 8-bit pixels.
    /// </summary>
    public Dictionary<string, Tensor> Forward(Tensor images)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(images);
        if (images.dim() != 4 || images.shape[1] != Input.Channels)
            throw new ArgumentException($"Images must be [B, {Input.Channels}, H, W] (the network reads {Input.Channels}-channel images, trained at " +
                                        $"{Input.Height}×{Input.Width}), not [{string.Join(", ", images.shape)}].", nameof(images));
        var dtype = _network.parameters().Cast<Tensor>().Concat(_network.buffers()).Where(t => t.is_floating_point())
            .Select(t => (ScalarType?)t.dtype).FirstOrDefault() ?? ScalarType.Float32;
        if (images.dtype != dtype)
            throw new ArgumentException($"Images must be {dtype}, not {images.dtype}" +
                                        (images.dtype == ScalarType.Byte ? "; Input.FromBytes normalises 8-bit pixels the way the training data was." : "."), nameof(images));
        using var _ = no_grad();
        return _network.call(images);
    }

    /// <summary>Predicts each file; a file that cannot be read gets an error entry and the others are still predicted.</summary>
    public IReadOnlyList<ImagePrediction> PredictFiles(IReadOnlyList<string> paths)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(paths);
        int blank = paths.ToList().FindIndex(string.IsNullOrWhiteSpace);
        if (blank >= 0) throw new ArgumentException($"paths[{blank}] is {(paths[blank] is null ? "null" : "empty")}: give the path of an image file.", nameof(paths));
        var results = new ImagePrediction?[paths.Count];
        var good = new List<(int Index, Tensor Pixels, string? Note, (int Height, int Width) Stored)>();
        try
        {
            for (int i = 0; i < paths.Count; i++)
            {
                try
                {
                    var (pixels, note, stored) = ImageFiles.Read(paths[i], Input);
                    good.Add((i, pixels, note, stored));
                }
                catch (ImageInputException e)
                {
                    results[i] = new ImagePrediction(paths[i], null, e.Message);
                }
            }
            const int batch = 32;
            for (int start = 0; start < good.Count; start += batch)
            {
                var chunk = good.Skip(start).Take(batch).ToArray();
                using var scope = NewDisposeScope();
                var outputs = Forward(stack(chunk.Select(c => c.Pixels).ToArray()));
                for (int j = 0; j < chunk.Length; j++)
                    results[chunk[j].Index] = new ImagePrediction(paths[chunk[j].Index],
                        Tasks.ToDictionary(t => t.Name, t => Interpret(t, outputs[t.Name][j], chunk[j].Stored)), null, chunk[j].Note);
            }
            return results!;
        }
        finally
        {
            // Read images are freed here also when a file or the forward pass fails part-way.
            foreach (var g in good) g.Pixels.Dispose();
        }
    }

    private static TaskPrediction Interpret(TaskSpec task, Tensor output, (int Height, int Width) stored) => task.Kind switch
    {
        TaskKind.Classification => new TaskPrediction(task.Name, task.Kind, (int)output.argmax().item<long>(), Values(output.softmax(0))),
        TaskKind.Binary => new TaskPrediction(task.Name, task.Kind, null, Values(output.sigmoid())),
        _ when task.IsDense => new TaskPrediction(task.Name, task.Kind, null, []) { Map = Read(task, output, stored) },
        _ => new TaskPrediction(task.Name, task.Kind, null, Values(output)),
    };

    /// <summary>A dense output [K, h, w] read per pixel at <paramref name="stored"/> (see <see cref="DenseMap"/>).</summary>
    internal static DenseMap Read(TaskSpec task, Tensor output, (int Height, int Width) stored)
    {
        using var scope = NewDisposeScope();
        var y = JointMaps.Resize(output.to(float32), null, stored.Height, stored.Width);
        long pixels = (long)stored.Height * stored.Width;
        string size = $"{stored.Width}×{stored.Height}";
        switch (task.Kind)
        {
            case TaskKind.Segmentation:
            {
                var classes = y.argmax(0);
                var counts = classes.flatten().bincount(null, task.Outputs).data<long>().ToArray();
                var top = counts.Select((n, c) => (c, n)).Where(p => p.n > 0).OrderByDescending(p => p.n).Take(3)
                    .Select(p => $"{p.c} ({100.0 * p.n / pixels:F1}%)");
                return new DenseMap([stored.Height, stored.Width], classes.to(float32).data<float>().ToArray(), $"{size}, classes {string.Join(", ", top)}");
            }
            case TaskKind.Saliency or TaskKind.Edges:
            {
                var p = y.squeeze(0).sigmoid();
                double share = p.gt(Tensors.Scalars.Half).sum().item<long>() * 100.0 / pixels;
                return new DenseMap([stored.Height, stored.Width], p.data<float>().ToArray(),
                    $"{size}, {share:F1}% {(task.Kind == TaskKind.Saliency ? "salient" : "edge")} (p > 0.5)");
            }
            case TaskKind.Depth:
            {
                var d = y.squeeze(0);
                return new DenseMap([stored.Height, stored.Width], d.data<float>().ToArray(),
                    $"{size}, depth {d.min().item<float>():G3} to {d.max().item<float>():G3}, mean {d.mean().item<float>():G3}");
            }
            default:
            {
                var n = nn.functional.normalize(y, p: 2, dim: 0);
                var mean = n.mean([1, 2]).data<float>().ToArray();
                return new DenseMap([3, stored.Height, stored.Width], n.data<float>().ToArray(), $"{size}, mean normal ({mean[0]:F2}, {mean[1]:F2}, {mean[2]:F2})");
            }
        }
    }

    private static double[] Values(Tensor t)
    {
        using var values = t.to(float64);
        return values.data<double>().ToArray();
    }

    private bool _disposed;

    public void Dispose()
    {
        _disposed = true;
        _network.Dispose();
        _graph.Dispose();
    }
}

/// <summary>Reads images for a model: PNG, JPEG, BMP, GIF, WebP (decoded with Skia) or .npy arrays.</summary>
public static class ImageFiles
{
    /// <summary>
    /// The image as a normalised float tensor [C, H, W] of the model's input size. 8-bit pixels are normalised as
    /// the training data was; float .npy arrays are taken as already normalised. Images of another size are resized
    /// (bilinear), which the note says; images with another number of channels are an error. <c>Stored</c> is the
    /// image's own height and width.
    /// </summary>
    public static (Tensor Pixels, string? Note, (int Height, int Width) Stored) Read(string path, ImageInput input)
    {
        if (!File.Exists(path)) throw new ImageInputException(path, Directory.Exists(path) ? "is a folder, not an image file." : "no such file.");
        using var scope = NewDisposeScope(); // the decoding's intermediates; the image leaves it for the caller
        var (pixels, note, stored) = path.EndsWith(".npy", StringComparison.OrdinalIgnoreCase) ? ReadNpy(path, input) : ReadEncoded(path, input);
        return (pixels.DetachFromDisposeScope(), note, stored);
    }

    private static (Tensor, string?, (int, int)) ReadNpy(string path, ImageInput input)
    {
        NpyArray array;
        try
        {
            array = Npy.Read(path);
        }
        catch (DataFormatException e)
        {
            throw new ImageInputException(path, e.Problem);
        }
        var shape = array.Shape.Length switch
        {
            2 => new[] { 1L, array.Shape[0], array.Shape[1] },
            3 => array.Shape,
            _ => throw new ImageInputException(path, $"an image array must be [H, W] or [C, H, W], not [{string.Join(", ", array.Shape)}]."),
        };
        if (shape[1] == 0 || shape[2] == 0) throw new ImageInputException(path, $"an empty image ({shape[1]}×{shape[2]} pixels).");
        if (shape[0] != input.Channels) throw new ImageInputException(path, $"has {shape[0]} channels; the model reads {input.Channels}.");
        if (array.DType is not ("u1" or "f4" or "f8")) throw new ImageInputException(path, $"dtype {array.DType}; images are uint8 (pixels) or float (normalised).");
        var t = array.ToTensor().view(shape);
        if (t.is_floating_point() && t.isfinite().logical_not().any().item<bool>())
            throw new ImageInputException(path, $"holds {t.isfinite().logical_not().sum().item<long>():N0} values that are not finite (NaN or infinite); an image's values are numbers.");
        var x = array.DType == "u1" ? input.FromBytes(t.unsqueeze(0)) : t.to(float32).unsqueeze(0);
        return Fit(x, input, path);
    }

    private static (Tensor, string?, (int, int)) ReadEncoded(string path, ImageInput input)
    {
        DecodedImage image;
        try
        {
            image = Data.Formats.ImageFiles.Read(path);
        }
        catch (DataFormatException e)
        {
            throw new ImageInputException(path, e.Problem);
        }
        if (image.Channels != input.Channels)
            throw new ImageInputException(path, $"is a {(image.Channels == 1 ? "grayscale" : "colour")} image ({image.Channels} channel{(image.Channels == 1 ? "" : "s")}); the model reads {input.Channels}.");
        var pixels = tensor(image.Pixels, dtype: ScalarType.Byte).view(1, image.Height, image.Width, image.Channels).permute(0, 3, 1, 2); // HWC -> CHW
        return Fit(input.FromBytes(pixels), input, path);
    }

    private static (Tensor, string?, (int, int)) Fit(Tensor x, ImageInput input, string path)
    {
        int h = (int)x.shape[2], w = (int)x.shape[3];
        if (h == input.Height && w == input.Width) return (x.squeeze(0).contiguous(), null, (h, w));
        var resized = nn.functional.interpolate(x, [input.Height, input.Width], mode: InterpolationMode.Bilinear, align_corners: false);
        return (resized.squeeze(0).contiguous(), $"resized from {w}×{h} to {input.Width}×{input.Height}", (h, w));
    }
}
