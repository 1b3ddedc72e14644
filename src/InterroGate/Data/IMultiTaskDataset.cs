using InterroGate.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>
/// A data set of images, each with one target per task. Batches are dictionaries:
/// <see cref="ImageKey"/> holds the images [B, C, H, W] (float32, normalised) and each
/// task name holds that task's targets (int64 [B] for classification, float32 [B, K] otherwise).
/// </summary>
public interface IMultiTaskDataset
{
    /// <summary>Key of the image tensor in a batch.</summary>
    public const string ImageKey = "image";

    string Name { get; }
    Tasks.TaskSet Tasks { get; }
    int Count { get; }
    /// <summary>Channels, height, width of one image.</summary>
    (int Channels, int Height, int Width) ImageShape { get; }

    /// <summary>What a model trained on this data set expects as input, and how raw pixels become it.</summary>
    ImageInput Input { get; }

    /// <summary>The samples at <paramref name="indices"/> as one batch (CPU tensors the caller disposes).</summary>
    Dictionary<string, Tensor> GetBatch(ReadOnlySpan<long> indices);

    /// <summary>
    /// The batch as drawn in training epoch <paramref name="epoch"/>: a data set with random augmentation draws it as
    /// a function of (seed, sample, epoch), whatever was drawn before in the process; others give <see cref="GetBatch(ReadOnlySpan{long})"/>.
    /// </summary>
    Dictionary<string, Tensor> GetBatch(ReadOnlySpan<long> indices, int epoch) => GetBatch(indices);
}

/// <summary>
/// The input a model expects: <see cref="Channels"/>×<see cref="Height"/>×<see cref="Width"/> images whose
/// 8-bit pixels are scaled by 1/255, then normalised as (x − <see cref="Mean"/>) / <see cref="Std"/>.
/// </summary>
public sealed record ImageInput(int Channels, int Height, int Width, double Mean = 0, double Std = 1)
{
    /// <summary>Throws an <see cref="ArgumentException"/> for <paramref name="parameter"/> unless every size is positive and the normalisation finite with Std &gt; 0.</summary>
    public void Validate(string parameter)
    {
        if (Channels <= 0 || Height <= 0 || Width <= 0)
            throw new ArgumentException($"The input must have positive channels, height and width, not {Channels}×{Height}×{Width}.", parameter);
        if (!double.IsFinite(Mean) || !(Std > 0) || !double.IsFinite(Std))
            throw new ArgumentException($"The input's normalisation must have a finite mean and a finite std > 0, not mean {Mean}, std {Std}.", parameter);
    }

    /// <summary>Normalises 8-bit pixels [N, C, H, W] (uint8) the way the training data was.</summary>
    public Tensor FromBytes(Tensor pixels)
    {
        using var full = Scalars.Of(255L);
        using var mean = Scalars.Of(Mean);
        using var std = Scalars.Of(Std);
        return pixels.to(ScalarType.Float32).div(full).sub_(mean).div_(std);
    }
}

/// <summary>A data set read from a split list that can leave out listed ids whose files are missing (<c>data.skipMissing</c>).</summary>
public interface ISkipsMissing
{
    /// <summary>Listed ids left out because a file they need is missing.</summary>
    int SkippedCount { get; }
}

/// <summary>The three splits of a benchmark. Disposing frees the tensors of the splits that hold some (in memory); the
/// code that opened the splits disposes them.</summary>
public sealed record DatasetSplits(IMultiTaskDataset Train, IMultiTaskDataset Validation, IMultiTaskDataset Test) : IDisposable
{
    public void Dispose()
    {
        foreach (var split in new[] { Train, Validation, Test }.Distinct()) (split as IDisposable)?.Dispose();
    }
}

/// <summary>A data set file that is missing, truncated or malformed; the message names the file and the fault.</summary>
public sealed class DataFormatException(string path, string problem)
    : Exception($"{path}: {problem}")
{
    public string Path { get; } = path;
    public string Problem { get; } = problem;
}

/// <summary>A data set that is not where it was looked for; the message names the path and how to install it.</summary>
public sealed class DatasetNotFoundException(string message) : Exception(message);
