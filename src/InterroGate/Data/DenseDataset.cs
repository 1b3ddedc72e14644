using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>
/// One sample of a dense data set before batching: the image, uint8 [C, H, W], and one target per task in
/// the layout <see cref="TaskKind"/> gives for its kind, without the batch axis (segmentation int64 [H, W];
/// depth, saliency and edges float32 [1, H, W]; normals float32 [3, H, W]; image-level kinds as in a batch).
/// </summary>
public sealed record DenseSample(Tensor Image, IReadOnlyDictionary<string, Tensor> Targets)
{
    public int Height => (int)Image.shape[1];
    public int Width => (int)Image.shape[2];
}

/// <summary>
/// A transform applied to the image and every target of a sample together (scale, crop, flip, rotation), so
/// they stay aligned. <paramref name="random"/> is the only source of randomness it may use.
/// </summary>
public interface IJointTransform
{
    DenseSample Apply(DenseSample sample, TaskSet tasks, Random random);
}

/// <summary>
/// Base of data sets whose samples are read or generated one at a time (dense benchmarks that do not fit in
/// memory). Each sample goes through the optional joint transform, which must bring it to
/// <see cref="Input"/>'s size; then samples are stacked and the image normalised. A sample's random draws in training are a
/// function of (seed, index, epoch) (<see cref="GetBatch(ReadOnlySpan{long}, int)"/>, what the data loader calls), so a
/// run gives the same batches whether it is trained fresh, resumed, or after other runs in the same process; outside
/// an epoch (<see cref="GetBatch(ReadOnlySpan{long})"/>) each call draws anew, from (seed, index, how many such calls
/// came before).
/// </summary>
public abstract class DenseDataset : IMultiTaskDataset
{
    private readonly int _seed;
    private int[] _draws = [];

    protected DenseDataset(string name, TaskSet tasks, ImageInput input, IJointTransform? transform, int seed)
    {
        Name = name;
        Tasks = tasks;
        Input = input;
        Transform = transform;
        _seed = seed;
    }

    public string Name { get; }
    public TaskSet Tasks { get; }
    public abstract int Count { get; }
    public ImageInput Input { get; }
    public (int Channels, int Height, int Width) ImageShape => (Input.Channels, Input.Height, Input.Width);
    public IJointTransform? Transform { get; }

    /// <summary>Sample <paramref name="index"/> as stored (CPU tensors; the caller disposes them).</summary>
    protected abstract DenseSample Load(int index);

    /// <summary>
    /// Whether the dense metrics score each sample at its stored size: true where the transform only resizes it to the
    /// input (<see cref="Resize"/>, the evaluation transform of data sets whose images differ in size). The prediction
    /// is then resized back to the sample's own size and scored against its targets as stored, as the benchmarks'
    /// reference evaluation does, so a label map stretched to the input size never counts rows or columns twice
    /// (docs/datasets.md, "Scored at each image's own size").
    /// </summary>
    public bool ScoresAtStoredSize => Transform is Resize;

    /// <summary>
    /// While set (by the evaluator, for a data set that <see cref="ScoresAtStoredSize"/>), each batch also holds every
    /// sample's dense targets as stored, before the transform, under <see cref="StoredKey"/>: read from the one load of
    /// the sample, not a second one.
    /// </summary>
    internal bool IncludeStoredTargets { get; set; }

    /// <summary>The batch key of the <paramref name="j"/>-th sample's stored target of <paramref name="task"/> (<see cref="IncludeStoredTargets"/>).</summary>
    public static string StoredKey(string task, int j) => $"{task}@stored/{j}";

    public Dictionary<string, Tensor> GetBatch(ReadOnlySpan<long> indices) => Batch(indices, epoch: null);

    public Dictionary<string, Tensor> GetBatch(ReadOnlySpan<long> indices, int epoch) => Batch(indices, epoch);

    private Dictionary<string, Tensor> Batch(ReadOnlySpan<long> indices, int? epoch)
    {
        if (_draws.Length != Count) Interlocked.CompareExchange(ref _draws, new int[Count], _draws);
        using var scope = NewDisposeScope();
        var images = new List<Tensor>(indices.Length);
        int n = indices.Length;
        var targets = Tasks.ToDictionary(t => t.Name, _ => new List<Tensor>(n));
        bool keepStored = IncludeStoredTargets && ScoresAtStoredSize;
        var stored = new Dictionary<string, Tensor>();
        foreach (long i in indices)
        {
            int index = checked((int)i);
            var sample = Load(index);
            if (keepStored) // copies: the transform frees the tensors it replaces
                foreach (var t in Tasks.Where(t => t.IsDense)) stored[StoredKey(t.Name, images.Count)] = sample.Targets[t.Name].clone();
            if (Transform is not null)
            {
                // In an epoch: keyed by the epoch. Outside: by the count of such draws, kept apart from the epochs' keys.
                int draw = epoch ?? -1 - (Interlocked.Increment(ref _draws[index]) - 1);
                sample = Transform.Apply(sample, Tasks, new Random(StableSeed(_seed, index, draw)));
            }
            if (sample.Height != Input.Height || sample.Width != Input.Width || sample.Image.shape[0] != Input.Channels)
                throw new InvalidOperationException(
                    $"{Name}: sample {index} is {sample.Image.shape[0]}×{sample.Height}×{sample.Width}, the data set's input is " +
                    $"{Input.Channels}×{Input.Height}×{Input.Width}; give the data set a transform that resizes or crops.");
            images.Add(sample.Image);
            foreach (var t in Tasks) targets[t.Name].Add(sample.Targets[t.Name]);
        }
        var image = stack(images);
        var batch = new Dictionary<string, Tensor>
        {
            [IMultiTaskDataset.ImageKey] = (image.dtype == ScalarType.Byte ? Input.FromBytes(image) : image.to(ScalarType.Float32)).MoveToOuterDisposeScope(),
        };
        foreach (var t in Tasks) batch[t.Name] = stack(targets[t.Name]).MoveToOuterDisposeScope();
        foreach (var (key, t) in stored) batch[key] = t.MoveToOuterDisposeScope();
        return batch;
    }

    /// <summary>A seed from (seed, index, draw) that is the same in every process (HashCode.Combine is randomised per process).</summary>
    internal static int StableSeed(int seed, int index, int draw)
    {
        ulong z = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ ((ulong)(uint)index + 1) * 0xC2B2AE3D27D4EB4FUL ^ ((ulong)(uint)draw + 1) * 0x165667B19E3779F9UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return (int)(z ^ (z >> 31));
    }
}
