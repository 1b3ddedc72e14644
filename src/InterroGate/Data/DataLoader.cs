using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>
/// Batches of a data set in an order that is a pure function of (seed, epoch), so a run can resume
/// mid-epoch; the next batch is assembled on a background task while the caller computes. The caller
/// owns (disposes) every tensor it receives. Given a <paramref name="device"/> other than the CPU, batches arrive there
/// (copied on the background task, so the copy overlaps the caller's work). With <paramref name="channelsLast"/>, images
/// arrive in channels-last (NHWC) memory order, the same [B, C, H, W] tensor to every operation.
/// </summary>
public sealed class DataLoader(IMultiTaskDataset dataset, int batchSize, bool shuffle, int seed, bool dropLast, Device? device = null, bool channelsLast = false)
{
    public int BatchesPerEpoch => dropLast ? dataset.Count / batchSize : (dataset.Count + batchSize - 1) / batchSize;

    /// <summary>The sample order of <paramref name="epoch"/>.</summary>
    public long[] Order(int epoch)
    {
        var order = new long[dataset.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        // A seed that is the same in every process (HashCode.Combine is randomised per process): a run resumed in a
        // new process continues the epoch in the order it started it.
        if (shuffle) new Random(DenseDataset.StableSeed(seed, epoch, 0x1f2e3d)).Shuffle(order);
        return order;
    }

    public IEnumerable<Dictionary<string, Tensor>> Epoch(int epoch, int skipBatches = 0)
    {
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "Batch size must be > 0.");
        var order = Order(epoch);
        int batches = BatchesPerEpoch;
        var next = skipBatches < batches ? Fetch(order, skipBatches, epoch) : null;
        try
        {
            for (int b = skipBatches; b < batches; b++)
            {
                var current = next!.GetAwaiter().GetResult(); // a failed read throws its own exception, not an AggregateException
                next = b + 1 < batches ? Fetch(order, b + 1, epoch) : null;
                yield return current;
            }
        }
        finally
        {
            // A caller that stops early (or fails) leaves one prefetched batch: free it here. Should that read have failed
            // too, its error is not the one to report: the caller's own, or none, stands.
            if (next is not null)
            {
                try { next.Wait(); }
                catch (AggregateException) { }
                if (next.IsCompletedSuccessfully) foreach (var t in next.Result.Values) t.Dispose();
            }
        }
    }

    private Task<Dictionary<string, Tensor>> Fetch(long[] order, int batch, int epoch)
    {
        int start = batch * batchSize, count = Math.Min(batchSize, order.Length - start);
        return Task.Run(() =>
        {
            var batch = dataset.GetBatch(order.AsSpan(start, count), epoch);
            bool onCpu = device is null || device.type == DeviceType.CPU;
            if (onCpu && !channelsLast) return batch;
            var moved = new Dictionary<string, Tensor>(batch.Count);
            foreach (var (key, t) in batch)
            {
                var there = onCpu ? t : t.to(device!, non_blocking: true); // a data set held on the device: the same tensor
                moved[key] = channelsLast && key == IMultiTaskDataset.ImageKey && there.dim() == 4 ? ChannelsLast(there) : there;
                if (!ReferenceEquals(moved[key], there)) there.Dispose();
                if (!ReferenceEquals(there, t)) t.Dispose();
            }
            return moved;
        });
    }

    /// <summary>The same [B, C, H, W] values held in channels-last (NHWC) memory order.</summary>
    public static Tensor ChannelsLast(Tensor images)
    {
        using var nhwc = images.permute(0, 2, 3, 1).contiguous();
        return nhwc.permute(0, 3, 1, 2);
    }
}
