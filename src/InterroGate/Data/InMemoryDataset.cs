using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>
/// Images [N, C, H, W] (uint8, scaled by 1/255 then normalised per batch, or float32 used as is) and
/// per-task targets held in memory; batches are gathered with index_select. It holds handles of its own to the tensors
/// it is given (the caller still frees its own) and frees them when disposed.
/// </summary>
public sealed class InMemoryDataset : IMultiTaskDataset, IDisposable
{
    private readonly Tensor _images;
    private readonly Dictionary<string, Tensor> _targets;
    private readonly double _mean, _std;

    public InMemoryDataset(string name, TaskSet tasks, Tensor images, IReadOnlyDictionary<string, Tensor> targets, double mean = 0, double std = 1)
        : this(name, tasks, images, targets, mean, std, checkTargets: true)
    {
    }

    /// <summary>Without <paramref name="checkTargets"/> (a copy or a part of a data set whose targets were checked) the targets' values are not read again.</summary>
    private InMemoryDataset(string name, TaskSet tasks, Tensor images, IReadOnlyDictionary<string, Tensor> targets, double mean, double std, bool checkTargets)
    {
        if (images.dim() != 4) throw new ArgumentException($"{name}: images must be [N, C, H, W], got [{string.Join(", ", images.shape)}].");
        if (images.dtype is not (ScalarType.Byte or ScalarType.Float32)) throw new ArgumentException($"{name}: images must be uint8 or float32, not {images.dtype}.");
        foreach (var t in tasks)
        {
            if (!targets.TryGetValue(t.Name, out var y)) throw new ArgumentException($"{name}: no targets for task '{t.Name}'.");
            if (y.dim() == 0 || y.shape[0] != images.shape[0]) throw new ArgumentException($"{name}: task '{t.Name}' has {(y.dim() == 0 ? 0 : y.shape[0])} targets for {images.shape[0]} images.");
            if (checkTargets && TargetProblem(t, y) is { } problem) throw new ArgumentException($"{name}: task '{t.Name}' ({t.Kind}, {t.Outputs} outputs): {problem}.");
        }
        if (!(std > 0)) throw new ArgumentOutOfRangeException(nameof(std), std, "The normalisation's std must be > 0.");
        Name = name;
        Tasks = tasks;
        _images = images.detach().DetachFromDisposeScope();
        _targets = tasks.ToDictionary(t => t.Name, t => targets[t.Name].detach().DetachFromDisposeScope());
        (_mean, _std) = (mean, std);
    }

    /// <summary>
    /// What is wrong with <paramref name="y"/> as the targets of <paramref name="task"/> (the layout of its kind,
    /// <see cref="TaskKind"/>; class labels within its classes), or null.
    /// </summary>
    private static string? TargetProblem(TaskSpec task, Tensor y)
    {
        string shape = $"[{string.Join(", ", y.shape)}]";
        switch (task.Kind)
        {
            case TaskKind.Classification or TaskKind.Segmentation:
                int dims = task.Kind == TaskKind.Classification ? 1 : 3;
                if (y.dtype != ScalarType.Int64 || y.dim() != dims)
                    return $"targets must be int64 class labels of shape {(dims == 1 ? "[N]" : "[N, H, W]")}, not {y.dtype} {shape}";
                if (y.NumberOfElements == 0) return null;
                using (var scope = NewDisposeScope())
                {
                    // Labels outside the classes (the ignore label of segmentation aside) would fail inside the loss.
                    using var ignore = Tensors.Scalars.Of(TaskSpec.IgnoreLabel);
                    var valid = task.Kind == TaskKind.Segmentation ? y.masked_select(y.ne(ignore)) : y;
                    if (valid.NumberOfElements == 0) return null;
                    long min = valid.min().item<long>(), max = valid.max().item<long>();
                    if (min < 0 || max >= task.Outputs)
                        return $"class {(min < 0 ? min : max)} is outside 0..{task.Outputs - 1}{(task.Kind == TaskKind.Segmentation ? $" (and {TaskSpec.IgnoreLabel}, unlabelled)" : "")}";
                }
                return null;
            case TaskKind.Binary or TaskKind.Regression:
                return y.dtype == ScalarType.Float32 && y.dim() == 2 && y.shape[1] == task.Outputs ? null
                    : $"targets must be float32 of shape [N, {task.Outputs}], not {y.dtype} {shape}";
            default: // dense float kinds: depth, normals, saliency, edges
                return y.dtype == ScalarType.Float32 && y.dim() == 4 && y.shape[1] == task.Outputs ? null
                    : $"targets must be float32 of shape [N, {task.Outputs}, H, W], not {y.dtype} {shape}";
        }
    }

    public string Name { get; }
    public TaskSet Tasks { get; }
    public int Count => (int)_images.shape[0];
    public (int Channels, int Height, int Width) ImageShape => ((int)_images.shape[1], (int)_images.shape[2], (int)_images.shape[3]);

    public ImageInput Input => new(ImageShape.Channels, ImageShape.Height, ImageShape.Width, _mean, _std);

    /// <summary>Where its tensors are held (batches are gathered there).</summary>
    public Device Device => _images.device;

    /// <summary>Bytes its images and targets take.</summary>
    public long Bytes => _images.NumberOfElements * _images.ElementSize + _targets.Values.Sum(t => t.NumberOfElements * t.ElementSize);

    /// <summary>A copy held on <paramref name="device"/>, so that batches are gathered there without a copy per batch; dispose it when done.</summary>
    public InMemoryDataset To(Device device)
    {
        using var scope = NewDisposeScope();
        return new InMemoryDataset(Name, Tasks, _images.to(device), _targets.ToDictionary(kv => kv.Key, kv => kv.Value.to(device)), _mean, _std, checkTargets: false);
    }

    /// <summary>Frees its tensors.</summary>
    public void Dispose()
    {
        _images.Dispose();
        foreach (var t in _targets.Values) t.Dispose();
    }

    public Dictionary<string, Tensor> GetBatch(ReadOnlySpan<long> indices)
    {
        using var scope = NewDisposeScope();
        // To a GPU asynchronously: a blocking copy would wait for everything queued there (this runs while the
        // previous step's work is in flight).
        var idx = tensor(indices.ToArray(), dtype: int64).to(_images.device, non_blocking: true);
        var images = _images.index_select(0, idx);
        images = images.dtype == ScalarType.Byte ? Input.FromBytes(images) : images;
        var batch = new Dictionary<string, Tensor> { [IMultiTaskDataset.ImageKey] = images.MoveToOuterDisposeScope() };
        foreach (var (name, y) in _targets) batch[name] = y.index_select(0, idx).MoveToOuterDisposeScope();
        return batch;
    }

    /// <summary>The first <paramref name="count"/> samples.</summary>
    public InMemoryDataset Take(int count)
    {
        if (count <= 0 || count > Count) throw new ArgumentOutOfRangeException(nameof(count), count, $"Take 1 to {Count} samples.");
        using var scope = NewDisposeScope();
        return new InMemoryDataset(Name, Tasks, _images.narrow(0, 0, count), _targets.ToDictionary(kv => kv.Key, kv => kv.Value.narrow(0, 0, count)), _mean, _std, checkTargets: false);
    }
}
