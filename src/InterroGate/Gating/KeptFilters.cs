// Once the gates are fixed, each copy of a gated layer computes only the filters some task reads (docs/architecture.md,
// "Fixed gates"): the pruning rule of SharingPattern applied in training, with the weights of the gated network.
using InterroGate.Backbones;
using InterroGate.Layers;
using InterroGate.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Gating;

/// <summary>
/// The filters each copy of one gated unit computes while the gates are fixed: task t's copy the channels whose gate is
/// 1, the shared copy the channels where some task's gate is 0 (<see cref="LayerSharing.Kept"/>). Built only for a unit
/// in which some copy keeps part of its filters, and only for a unit made of convolutions with their batch norms and
/// identity terms (<see cref="Applies"/>; other units run their read copies whole). The narrow outputs are assembled into
/// the full-width features the gate layer takes (<see cref="Assemble"/>), holding the values of the full computation at
/// every channel a task reads.
/// </summary>
internal sealed class KeptFilters
{
    private readonly long[]?[] _kept; // per branch (tasks, then shared): the filters computed; null: all of them
    private readonly long[][] _source; // per branch: for each channel, where the assembled features take it from
    private readonly int _tasks;
    private Tensor?[]? _index, _assembly; // the same on the features' device
    private (DeviceType Type, int Index) _device;

    private KeptFilters(long[]?[] kept, long[][] source, int tasks) => (_kept, _source, _tasks) = (kept, source, tasks);

    /// <summary>
    /// The selection for a unit with hard gates <paramref name="layer"/>; null where every copy computes all its filters
    /// or none (<see cref="GatedEncoder.UnreadCopies"/> covers those).
    /// </summary>
    public static KeptFilters? For(LayerSharing layer)
    {
        int T = layer.Gates.Length, C = (int)layer.Channels;
        var kept = layer.Kept.Select(k => k.Length == C ? null : k).ToArray();
        if (!kept.Any(k => k is { Length: > 0 })) return null;
        // Position of each channel among the computed filters of a branch (−1: not computed).
        var position = kept.Select(k =>
        {
            var p = Enumerable.Repeat(-1L, C).ToArray();
            if (k is null) for (int c = 0; c < C; c++) p[c] = c;
            else for (int i = 0; i < k.Length; i++) p[k[i]] = i;
            return p;
        }).ToArray();
        var source = new long[T + 1][];
        // The shared part: its computed filters, then one zero channel standing in where no task reads it.
        long sharedWidth = kept[T]?.Length ?? C;
        source[T] = position[T].Select(p => p >= 0 ? p : sharedWidth).ToArray();
        // Task t: its own filters where its gate is 1, after them the shared features where it is 0.
        for (int t = 0; t < T; t++)
        {
            long ownWidth = kept[t]?.Length ?? C;
            source[t] = Enumerable.Range(0, C).Select(c => layer.Gates[t][c] ? position[t][c] : ownWidth + position[T][c]).ToArray();
        }
        return new KeptFilters(kept, source, T);
    }

    /// <summary>
    /// Whether a unit can compute part of its filters: a layer (no operation, nothing applied after it) whose terms are
    /// convolutions with zero padding and no groups, with or without their batch norm, or identities.
    /// </summary>
    public static bool Applies(PlanUnit unit, nn.Module branch) => !unit.IsOp && unit.Then is null && unit.Terms.All(t =>
        t.Linear is null && (t.Layer is not { } layer || layer(branch) is var (conv, norm) && conv.groups == 1
            && conv.padding_mode == PaddingModes.Zeros && (norm is null || norm.track_running_stats)));

    /// <summary>The filters branch <paramref name="b"/> computes, on <paramref name="like"/>'s device; null: all of them.</summary>
    public Tensor? Index(int b, Tensor like)
    {
        OnDeviceOf(like);
        return _index![b];
    }

    /// <summary>
    /// The full-width inputs of the gate layer from the copies' outputs <paramref name="parts"/> (tasks, then shared;
    /// narrow where the branch computes part of its filters). At a channel task t reads from its own copy its features
    /// hold that copy's value, where it reads the shared copy the shared value (so Eq. 2 gives the full computation's
    /// value either way); the shared features hold the shared copy's values where some task reads them and 0 elsewhere
    /// (where every gate is 1 and Eq. 2 does not read them).
    /// </summary>
    public Tensor[] Assemble(IReadOnlyList<Tensor> parts)
    {
        OnDeviceOf(parts[_tasks]);
        var result = parts.ToArray();
        var shared = parts[_tasks];
        if (_kept[_tasks] is not null)
        {
            var size = shared.shape.ToArray();
            size[1] = 1;
            using var zero = zeros(size, shared.dtype, shared.device);
            result[_tasks] = Channels.Gather([shared, zero], _assembly![_tasks]!);
        }
        for (int t = 0; t < _tasks; t++)
            if (_kept[t] is { Length: 0 }) result[t] = result[_tasks]; // unread: every gate 0, so the shared copy is whole
            else if (_kept[t] is not null) result[t] = Channels.Gather([parts[t], shared], _assembly![t]!);
        return result;
    }

    /// <summary>Frees the index tensors (kept across forward passes, so no dispose scope frees them); a later pass makes them anew.</summary>
    public void Release()
    {
        foreach (var t in (_index ?? []).Concat(_assembly ?? [])) t?.Dispose();
        (_index, _assembly) = (null, null);
    }

    private void OnDeviceOf(Tensor like)
    {
        var device = (like.device_type, like.device_index);
        if (_index is not null && device == _device) return;
        foreach (var t in (_index ?? []).Concat(_assembly ?? [])) t?.Dispose();
        // Kept across calls: out of whatever dispose scope the forward pass runs in.
        Tensor? Send(long[]? values) => values is null ? null : tensor(values, dtype: int64).to(like.device).DetachFromDisposeScope();
        _index = _kept.Select(Send).ToArray();
        _assembly = _source.Select((s, b) => _kept[b] is { Length: > 0 } ? Send(s) : null).ToArray(); // only a narrow branch is assembled
        _device = device;
    }

    /// <summary>
    /// The filters <paramref name="index"/> of a convolution and its batch norm applied to <paramref name="input"/>: the
    /// weights gathered (their gradient reaches those rows of the layer's weights), the batch norm in training mode
    /// updating those channels' running statistics as the full layer's call would. Also returns the convolution's MACs
    /// per image (as the cost counter counts a convolution module). <paramref name="countsBatch"/>: whether this call counts
    /// the batch in the batch norm's <c>num_batches_tracked</c> (false for the second part of one layer's filters).
    /// </summary>
    public static (Tensor Output, long Macs) Apply(Conv2d conv, BatchNorm2d? norm, Tensor input, Tensor index, bool countsBatch = true)
    {
        var weight = conv.weight!.index_select(0, index);
        var bias = conv.bias?.index_select(0, index);
        var y = nn.functional.conv2d(input, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups);
        long macs = y.numel() / Math.Max(1, y.shape[0]) * (conv.in_channels / conv.groups) * conv.kernel_size.Aggregate(1L, (a, b) => a * b);
        if (norm is null) return (y, macs);
        bool training = norm.training;
        var mean = norm.running_mean!.index_select(0, index);
        var variance = norm.running_var!.index_select(0, index);
        double factor = 0;
        if (training)
        {
            if (countsBatch) BatchNorms.CountBatch(norm);
            factor = norm.momentum ?? 1.0 / norm.num_batches_tracked!.item<long>();
        }
        var result = nn.functional.batch_norm(y, mean, variance, norm.weight?.index_select(0, index), norm.bias?.index_select(0, index),
            training, factor, norm.eps);
        if (training)
            using (no_grad())
            {
                norm.running_mean.index_copy_(0, index, mean);
                norm.running_var.index_copy_(0, index, variance);
            }
        return (result, macs);
    }
}
