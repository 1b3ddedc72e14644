using InterroGate.Data;
using static TorchSharp.torch;

namespace InterroGate.Tests.Data;

/// <summary>A data set that is another one, for tests that watch or break how batches are read (override <see cref="GetBatch"/>).</summary>
internal abstract class ForwardingDataset(IMultiTaskDataset inner) : IMultiTaskDataset
{
    protected IMultiTaskDataset Inner => inner;
    public string Name => inner.Name;
    public InterroGate.Tasks.TaskSet Tasks => inner.Tasks;
    public int Count => inner.Count;
    public (int Channels, int Height, int Width) ImageShape => inner.ImageShape;
    public ImageInput Input => inner.Input;
    public virtual Dictionary<string, Tensor> GetBatch(ReadOnlySpan<long> indices) => inner.GetBatch(indices);
}
