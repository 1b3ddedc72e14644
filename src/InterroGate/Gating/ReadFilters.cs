// While the gates learn, the backward pass runs only through the filters some task reads (docs/architecture.md,
// "Gate-learning steps"): the others are computed for the gates' gradient alone, without autograd.
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Gating;

/// <summary>
/// How much of a copy of one gated unit some task reads under the current hard gates.
/// </summary>
internal enum Readers { All, Some, None }

/// <summary>
/// For one gated unit during a gate-learning step: per copy (tasks, then shared), the filters some task reads under the
/// hard gates of this step (task t's copy where its gate is 1, the shared copy where some task's gate is 0, the filters
/// <see cref="LayerSharing.Kept"/> names) and the others. An unread filter enters Eq. 2 with gate 0, so the task loss
/// gives its weights and its input a zero gradient; α's gradient still needs its value (φ_t − ψ at every channel). So
/// the unread filters are computed without autograd and the read ones with it, and <see cref="Assemble"/> puts the two
/// back into the full-width features: the forward values are those of the full computation, and the backward pass runs
/// through the read filters only. Built only for units <see cref="KeptFilters.Applies"/> to, where some copy is not
/// read whole.
/// </summary>
internal sealed class ReadFilters : IDisposable
{
    private readonly long[][] _read, _unread; // per branch, in channel order
    private readonly long[] _channels;
    private Tensor?[]? _readIndex, _unreadIndex, _order; // on the features' device; null where the branch is read whole or not at all
    private (DeviceType Type, int Index) _device;

    private ReadFilters(long[][] read, long channels)
    {
        _read = read;
        _unread = read.Select(r => Enumerable.Range(0, (int)channels).Select(c => (long)c).Except(r).ToArray()).ToArray();
        _channels = read.Select(_ => channels).ToArray();
    }

    /// <summary>The split for a unit whose hard gates are <paramref name="layer"/>; null where every copy is read whole.</summary>
    public static ReadFilters? For(LayerSharing layer) =>
        layer.Kept.All(k => k.Length == layer.Channels) ? null : new ReadFilters(layer.Kept, layer.Channels);

    /// <summary>How much of branch <paramref name="b"/>'s copy some task reads.</summary>
    public Readers Of(int b) => _read[b].Length == _channels[b] ? Readers.All : _read[b].Length == 0 ? Readers.None : Readers.Some;

    /// <summary>The read filters of branch <paramref name="b"/> (one it reads in part), on <paramref name="like"/>'s device.</summary>
    public Tensor Read(int b, Tensor like) { OnDeviceOf(like); return _readIndex![b]!; }

    /// <summary>The unread filters of branch <paramref name="b"/> (one it reads in part), on <paramref name="like"/>'s device.</summary>
    public Tensor Unread(int b, Tensor like) { OnDeviceOf(like); return _unreadIndex![b]!; }

    /// <summary>Branch <paramref name="b"/>'s full-width features from its read filters' output and its unread ones'.</summary>
    public Tensor Assemble(int b, Tensor read, Tensor unread)
    {
        OnDeviceOf(read);
        using var both = cat([read, unread], 1);
        return both.index_select(1, _order![b]!);
    }

    private void OnDeviceOf(Tensor like)
    {
        var device = (like.device_type, like.device_index);
        if (_readIndex is not null && device == _device) return;
        Dispose();
        // Kept across calls: out of whatever dispose scope the forward pass runs in.
        Tensor? Send(long[] values, int b) => Of(b) != Readers.Some ? null : tensor(values, dtype: int64).to(like.device).DetachFromDisposeScope();
        _readIndex = _read.Select(Send).ToArray();
        _unreadIndex = _unread.Select(Send).ToArray();
        _order = _read.Select((r, b) =>
        {
            // Channel c's position in cat(read, unread).
            var position = new long[_channels[b]];
            for (int i = 0; i < r.Length; i++) position[r[i]] = i;
            for (int i = 0; i < _unread[b].Length; i++) position[_unread[b][i]] = r.Length + i;
            return Send(position, b);
        }).ToArray();
        _device = device;
    }

    /// <summary>Frees the index tensors (made again on the next use).</summary>
    public void Dispose()
    {
        foreach (var t in (_readIndex ?? []).Concat(_unreadIndex ?? []).Concat(_order ?? [])) t?.Dispose();
        _readIndex = _unreadIndex = _order = null;
    }
}
