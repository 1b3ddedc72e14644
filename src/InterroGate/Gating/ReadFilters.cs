// While the gates learn, the backward pass runs only through the filters some task reads (docs/architecture.md,
// "Gate-learning steps"): the others are computed for the gates' gradient alone, without autograd.
using TorchSharp;
using static TorchSharp.torch;

using InterroGate.Tensors;

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
internal sealed class ReadFilters
{
    private readonly long[][] _read, _unread, _order; // per branch: read and unread filters in channel order; each channel's position in cat(read, unread)
    private readonly long _channels;

    private ReadFilters(long[][] read, long channels)
    {
        _read = read;
        _channels = channels;
        _unread = read.Select(r => Enumerable.Range(0, (int)channels).Select(c => (long)c).Except(r).ToArray()).ToArray();
        _order = read.Select((r, b) =>
        {
            var position = new long[channels];
            for (int i = 0; i < r.Length; i++) position[r[i]] = i;
            for (int i = 0; i < _unread[b].Length; i++) position[_unread[b][i]] = r.Length + i;
            return position;
        }).ToArray();
    }

    /// <summary>The split for a unit whose hard gates are <paramref name="layer"/>; null where every copy is read whole.</summary>
    public static ReadFilters? For(LayerSharing layer) =>
        layer.Kept.All(k => k.Length == layer.Channels) ? null : new ReadFilters(layer.Kept, layer.Channels);

    /// <summary>How much of branch <paramref name="b"/>'s copy some task reads.</summary>
    public Readers Of(int b) => _read[b].Length == _channels ? Readers.All : _read[b].Length == 0 ? Readers.None : Readers.Some;

    // The index tensors are made for each pass, in its dispose scope (autograd keeps what its backward pass needs): the
    // split changes whenever a gate flips, and nothing of it then outlives a step.

    /// <summary>The read filters of branch <paramref name="b"/>, on <paramref name="like"/>'s device.</summary>
    public Tensor Read(int b, Tensor like) => tensor(_read[b], int64, like.device);

    /// <summary>The unread filters of branch <paramref name="b"/>, on <paramref name="like"/>'s device.</summary>
    public Tensor Unread(int b, Tensor like) => tensor(_unread[b], int64, like.device);

    /// <summary>Branch <paramref name="b"/>'s full-width features from its read filters' output and its unread ones'.</summary>
    public Tensor Assemble(int b, Tensor read, Tensor unread) => Channels.Gather([read, unread], tensor(_order[b], int64, read.device));
}
